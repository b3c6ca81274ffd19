"""The connections a server holds: time limits on a request's head, its body and its response, and a cap.

uvicorn closes a kept-alive connection that stays idle (`timeout_keep_alive`), but by itself it
has no time limit on a request's head or body, none on a new connection that sends nothing, and no
cap on the number of connections (`limit_concurrency` answers 503 once a request's head is in, and
keeps the connection). Measured on keelml before this module: idle, slow-header (a byte a second)
and slow-body connections were all still open after 20 s (the issue saw over 70 s), and 400 idle
connections opened at once were all held; only the file-descriptor limit capped them.

`WatchedHttpTools` and `WatchedH11` are uvicorn's two HTTP/1.1 protocols, each connection with a
`ConnectionWatch` that knows which phase the connection is in:

    head  waiting for a request's head: a new connection, or a kept-alive one once the next
          request's first byte is in. Limit: `header_timeout_seconds` (408, closed); a head larger
          than `MAX_HEAD_BYTES` is answered 431 and closed (httptools has no limit of its own; h11
          answers a head over 16 KiB with a 400 itself)
    body  the head is in, the body is not. Limit: `body_timeout_seconds` (408, closed). This includes
          the rest of a body the application answered before reading it (a 413, a 401): it is read
          and dropped, and the connection closed if it has not all come within the limit
    app   the request is complete and the application answers: no limit (the application's own)
    idle  answered, kept alive: uvicorn's keep-alive timer (`keep_alive_seconds`)

A response the client does not take in (the transport's buffer stays above its high-water mark)
is dropped after `body_timeout_seconds`. A connection beyond `max_connections` (per process) is
answered 503 and closed as soon as it is accepted.

The watch looks at the phase after each chunk of data received and after each response, and (re)arms
its one timer only when the phase changes. A kept-alive connection whose requests arrive whole
(idle -> app -> idle) arms no timer at all: the hot path pays two attribute reads and a comparison
per chunk. The settings (`ConnectionPolicy`) travel with the application: uvicorn imports these
classes by name (worker processes too) and each finds the policy on the guard it serves.

Every answer written here carries `X-Content-Type-Options: nosniff` and `Cache-Control: no-store`
like every other response of the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from keelml.serve.bodies import SECURITY_HEADERS, error_body

log = logging.getLogger("keelml.serve")

MAX_HEAD_BYTES = 64 * 1024  # request line and headers; nginx's default buffers allow 32 KiB
HEAD, BODY, APP, IDLE, CLOSED = "head", "body", "app", "idle", "closed"
REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large",
           503: b"Service Unavailable"}
_EXTRA_HEADERS = b"".join(name + b": " + value + b"\r\n" for name, value in SECURITY_HEADERS)
_WARN_EVERY = 60.0  # seconds between two log lines about refused connections


@dataclass
class ConnectionPolicy:
    """How long each phase of a connection may take, how many connections a process holds, and counters."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000
    open: int = 0
    refused: int = 0
    timed_out: dict[str, int] = field(default_factory=lambda: {HEAD: 0, BODY: 0, "write": 0, "head_size": 0})
    _warned_at: float = -_WARN_EVERY

    def render(self) -> list[str]:
        """Prometheus lines (added to /metrics)."""
        lines = ["# HELP keel_connections_open HTTP connections open in this server process.",
                 "# TYPE keel_connections_open gauge", f"keel_connections_open {self.open}",
                 f"# HELP keel_connections_refused_total Connections answered 503 and closed: over "
                 f"max_connections ({self.max_connections}).",
                 "# TYPE keel_connections_refused_total counter", f"keel_connections_refused_total {self.refused}",
                 "# HELP keel_connections_closed_total Connections closed for a slow or oversized request head "
                 "(head, head_size), a slow body (body) or a response not taken in (write).",
                 "# TYPE keel_connections_closed_total counter"]
        lines += [f'keel_connections_closed_total{{reason="{reason}"}} {n}' for reason, n in self.timed_out.items()]
        return lines

    def refusing(self) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            log.warning("connection refused: %d open, serve.max_connections is %d (%d refused so far)",
                        self.open, self.max_connections, self.refused)


def policy_of(config: Config) -> ConnectionPolicy:
    """The policy of the application `config` serves (the guard carries it), found once per server."""
    found: ConnectionPolicy | None = getattr(config, "_keel_connection_policy", None)
    if found is None:
        app: Any = config.loaded_app
        while app is not None and not isinstance(getattr(app, "connection_policy", None), ConnectionPolicy):
            app = getattr(app, "app", None)  # uvicorn's middlewares (proxy headers) wrap the guard
        found = app.connection_policy if app is not None else ConnectionPolicy()
        config._keel_connection_policy = found  # type: ignore[attr-defined]
    return found


def answer(transport: asyncio.Transport, status: int, message: str) -> None:
    """Write a short JSON error answer and close the connection."""
    body = error_body(message)
    head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n"
            % (status, REASONS[status], len(body)))
    if not transport.is_closing():
        transport.write(head + _EXTRA_HEADERS + b"\r\n" + body)
    transport.close()


