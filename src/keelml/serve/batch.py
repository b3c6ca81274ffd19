"""Batch scoring: stream a large file through a model in chunks; rows breaking the contract go to rejects.

CSV is read as text and typed by the contract exactly as in training; Parquet streams by record
batch; JSON lines streams by blocks of lines. Predictions and rejects are written chunk by chunk, so
memory stays bounded by the chunk size whatever the size of the input. The output holds `_row` (the input row
number), any id columns, and the prediction with rounded class probabilities (or the value); the
rejects file holds the offending rows as text with `_row` and `_reason`.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from keelml.data.chunked import line_blocks
from keelml.data.validate import validate_frame
from keelml.engine.executors import Executor, InProcess
from keelml.errors import DataError
from keelml.model.trust import TrustPolicy
from keelml.serve.engine import ServedModel, build_model
from keelml.store.atomic import private_dirs, private_file

NULL_VALUES = ["", "NA", "N/A", "NaN", "null", "NULL"]


@dataclass
class ScoreReport:
    rows_in: int
    rows_scored: int
    rows_rejected: int
    output: str
    rejects: str | None
    seconds: float
    engine: str


def _format(path: Path) -> str:
    lower = path.name.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "csv"


def _chunks(path: Path, rows: int) -> Iterator[Any]:
    """polars frames of up to `rows` rows."""
    fmt = _format(path)
    if fmt == "parquet":
        for batch in pq.ParquetFile(str(path)).iter_batches(batch_size=rows):
            yield pl.from_arrow(pa.Table.from_batches([batch]))
        return
    if fmt == "jsonl":
        for block in line_blocks(str(path), rows):
            if block.strip():
                yield pl.read_ndjson(io.BytesIO(block))
        return
    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise DataError(f"{path} is empty", expected="a CSV file with a header row", fix="check the input path")
    reader = pacsv.open_csv(
        str(path), read_options=pacsv.ReadOptions(block_size=1 << 22),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in header},
                                             null_values=NULL_VALUES, strings_can_be_null=True))
    pending: list[Any] = []
    count = 0
    for batch in reader:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pl.from_arrow(pa.Table.from_batches(pending))
            pending, count = [], 0
    if pending:
        yield pl.from_arrow(pa.Table.from_batches(pending))


def _guarded(chunks: Iterator[Any], path: Path) -> Iterator[Any]:
    """Parse failures of the input become DataErrors naming the file."""
    try:
        yield from chunks
    except (pa.ArrowInvalid, pl.exceptions.PolarsError, UnicodeDecodeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path} could not be read: {first}",
                        expected="a CSV file with a header row, a Parquet file or a JSON lines file",
                        fix="check the file's format and that its first line names the columns") from None


class _Writer:
    """Parquet or CSV output, written chunk by chunk."""

    def __init__(self, path: Path) -> None:
        self.path, self.fmt = path, _format(path)
        self._writer: Any = None

    def write(self, frame: Any) -> None:
        table = frame.to_arrow()
        if self._writer is None:
            private_dirs(self.path.parent)
            private_file(self.path)  # 0600 before a prediction is written
            if self.fmt == "parquet":
                self._writer = pq.ParquetWriter(str(self.path), table.schema, compression="zstd")
            else:
                self._writer = pacsv.CSVWriter(str(self.path), table.schema)
        self._writer.write_table(table.cast(self._writer.schema) if self.fmt == "parquet" else table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def score_file(model: ServedModel, input_path: Path, output_path: Path, *, rejects_path: Path | None = None,
               chunk_rows: int = 50_000, precision: int = 3,
               on_progress: Callable[[int], None] | None = None, executor: Executor | None = None,
               shared: PortableModel | None = None) -> ScoreReport:
    """Score every row of `input_path` that meets the contract; write predictions and rejects.

    Partitions of `chunk_rows` rows are validated and scored on `executor` (default: this process),
    as many at a time as it has workers, and written in input order; a remote executor needs
    `shared`, the model as bytes (`portable_model`). The output is the same on every executor.
    """
    if not input_path.is_file():
        raise DataError(f"input file not found: {input_path}", expected="a CSV, Parquet or JSON lines file",
                        fix="check the INPUT path")
    if output_path.resolve() == input_path.resolve():
        raise DataError("OUTPUT is the INPUT file", expected="a new file for the predictions",
                        fix="choose another OUTPUT path")
    rejects_path = rejects_path or output_path.with_name(f"{output_path.stem}.rejects{output_path.suffix or '.csv'}")
    started = time.perf_counter()
    executor = executor or InProcess()
    out, rejects = _Writer(output_path), _Writer(rejects_path)
    rows_in = scored = rejected = 0
    try:
        with executor.session(shared if shared is not None else model) as pool:
            for group in _windows(_guarded(_chunks(input_path, chunk_rows), input_path), max(1, executor.workers)):
                offsets = list(np.cumsum([0, *(c.height for c in group)])[:-1] + rows_in)
                results = pool.map(score_chunk, [(c, int(o), precision) for c, o in zip(group, offsets, strict=True)])
                for chunk, (predicted, quarantine, good) in zip(group, results, strict=True):
                    if predicted is not None:
                        out.write(predicted)
                    if quarantine.height:
                        rejects.write(quarantine)
                    rows_in += chunk.height
                    scored += good
                    rejected += quarantine.height
                    if on_progress is not None:
                        on_progress(chunk.height)
    finally:
        out.close()
        rejects.close()
    if rows_in == 0:
        raise DataError(f"{input_path} has no data rows", expected="at least one row", fix="check the INPUT file")
    return ScoreReport(rows_in, scored, rejected, str(output_path), str(rejects_path) if rejected else None,
                       round(time.perf_counter() - started, 3), model.engine)


def score_chunk(source: ServedModel | PortableModel, chunk: Any, offset: int,
                precision: int) -> tuple[Any, Any, int]:
    """Validate and score one partition (an executor task): (predictions or None, rejects, rows scored).

    `offset` is the partition's first row number in the input; `source` the model, or what a worker
    rebuilds it from.
    """
    model = source.load() if isinstance(source, PortableModel) else source
    if model.contract.target in chunk.columns:  # scoring ignores any outcome column present
        chunk = chunk.drop(model.contract.target)
    result = validate_frame(chunk, model.contract, require_target=False)
    quarantine = result.quarantine.with_columns(pl.col("_row") + offset)
    if not result.valid.height:
        return None, quarantine, 0
    bad = result.quarantine.get_column("_row").to_numpy()
    good_rows = np.setdiff1d(np.arange(chunk.height, dtype=np.int64), bad) + offset
    ids = [c.name for c in model.contract.columns if c.role == "id"]
    frame = pl.DataFrame({"_row": good_rows}).hstack(
        [result.valid.get_column(c) for c in ids if c in result.valid.columns]).hstack(
        _predictions(model, result.valid, precision))
    return frame, quarantine, result.valid.height


def _windows(chunks: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Chunks in groups of `size`: as many partitions in flight as the executor has workers."""
    group: list[Any] = []
    for chunk in chunks:
        group.append(chunk)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group


