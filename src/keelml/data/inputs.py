"""Find each data source before a run and give it an identity (a SHA-256) for the cache.

- a file: the SHA-256 of its bytes (streamed);
- a directory or glob: the SHA-256 over the sorted (name, file SHA-256) pairs;
- a SQL query: the query is run once, here, and the digest is that of the result's Arrow IPC bytes;
  the result is handed to ``ingest`` (never re-read), so the cached data is exactly what was digested;
- a DataFrame from the Python API: the SHA-256 of its Arrow IPC bytes.

Only this module's callers open the store, so a missing file or a failing query leaves nothing behind.

polars (also behind keelml.data.sql) is imported only where a query result or a DataFrame is handled:
a fully cached run resolves and digests its file sources without it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keelml.data.files import batch_digest, file_digest, is_batch, is_url, list_batch
from keelml.errors import DataError, SpecError
from keelml.spec.base import SpecFile
from keelml.spec.data import SourceSpec


@dataclass(frozen=True)
class ResolvedSource:
    """Where a source was found, its digest, and what ``ingest`` needs to read it besides its options."""

    location: str
    digest: str
    bound: dict[str, Any] = field(default_factory=dict)


def resolve_source(loaded: SpecFile, source: SourceSpec, role: str, frame: Any = None) -> ResolvedSource:
    """Locate and digest one source; ``frame`` (pandas or polars) replaces whatever the spec names."""
    if frame is not None:
        polars_frame = _not_empty(to_polars(frame, role), f"frames[{role!r}]")
        return ResolvedSource("<DataFrame>", frame_digest(polars_frame), {"frame": polars_frame})
    fmt = source.resolved_format()
    if fmt == "dataframe":
        raise SpecError(
            f"data.{role} has format: dataframe but no frame was given for it",
            expected=f"keelml.pipeline.run(spec, frames={{{role!r}: df}}) with a pandas or polars DataFrame",
            fix=f"pass the frame from Python, or give data.{role} a path",
        )
    if fmt == "sql":
        return _resolve_sql(loaded, source, role)
    location = loaded.resolve(source.path or "")
    if is_batch(location):
        files = list_batch(location)
        return ResolvedSource(location, batch_digest(files), {"files": files})
    if not is_url(location) and not Path(location).is_file():
        raise DataError(
            f"data.{role}.path: file not found: {location}",
            expected=f"a {fmt} file, a directory or a glob (paths are relative to {loaded.base_dir})",
            fix=f"fix data.{role}.path in {loaded.path.name}",
        )
    return ResolvedSource(location, file_digest(location))


def _resolve_sql(loaded: SpecFile, source: SourceSpec, role: str) -> ResolvedSource:
    from keelml.data.sql import mask_url, read_sql, source_url

    url = _spec_relative_sqlite(loaded, source_url(source, role))
    frame = _not_empty(read_sql(source, url), f"the query of data.{role} on {mask_url(url)}")
    return ResolvedSource(mask_url(url), frame_digest(frame), {"frame": frame})


def _not_empty(frame: Any, what: str) -> Any:
    if frame.height == 0 or frame.width == 0:
        raise DataError(
            f"{what} has no rows",
            expected="at least one row of data",
            fix="check the query's WHERE clause (or the DataFrame passed to frames=)",
        )
    return frame


def _spec_relative_sqlite(loaded: SpecFile, url: str) -> str:
    """A SQLite URL with a relative file path is resolved against the spec's directory, like data paths."""
    prefix = next((p for p in ("sqlite:///", "sqlite+pysqlite:///") if url.startswith(p)), None)
    if prefix is None:
        return url
    database = url[len(prefix):]
    if not database or database.startswith((":memory:", "/", "file:")) or Path(database).is_absolute():
        return url
    return prefix + str((loaded.base_dir / database).resolve())


def to_polars(frame: Any, role: str) -> Any:
    """A pandas or polars DataFrame as a polars DataFrame; anything else is a SpecError."""
    import polars as pl

    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    module = type(frame).__module__.split(".")[0]
    if module == "pandas" and type(frame).__name__ == "DataFrame":
        names = [c for c in frame.columns if not isinstance(c, str)]
        if names:
            raise DataError(
                f"frames[{role!r}] has column names that are not strings: {names[:5]}",
                expected="a DataFrame whose column names are all strings",
                fix="rename the columns, e.g. df.columns = [str(c) for c in df.columns]",
            )
        try:
            return pl.from_pandas(frame, include_index=False)
        except (TypeError, ValueError, pl.exceptions.PolarsError, ImportError) as exc:
            raise DataError(
                f"frames[{role!r}] could not be converted to Arrow: {str(exc).splitlines()[0]}",
                expected="columns of numbers, booleans, text or dates (one type per column)",
                fix="convert mixed-type object columns, e.g. df[col] = df[col].astype(str)",
            ) from None
    raise SpecError(
        f"frames[{role!r}] is a {type(frame).__module__}.{type(frame).__name__}",
        expected="a pandas or polars DataFrame",
        fix="pass a DataFrame (e.g. pandas.read_csv(...) or polars.read_csv(...))",
    )


def frame_digest(frame: Any) -> str:
    """SHA-256 of the frame's uncompressed Arrow IPC bytes, hashed as they are written (no copy kept)."""
    digest = _HashWriter()
    frame.rechunk().write_ipc(digest, compression="uncompressed")
    return digest.sha256.hexdigest()


class _HashWriter:
    """A write-only file object that hashes what is written to it."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return len(data)

    def flush(self) -> None:
        return None