class ConnectionWatch:
    """The phase of one connection and the timer that bounds it."""

    __slots__ = ("counted", "cycle", "head_bytes", "loop", "phase", "policy", "proto", "running", "timer",
                 "write_timer")

    def __init__(self, proto: Any, policy: ConnectionPolicy, loop: asyncio.AbstractEventLoop) -> None:
        self.proto, self.policy, self.loop = proto, policy, loop
        self.phase: str = CLOSED
        self.cycle: Any = None
        self.timer: asyncio.TimerHandle | None = None
        self.write_timer: asyncio.TimerHandle | None = None
        self.head_bytes = 0
        self.counted = False
        self.running: Any = None  # the cycle answering now (httptools queues pipelined ones behind it)

    def opened(self) -> None:
        """A new connection: refused beyond the cap, else its first head is awaited."""
        policy = self.policy
        if len(self.proto.connections) > policy.max_connections:
            policy.refusing()
            answer(self.proto.transport, 503, "too many connections")
            return
        self.counted = True
        policy.open += 1
        self.track(0)

    def closed(self) -> None:
        for timer in (self.timer, self.write_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.write_timer = None
        self.phase = CLOSED
        if self.counted:
            self.counted = False
            self.policy.open -= 1

    def _now(self) -> tuple[str, Any]:
        proto = self.proto
        cycle = proto.cycle
        if cycle is None or cycle.response_complete:
            if proto.transport.is_closing():
                return CLOSED, cycle
            if cycle is not None and cycle.more_body:  # answered early (413, 401...): its body is still coming
                return BODY, cycle
            return (IDLE if proto.timeout_keep_alive_task is not None else HEAD), cycle
        return (BODY if cycle.more_body else APP), cycle

    def track(self, received: int) -> None:
        """After data came in or a response went out: (re)arm the timer when the phase changed."""
        phase, cycle = self._now()
        if phase is self.phase and cycle is self.cycle:
            if phase is HEAD:
                self.head_bytes += received
                if self.head_bytes > MAX_HEAD_BYTES:
                    self._close(HEAD, size=True)
            return
        self.phase, self.cycle = phase, cycle
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if phase is HEAD:
            self.head_bytes = received
            self.timer = self.loop.call_later(self.policy.header_timeout, self._expired)
        elif phase is BODY:
            self.timer = self.loop.call_later(self.policy.body_timeout, self._expired)

    def _expired(self) -> None:
        self.timer = None
        phase, cycle = self._now()
        if phase is not self.phase or cycle is not self.cycle:  # it moved on without telling: look again
            self.phase = CLOSED
            self.track(0)
        elif phase is HEAD or phase is BODY:
            self._close(phase)

    def _close(self, phase: str, *, size: bool = False) -> None:
        self.policy.timed_out["head_size" if size else phase] += 1
        cycle, transport = self.cycle, self.proto.transport
        if phase is BODY and cycle.response_complete:
            transport.close()  # answered already (before its body was in): nothing more to say
        elif phase is BODY and cycle.response_started:
            transport.abort()  # an answer is under way: nothing more can be said on this connection
        elif size:
            answer(self.proto.transport, 431, f"request head larger than {MAX_HEAD_BYTES} bytes")
        else:
            answer(self.proto.transport, 408, f"request {'head' if phase is HEAD else 'body'} not received "
                   "in time")
        self.closed()

    def write_paused(self) -> None:
        """The client is not taking the response in: it has `body_timeout` to start again."""
        if self.write_timer is None:
            self.write_timer = self.loop.call_later(self.policy.body_timeout, self._write_expired)

    def write_resumed(self) -> None:
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None

    def _write_expired(self) -> None:
        self.write_timer = None
        self.policy.timed_out["write"] += 1
        proto = self.proto
        # the answering request and those queued behind it stop writing (uvicorn marks only the newest one)
        for cycle in (self.running, proto.cycle, *(queued for queued, _ in getattr(proto, "pipeline", ()))):
            if cycle is not None:
                cycle.disconnected = True
        proto.transport.abort()
        self.closed()


if TYPE_CHECKING:  # the hooks call the protocol's own methods through super()
    _ProtocolBase = H11Protocol
else:
    _ProtocolBase = object


class _WatchHooks(_ProtocolBase):
    """The hooks both uvicorn protocols get: each feeds the connection's `ConnectionWatch`."""

    watch: ConnectionWatch

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.watch.opened()

    def connection_lost(self, exc: Exception | None) -> None:
        self.watch.closed()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.watch.track(len(data))

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.watch.track(0)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.watch.write_paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.watch.write_resumed()

    def send_400_response(self, msg: str) -> None:
        answer(self.transport, 400, "invalid HTTP request")


class WatchedH11(_WatchHooks, H11Protocol):
    """uvicorn's h11 protocol with a `ConnectionWatch` (the fallback when httptools is not installed)."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        H11Protocol.__init__(self, config, server_state, app_state, _loop)
        self.watch = ConnectionWatch(self, policy_of(config), self.loop)


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools comes with the serve extra (uvicorn[standard])
    pass
else:

    class WatchedHttpTools(_WatchHooks, HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's httptools protocol with a `ConnectionWatch` (what `keel serve` uses)."""

        def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                     _loop: asyncio.AbstractEventLoop | None = None) -> None:
            HttpToolsProtocol.__init__(self, config, server_state, app_state, _loop)
            self.watch = ConnectionWatch(self, policy_of(config), self.loop)

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            self.watch.running = cycle
            super()._start_asgi_task(cycle, app)
