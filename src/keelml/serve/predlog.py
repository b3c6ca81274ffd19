"""The prediction log: every served row and every feedback label, in Parquet files, off the request path.

Requests append one record (a named tuple: cheap to build, few objects for the garbage collector)
to a deque (constant time, no lock, no thread wake-up; when it holds QUEUE_LIMIT entries the record
is dropped and counted, never waited for). pyarrow is imported with this module and the table code
run once when the log is created, so the first flush does not import modules (pyarrow pulls in
pandas: over a second holding the interpreter lock) while requests are being served. A writer thread wakes
every FLUSH_SECONDS, turns what accumulated into Arrow record batches, writes
them to Parquet and, when the file is rolled (by size or age) or the server stops, completes it, so
readers only ever see complete files. PII columns are logged as HMAC-SHA256 hashes with a key derived
from the project's PII key (or as nulls when the contract says drop).

Encrypted by default: with a sealing key ring (the project's keys, or a log key for a server without
a store; `keelml.store.sealed`), a file's Parquet bytes are built in memory and written once, sealed
in the artifact envelope (AES-256-GCM, signed), as ``*.parquet.sealed``: no plaintext reaches the
disk. Without one (``store.encryption: false``) the writer streams to ``*.parquet.part`` and
renames it to ``*.parquet``. Either way files are 0600 and the directory 0700.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from keelml.store.atomic import atomic_write_bytes, private_dirs, private_file
from keelml.store.keys import KeyRing
from keelml.store.sealed import SEALED_SUFFIX, sealed_parts

log = logging.getLogger("keelml.serve")

QUEUE_LIMIT = 100_000
_ARROW_TYPES = {"integer": "int64", "float": "float64", "boolean": "bool_", "category": "string", "string": "string"}
FLUSH_SECONDS = 1.0


class LogEntry(NamedTuple):
    """One request: its id, time, model version, validated rows, outputs and latency."""

    request_id: str
    ts: float
    version: int
    rows: Sequence[Sequence[Any]]
    labels: Sequence[Any]
    scores: Sequence[float | None]
    latency_ms: float


class Feedback(NamedTuple):
    """A ground-truth label for one row of an answered request."""

    request_id: str
    row: int
    label: Any
    ts: float


class _RollingFile:
    """One Parquet writer: sealed into place when closed, or streamed to a ``.part`` file renamed when closed."""

    def __init__(self, directory: Path, prefix: str, roll_bytes: int, roll_seconds: float,
                 seal: KeyRing | None) -> None:
        self.directory, self.prefix = directory, prefix
        self.roll_bytes, self.roll_seconds = roll_bytes, roll_seconds
        self._seal = seal
        self._writer: Any = None
        self._sink: Any = None  # the in-memory Parquet bytes of a file to be sealed
        self._path: Path | None = None
        self._opened = 0.0

    def write(self, table: Any) -> None:
        if self._writer is not None and (self._too_old() or self._too_big()):
            self.close()
        if self._writer is None:
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            name = f"{self.prefix}-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
            if self._seal is not None:
                self._path = self.directory / f"{name}{SEALED_SUFFIX}"
                self._sink = pa.BufferOutputStream()
                self._writer = pq.ParquetWriter(self._sink, table.schema, compression="zstd")
            else:
                self._path = self.directory / f"{name}.part"
                private_file(self._path)  # 0600 before a byte is written
                self._writer = pq.ParquetWriter(str(self._path), table.schema, compression="zstd")
            self._opened = time.monotonic()
        self._writer.write_table(table)

    def _too_old(self) -> bool:
        return time.monotonic() - self._opened >= self.roll_seconds

    def _too_big(self) -> bool:
        if self._sink is not None:
            return int(self._sink.tell()) >= self.roll_bytes
        return self._path is not None and self._path.stat().st_size >= self.roll_bytes

    def roll_if_due(self) -> None:
        if self._writer is not None and self._too_old():
            self.close()

    def close(self) -> None:
        if self._writer is None or self._path is None:
            return
        self._writer.close()
        if self._seal is not None:
            # no copy of the Parquet bytes: hashed, then encrypted a chunk at a time, then written in two parts
            data = memoryview(self._sink.getvalue())
            atomic_write_bytes(self._path, sealed_parts(data, self._seal, codec="parquet"))
        else:
            self._path.rename(self._path.with_suffix(""))  # drop ".part"
        self._writer, self._sink, self._path = None, None, None


class PredictionLog:
    """Queue + writer thread. `put` and `feedback` never block; `close` flushes and finalises files.

    `seal`: the key ring that encrypts and signs each file (None: plaintext Parquet).
    """

    def __init__(self, directory: Path, *, model: str, columns: list[tuple[str, str]], hash_columns: Sequence[str],
                 hash_key: bytes, roll_bytes: int, roll_seconds: float, drop_columns: Sequence[str] = (),
                 on_written: Callable[[int], None] | None = None,
                 on_dropped: Callable[[int], None] | None = None, seal: KeyRing | None = None) -> None:
        private_dirs(directory)
        self.directory = directory
        self._model = model
        self._columns = [name for name, _ in columns]
        self._types = [kind for _, kind in columns]
        self._dropped = {self._columns.index(c) for c in drop_columns if c in self._columns}
        self._hashed = {self._columns.index(c) for c in hash_columns if c in self._columns} - self._dropped
        self._key = hmac.new(hash_key, b"keelml prediction log", hashlib.sha256).digest()
        self._items: collections.deque[LogEntry | Feedback] = collections.deque()
        self._stop = threading.Event()
        self._predictions = _RollingFile(directory, "predictions", roll_bytes, roll_seconds, seal)
        self._feedback = _RollingFile(directory, "feedback", roll_bytes, roll_seconds, seal)
        self._on_written = on_written or (lambda n: None)
        self._on_dropped = on_dropped or (lambda n: None)
        self._warm_up()
        self._thread = threading.Thread(target=self._loop, name="keel-predlog", daemon=True)
        self._thread.start()

    def _warm_up(self) -> None:
        """Build each kind of table once, now (pyarrow imports more modules at first use), not mid-serving."""
        row = tuple(None for _ in self._columns)
        self._prediction_table([LogEntry("warm-up", 0.0, 0, [row], ["x"], [0.5], 0.0)])
        self._feedback_table([Feedback("warm-up", 0, "x", 0.0)])

    def put(self, entry: LogEntry | Feedback) -> None:
        if len(self._items) >= QUEUE_LIMIT:
            self._on_dropped(1)
            return
        self._items.append(entry)  # deque.append is atomic: no lock, and the writer is not woken

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            stopping = self._stop.wait(FLUSH_SECONDS)
            pending: list[LogEntry] = []
            feedback: list[Feedback] = []
            while self._items:
                item = self._items.popleft()
                (pending if isinstance(item, LogEntry) else feedback).append(item)  # type: ignore[arg-type]
            self._flush(pending, feedback)
            if stopping:
                break
        self._predictions.close()
        self._feedback.close()

    def _flush(self, pending: list[LogEntry], feedback: list[Feedback]) -> None:
        try:
            if pending:
                table = self._prediction_table(pending)
                self._predictions.write(table)
                self._on_written(table.num_rows)
            if feedback:
                self._feedback.write(self._feedback_table(feedback))
            self._predictions.roll_if_due()
            self._feedback.roll_if_due()
        except Exception as exc:  # a full disk must not take the server down
            log.error("prediction log write failed: %s: %s", type(exc).__name__, exc)
            self._on_dropped(sum(len(e.rows) for e in pending) + len(feedback))

    def _hash(self, value: Any) -> str | None:
        if value is None:
            return None
        return hmac.new(self._key, str(value).encode(), hashlib.sha256).hexdigest()[:32]

    def _prediction_table(self, entries: list[LogEntry]) -> Any:
        base: dict[str, list[Any]] = {k: [] for k in (
            "request_id", "row", "ts", "model", "version", "prediction", "score", "latency_ms")}
        features: list[list[Any]] = [[] for _ in self._columns]
        for e in entries:
            for r, (row, label, score) in enumerate(zip(e.rows, e.labels, e.scores, strict=True)):
                base["request_id"].append(e.request_id)
                base["row"].append(r)
                base["ts"].append(e.ts)
                base["model"].append(self._model)
                base["version"].append(e.version)
                base["prediction"].append(None if label is None else str(label))
                base["score"].append(score)
                base["latency_ms"].append(e.latency_ms)
                for j, value in enumerate(row):
                    features[j].append(None if j in self._dropped else
                                       self._hash(value) if j in self._hashed else value)
        types = {"request_id": pa.string(), "row": pa.int64(), "ts": pa.float64(), "model": pa.string(),
                 "version": pa.int64(), "prediction": pa.string(), "score": pa.float64(), "latency_ms": pa.float64()}
        arrays = {k: pa.array(v, types[k]) for k, v in base.items()}
        for j, name in enumerate(self._columns):
            kind = "string" if j in self._hashed or j in self._dropped else self._types[j]
            arrays[name] = pa.array(features[j], getattr(pa, _ARROW_TYPES[kind])())
        return pa.table(arrays)

    def _feedback_table(self, items: list[Feedback]) -> Any:
        return pa.table({
            "request_id": pa.array([f.request_id for f in items], pa.string()),
            "row": pa.array([f.row for f in items], pa.int64()),
            "label": pa.array([str(f.label) for f in items], pa.string()),
            "ts": pa.array([f.ts for f in items], pa.float64()),
            "model": pa.array([self._model] * len(items), pa.string()),
        })
