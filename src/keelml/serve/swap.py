"""Hot swap: follow a resolver (which version should be live) and switch atomically when it changes.

The holder keeps one reference to the served model; a request reads it once and finishes on that
model, so requests in flight complete on the old version while new ones get the new version. A
version that fails to load, verify, or pass its smoke prediction is not switched to: the server
keeps the previous one, logs why, counts the failure in /metrics, and retries that version only
after `retry_seconds`. A resolver that refuses (IntegrityError: an alias moved outside keelml, a
version row that does not match its signed record) is not followed either: the server keeps its
version. Each switch and each new refusal is also reported to `on_event` (``serve.swap``,
``serve.swap_refused``), which the server writes to the audit log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keelml.errors import IntegrityError
from keelml.serve.engine import ServedModel
from keelml.serve.metrics import Metrics
from keelml.serve.schema import RequestModels

log = logging.getLogger("keelml.serve")

Resolver = Callable[[], int]
EventSink = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class Served:
    """A model version with the request models generated from its contract."""

    model: ServedModel
    schema: RequestModels


class ModelHolder:
    """The live model and the loop that follows the resolver."""

    def __init__(self, *, resolver: Resolver, loader: Callable[[int], Served], metrics: Metrics,
                 poll_seconds: float, retry_seconds: float = 60.0,
                 on_poll: Callable[[], Any] | None = None, on_event: EventSink | None = None) -> None:
        self._resolver = resolver
        self._loader = loader
        self._metrics = metrics
        self.poll_seconds = poll_seconds
        self._retry_seconds = retry_seconds
        self._failed: dict[int, float] = {}
        self._on_poll = on_poll
        self._on_event = on_event
        self._reported: dict[int, str] = {}  # refusals already reported: version -> problem
        self._unresolved: str | None = None  # the integrity problem that stops resolving, once reported
        self.current: Served | None = None
        self.last_error: str | None = None

    def start(self) -> Served:
        """Load the version the resolver names now; failure here stops the server from starting."""
        served = self._loader(self._resolver())
        self._install(served, first=True)
        return served

    def _install(self, served: Served, *, first: bool = False) -> None:
        previous = self.current
        self.current = served  # one reference assignment: atomic for every reader
        self._metrics.version = served.model.version
        self._metrics.engine = served.model.engine
        if not first:
            self._metrics.swaps += 1
        log.info("serving %s version %d (engine %s%s)", served.model.name, served.model.version,
                 served.model.engine, f", was version {previous.model.version}" if previous else "")
        if not first:
            self._emit("serve.swap", {"from_version": previous.model.version if previous else None,
                                      "to_version": served.model.version, "engine": served.model.engine})

    def _emit(self, event: str, details: dict[str, Any]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event, details)
        except Exception as exc:  # recording must never stop serving
            log.error("could not record %s: %s: %s", event, type(exc).__name__, exc)

    def poll_once(self) -> bool:
        """Check the resolver once; returns True when a new version was switched to."""
        if self._on_poll is not None:
            try:
                self._on_poll()
            except Exception as exc:
                log.error("refresh failed: %s: %s", type(exc).__name__, exc)
        try:
            wanted = self._resolver()
        except Exception as exc:
            what = getattr(exc, "what", None) or f"{type(exc).__name__}: {exc}"
            self.last_error = f"cannot resolve the live version: {what}"
            log.error(self.last_error)
            if isinstance(exc, IntegrityError) and self._unresolved != what:  # e.g. an alias moved outside keelml
                self._unresolved = what
                self._metrics.swap_failures += 1
                still = current.model.version if (current := self.current) else None
                self._emit("serve.swap_refused", {"version": None, "still_serving": still, "problem": what[:500]})
            return False
        self._unresolved = None
        current = self.current
        if current is not None and wanted == current.model.version:
            self._metrics.refused_version = 0
            return False
        failed_at = self._failed.get(wanted)
        if failed_at is not None and time.monotonic() - failed_at < self._retry_seconds:
            return False
        try:
            served = self._loader(wanted)
        except Exception as exc:
            self._failed[wanted] = time.monotonic()
            self._metrics.swap_failures += 1
            self._metrics.refused_version = wanted
            what = getattr(exc, "what", None) or f"{type(exc).__name__}: {exc}"
            still = current.model.version if current else None
            self.last_error = f"version {wanted} refused, still serving version {still or '-'}: {what}"
            log.error(self.last_error)
            if self._reported.get(wanted) != what:  # once per version and problem, not at every retry
                self._reported[wanted] = what
                self._emit("serve.swap_refused", {"version": wanted, "still_serving": still, "problem": what[:500]})
            return False
        self._failed.pop(wanted, None)
        self._reported.pop(wanted, None)
        self._metrics.refused_version = 0
        self._install(served)
        return True

    async def follow(self) -> None:
        """Poll forever (cancel the task to stop); loading runs in a worker thread."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            await asyncio.to_thread(self.poll_once)
