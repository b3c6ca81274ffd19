"""A window of predictions: the Parquet files of a prediction log, with feedback labels joined.

The log is a directory of Parquet files (the server writes ``predictions-*`` and ``feedback-*``
files; files still being written end in ``.parquet.part`` and are not read). The server seals each
file by default (``*.parquet.sealed``: the artifact envelope, AES-256-GCM and signed, see
`keelml.store.sealed`); they are opened here with the key rings given (`keys`), after their
signature and digests are checked. Any plain Parquet files with the feature columns and a
``prediction`` column work too, unless `sealed_only` (the server's own encrypted log: a plaintext
file there was not written by it). Optional columns are ``request_id``, ``row``, ``ts`` (epoch
seconds or a datetime), ``model_version`` (or ``version``), ``label``, ``latency_ms`` and ``error``.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from keelml.errors import DataError, IntegrityError, NotFoundError
from keelml.spec.monitor import parse_window
from keelml.store.atomic import is_temp
from keelml.store.keys import KeyRing
from keelml.store.sealed import SEALED_SUFFIX, is_sealed, open_sealed, reading_rings

FEEDBACK_PREFIX = "feedback"


@dataclass(frozen=True)
class LogKeys:
    """What opens a prediction log: the key rings that may have sealed its files, and whether only sealed
    files belong there (the server encrypts its log: a plaintext file in it was put there by someone else)."""

    rings: tuple[KeyRing, ...] = ()
    sealed_only: bool = False


NO_KEYS = LogKeys()


def _files(directory: Path) -> tuple[list[Path], list[Path]]:
    if directory.is_file():
        return [directory], []
    if not directory.is_dir():
        raise NotFoundError(f"no prediction log at {directory}",
                            expected="a directory of Parquet files (the server's prediction log) or one file",
                            fix="pass --log DIR, or set monitor.log_path in the spec")
    files = sorted(p for pattern in ("*.parquet", f"*.parquet{SEALED_SUFFIX}") for p in directory.glob(pattern)
                   if p.is_file() and not is_temp(p.name))
    feedback = [p for p in files if p.name.startswith(FEEDBACK_PREFIX)]
    return [p for p in files if not p.name.startswith(FEEDBACK_PREFIX)], feedback


def _scan(files: list[Path], keys: LogKeys) -> pl.LazyFrame:
    """All files as one lazy frame; columns missing from some files are null there."""
    frames = []
    for path in files:
        try:
            with path.open("rb") as handle:
                sealed = is_sealed(handle.read(8))
            if sealed or path.name.endswith(SEALED_SUFFIX):
                frames.append(pl.read_parquet(io.BytesIO(_unsealed(path, keys.rings))).lazy())
            elif keys.sealed_only:
                raise IntegrityError(f"{path} is a plaintext file in an encrypted prediction log",
                                     expected="files sealed by the server (*.parquet.sealed)",
                                     fix="the server did not write it: if you did not expect it, treat the log "
                                         "as tampered with; move the file out (or read it with --log FILE)")
            else:
                frames.append(pl.scan_parquet(path))
            frames[-1].collect_schema()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__})",
                            expected="complete Parquet files in the prediction log",
                            fix="remove or repair the file; files being written must end in .part") from None
    return pl.concat(frames, how="diagonal_relaxed")


def _unsealed(path: Path, keys: tuple[KeyRing, ...]) -> bytes:
    """The Parquet bytes of a sealed log file (signature, digests and decryption checked)."""
    if not keys:
        raise IntegrityError(f"{path} is encrypted and no key was given to open it",
                             expected="the project's keys (keel monitor and keelml.read_predictions pass them)",
                             fix="read the log through `keel monitor -f SPEC` or keelml.read_predictions(SPEC)")
    return open_sealed(path.read_bytes(), keys, where=f"prediction log file {path.name}")


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
                        last: int | None = None, feedback: bool = True, keys: LogKeys = NO_KEYS) -> pl.DataFrame:
    """Rows of the log with ``ts >= since`` and/or the newest ``last`` rows, feedback labels joined.

    ``since`` is a datetime or epoch seconds. Sealed files are opened with ``keys.rings`` (a file
    sealed by none of them, or altered, is an IntegrityError); with ``keys.sealed_only`` a plaintext
    file is one too. Feedback files (``feedback-*.parquet``: ``request_id``,
    optional ``row``, ``label``, ``ts``) are joined by request id (and row) when the predictions have
    no ``label`` column; the newest label of a request wins. ``version`` is renamed ``model_version``.
    """
    predictions, labels = _files(Path(directory))
    if not predictions:
        return pl.DataFrame()
    frame = _epoch_seconds(_scan(predictions, keys))
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
        frame = _join_feedback(frame, _epoch_seconds(_scan(labels, keys)), with_row="row" in schema)
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


def window_frame(directory: str | Path, window: str | int, *, now: float | None = None,
                 keys: LogKeys = NO_KEYS) -> pl.DataFrame:
    """The window the spec or ``--window`` names: a duration back from ``now``, or the newest N rows."""
    try:
        size = parse_window(window)
    except ValueError as exc:
        raise DataError(str(exc), expected="a duration such as 1d, 6h, 15m, or a row count such as 10000",
                        fix="fix --window or monitor.window") from None
    if isinstance(size, timedelta):
        start = (time.time() if now is None else now) - size.total_seconds()
        return read_prediction_log(directory, since=start, keys=keys)
    return read_prediction_log(directory, last=size, keys=keys)


def log_keys(project_keys: KeyRing | None, *, encrypted: bool) -> LogKeys:
    """How a project opens its prediction logs: its own keys and the log keys derived from them (plus
    ``KEEL_LOG_KEY``), sealed files only when ``encrypted`` (the store's ``store.encryption``)."""
    return LogKeys(tuple(reading_rings(project_keys)), sealed_only=encrypted)