@dataclass
class PortableModel:
    """A verified model as its components' bytes, for workers in other processes to rebuild.

    The bytes were verified (signature, digests) where the model was loaded; a worker rebuilds it
    with the same safe loaders (ONNX, or skops behind its type allowlist) and keeps it.
    """

    name: str
    version: int
    bundle_id: str
    components: dict[str, str]
    blobs: dict[str, bytes]
    prefer_onnx: bool
    policy: dict[str, list[str]] = field(default_factory=dict)  # TrustPolicy.as_dict()
    _loaded: ServedModel | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_loaded": None}  # engines (an ONNX session) do not travel

    def load(self) -> ServedModel:
        if self._loaded is None:
            self._loaded = build_model(name=self.name, version=self.version, bundle_id=self.bundle_id,
                                       components=self.components, get=self.blobs.__getitem__,
                                       prefer_onnx=self.prefer_onnx, policy=TrustPolicy.from_dict(self.policy))
        return self._loaded


def portable_model(model: ServedModel, get: Callable[[str], bytes]) -> PortableModel:
    """The components a worker needs to rebuild `model` (`get` returns a component's verified bytes)."""
    wanted = {k: v for k, v in model.components.items() if k in ("contract", "engine", "onnx", "model")}
    return PortableModel(model.name, model.version, model.bundle_id, wanted,
                         {digest: get(digest) for digest in wanted.values()}, prefer_onnx=model.engine == "onnx",
                         policy=model.policy.as_dict())


def _predictions(model: ServedModel, valid: Any, precision: int) -> Any:
    out = model.predictor.frame(valid)
    if model.task == "regression":
        return pl.DataFrame({"prediction": out.reshape(-1)})
    labels = np.asarray(model.labels, dtype=object)
    columns = {"prediction": pl.Series(labels[out.argmax(axis=1)].tolist(), dtype=pl.String)}
    for j, label in enumerate(model.labels):
        columns[f"proba_{label}"] = pl.Series(np.round(out[:, j], precision))
    return pl.DataFrame(columns)
