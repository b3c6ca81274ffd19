"""A window of predictions: the Parquet files of a prediction log, with feedback labels joined.

The log is a directory of Parquet files (the server writes ``predictions-*.parquet`` and
``feedback-*.parquet``; files still being written end in ``.parquet.part`` and are not read). Any
Parquet files with the feature columns and a ``prediction`` column work; optional columns are
``request_id``, ``row``, ``ts`` (epoch seconds or a datetime), ``model_version`` (or ``version``),
``label``, ``latency_ms`` and ``error``.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from keelml.errors import DataError, NotFoundError
from keelml.spec.monitor import parse_window

FEEDBACK_PREFIX = "feedback"


def _files(directory: Path) -> tuple[list[Path], list[Path]]:
    if directory.is_file():
        return [directory], []
    if not directory.is_dir():
        raise NotFoundError(f"no prediction log at {directory}",
                            expected="a directory of Parquet files (the server's prediction log) or one file",
                            fix="pass --log DIR, or set monitor.log_path in the spec")
    files = sorted(p for p in directory.glob("*.parquet") if p.is_file())
    feedback = [p for p in files if p.name.startswith(FEEDBACK_PREFIX)]
    return [p for p in files if not p.name.startswith(FEEDBACK_PREFIX)], feedback


def _scan(files: list[Path]) -> pl.LazyFrame:
    """All files as one lazy frame; columns missing from some files are null there."""
    frames = []
    for path in files:
        try:
            frames.append(pl.scan_parquet(path))
            frames[-1].collect_schema()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__})",
                            expected="complete Parquet files in the prediction log",
                            fix="remove or repair the file; files being written must end in .part") from None
    return pl.concat(frames, how="diagonal_relaxed")


def _epoch_seconds(frame: pl.LazyFrame) -> pl.LazyFrame:
    """The ``ts`` column as float epoch seconds (a datetime column is converted)."""
    schema = frame.collect_schema()
    if "ts" not in schema:
        return frame
    dtype = schema["ts"]
    if isinstance(dtype, pl.Datetime):
        return frame.with_columns((pl.col("ts").dt.epoch("us") / 1e6).alias("ts"))
    if dtype.is_numeric():
        return frame.with_columns(pl.col("ts").cast(pl.Float64))
    raise DataError(f"the log's ts column has type {dtype}", expected="epoch seconds (a number) or a datetime",
                    fix="write ts as seconds since 1970 or as a timestamp")


def read_prediction_log(directory: str | Path, *, since: datetime | float | None = None,
                        last: int | None = None, feedback: bool = True) -> pl.DataFrame:
    """Rows of the log with ``ts >= since`` and/or the newest ``last`` rows, feedback labels joined.

    ``since`` is a datetime or epoch seconds. Feedback files (``feedback-*.parquet``: ``request_id``,
    optional ``row``, ``label``, ``ts``) are joined by request id (and row) when the predictions have
    no ``label`` column; the newest label of a request wins. ``version`` is renamed ``model_version``.
    """
    predictions, labels = _files(Path(directory))
    if not predictions:
        return pl.DataFrame()
    frame = _epoch_seconds(_scan(predictions))
    schema = frame.collect_schema()
    if "version" in schema and "model_version" not in schema:
        frame = frame.rename({"version": "model_version"})
    if since is not None and "ts" not in schema:
        raise DataError("the prediction log has no ts column, so a time window cannot be taken",
                        expected="a ts column (epoch seconds) in the log",
                        fix="use a row-count window such as --window 10000")
    if since is not None:
        start = since.timestamp() if isinstance(since, datetime) else float(since)
        frame = frame.filter(pl.col("ts") >= start)
    if last is not None:
        frame = (frame.sort("ts", maintain_order=True) if "ts" in schema else frame).tail(last)
    if feedback and labels and "label" not in schema and "request_id" in schema:
        frame = _join_feedback(frame, _epoch_seconds(_scan(labels)), with_row="row" in schema)
    return frame.collect()


def _join_feedback(frame: pl.LazyFrame, labels: pl.LazyFrame, *, with_row: bool) -> pl.LazyFrame:
    columns = labels.collect_schema()
    if "request_id" not in columns or "label" not in columns:
        raise DataError("feedback files need request_id and label columns",
                        expected="feedback-*.parquet with request_id, row, label, ts",
                        fix="write feedback through the server's feedback endpoint")
    keys = ["request_id", "row"] if with_row and "row" in columns else ["request_id"]
    if "ts" in columns:
        labels = labels.sort("ts", maintain_order=True)
    newest = labels.select([*keys, pl.col("label").cast(pl.String)]).unique(subset=keys, keep="last",
                                                                            maintain_order=True)
    return frame.join(newest, on=keys, how="left", maintain_order="left")


def window_frame(directory: str | Path, window: str | int, *, now: float | None = None) -> pl.DataFrame:
    """The window the spec or ``--window`` names: a duration back from ``now``, or the newest N rows."""
    try:
        size = parse_window(window)
    except ValueError as exc:
        raise DataError(str(exc), expected="a duration such as 1d, 6h, 15m, or a row count such as 10000",
                        fix="fix --window or monitor.window") from None
    if isinstance(size, timedelta):
        start = (time.time() if now is None else now) - size.total_seconds()
        return read_prediction_log(directory, since=start)
    return read_prediction_log(directory, last=size)
