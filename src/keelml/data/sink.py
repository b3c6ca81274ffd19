"""Write frames to one Parquet or CSV file chunk by chunk; the file appears only once it is complete."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from keelml.errors import DataError
from keelml.store.atomic import private_dirs, private_file


class FrameSink:
    """Appends frames of one schema to a hidden partial file next to ``path``; :meth:`commit` renames
    it into place (a failed run leaves no half-written file). ``.csv`` writes CSV, anything else
    zstd-compressed Parquet. Used as a context manager, an exception discards the partial file."""

    def __init__(self, path: Path, flag: str = "output") -> None:
        self.path, self.flag = path, flag
        self.csv = path.suffix.lower() == ".csv"
        self.partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        self.rows = 0
        self._template: pl.DataFrame | None = None
        self._handle: Any = None
        self._parquet: Any = None

    def write(self, frame: pl.DataFrame) -> None:
        """Append ``frame`` (an empty frame only records the schema, for an empty output)."""
        if self._template is None:
            self._template = frame.head(0)
        if frame.height == 0:
            return
        try:
            self._append(frame)
        except OSError as exc:
            raise self._error(exc) from None
        self.rows += frame.height

    def _append(self, frame: pl.DataFrame) -> None:
        if self.csv:
            if self._handle is None:
                private_dirs(self.path.parent)
                private_file(self.partial)  # 0600 before a row is written
                self._handle = self.partial.open("wb")
                frame.write_csv(self._handle, include_header=True)
            else:
                frame.write_csv(self._handle, include_header=False)
            return

        table = frame.to_arrow()
        if self._parquet is None:
            private_dirs(self.path.parent)
            private_file(self.partial)
            self._parquet = pq.ParquetWriter(str(self.partial), table.schema, compression="zstd")
        self._parquet.write_table(table.cast(self._parquet.schema))

    def commit(self) -> None:
        """Finish the file and move it to ``path``."""
        try:
            if self._handle is None and self._parquet is None:
                self._append(self._template if self._template is not None else pl.DataFrame())
                if self.csv and self._handle is None:
                    private_file(self.partial)
                    self._handle = self.partial.open("wb")
            self._close()
            os.replace(self.partial, self.path)
        except OSError as exc:
            raise self._error(exc) from None

    def discard(self) -> None:
        self._close()
        self.partial.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None

    def _error(self, exc: OSError) -> DataError:
        return DataError(f"{self.flag}: cannot write {self.path}: {exc.strerror or type(exc).__name__}",
                         expected="a writable output path", fix=f"choose another {self.flag} path")

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is not None or self._handle is not None or self._parquet is not None:
            self.discard()
