"""A server process: its configuration, its tuning, and uvicorn.

The configuration is one JSON-serialisable `ServeConfig`; worker processes (``--workers N``) and
infra validation's fresh process receive it in the ``KEEL_SERVE_CONFIG`` environment variable and
build the same application with `app_from_env`. This module stays light (no numpy): it limits the
process to one BLAS/OpenMP thread before `build_server` loads the wiring (`wiring.py`) and with it
the numeric libraries, which size their thread pools when they are loaded.

Every way a server starts (`keel serve`, its worker processes, infra validation's process and
containers, all through `serve`) runs uvicorn with `uvicorn_options`: the HTTP protocol of
`connections.py` (head, body and response time limits, the connection cap), `serve.keep_alive_seconds`,
no WebSocket upgrades, and proxy headers only from `serve.trusted_proxies` (uvicorn would otherwise
believe `X-Forwarded-For` from 127.0.0.1, letting a local client pick the address its rate limit
and extraction statistics are kept under when keys are off).
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from keelml.serve.auth import SESSION_SECRET_ENV
from keelml.spec.serve import ServeSpec

if TYPE_CHECKING:
    from keelml.serve.limits import Guard
    from keelml.serve.wiring import BuiltServer

CONFIG_ENV = "KEEL_SERVE_CONFIG"
PROTOCOLS = "keelml.serve.connections:WatchedHttpTools", "keelml.serve.connections:WatchedH11"
FD_MARGIN = 256  # file descriptors beyond serve.max_connections (logs, the store, the listening socket)
SWITCH_SECONDS = 0.0005  # longest the event loop waits for the interpreter lock held by a background thread
log = logging.getLogger("keelml.serve")


@dataclass
class ServeConfig:
    """Everything a server process needs, as plain data."""

    store_root: str | None  # the project store (None when serving an exported bundle)
    model: str
    version: int | None = None  # a fixed version; None: follow `alias`
    alias: str | None = None  # with version None: follow this alias (None: the latest version)
    metadata_url: str | None = None
    encryption: bool = True
    artifacts_url: str | None = None  # store.artifacts_url (None: the store's own directory)
    artifacts_options: dict[str, Any] = field(default_factory=dict)
    serve: dict[str, Any] = field(default_factory=dict)  # ServeSpec fields
    insecure_no_auth: bool = False
    extra_keys: dict[str, list[str]] = field(default_factory=dict)  # key id -> [name, sha256] (ephemeral keys)
    prefer_onnx: bool = True
    smoke_rows: int = 16
    bundle_dir: str | None = None  # serve an exported bundle (containers) instead of the store
    keys_file: str | None = None  # key hashes (`keel keys export-hashes`) when there is no store
    trusted_key_id: str | None = None  # pin the exported bundle's signer
    purpose: str = "serve"  # recorded with serve.start ("infra-validation" for promotion checks)

    @property
    def ref(self) -> str:
        """What the server follows: a fixed version number, an alias, or "latest"."""
        return str(self.version) if self.version is not None else (self.alias or "latest")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        return cls(**json.loads(text))


def _limit_threads() -> None:
    """One OpenMP/BLAS thread per server process (measured: half the CPU at equal or better speed)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def tune_process() -> None:
    """Latency settings for a server process, applied once it has started (not in tests' processes).

    - `gc.freeze()`: the ~100k objects alive after start-up (libraries, the model, the app) leave the
      garbage collector's view; measured on this code, a full collection otherwise stalls the event
      loop for ~80 ms of CPU, and collections of the older generations recur while serving.
    - `sys.setswitchinterval(0.5 ms)`: a background thread (prediction-log writer, version poll)
      holding the interpreter lock hands it back to the event loop within 0.5 ms instead of 5 ms.
    """
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(SWITCH_SECONDS)


def create_app(config: ServeConfig, on_startup: Callable[[], None] | None = None) -> Guard:
    """The guarded ASGI application for `config` (loads and verifies the live version first)."""
    return build_server(config, on_startup=on_startup).app


def build_server(config: ServeConfig, *, on_startup: Callable[[], None] | None = None) -> BuiltServer:
    """Build the application for `config`; its holder can also be polled directly (`holder.poll_once()`).

    `on_startup` runs in the serving process once the server has started (`serve` passes `tune_process`).
    """
    _limit_threads()
    from keelml.serve.wiring import wire  # after _limit_threads: numpy & co. size their thread pools on loading

    return wire(config, on_startup=on_startup)


def app_from_env() -> Guard:
    """uvicorn factory for worker processes: the configuration comes from KEEL_SERVE_CONFIG."""
    _configure_logging()
    return create_app(ServeConfig.from_json(os.environ[CONFIG_ENV]), on_startup=tune_process)


def _configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s keel-serve %(levelname)s %(message)s",
                        stream=sys.stderr)
    log.setLevel(logging.INFO)


def uvicorn_options(spec: ServeSpec, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
                    tls_cert: str | None = None, tls_key: str | None = None) -> dict[str, Any]:
    """uvicorn's settings for a server with `spec` (what `serve` passes to `uvicorn.run`)."""
    httptools = importlib.util.find_spec("httptools") is not None
    return {
        "host": host, "port": port, "workers": workers, "ssl_certfile": tls_cert, "ssl_keyfile": tls_key,
        "access_log": False, "log_level": "warning", "server_header": False, "timeout_graceful_shutdown": 10,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": PROTOCOLS[0] if httptools else PROTOCOLS[1], "ws": "none",
        "timeout_keep_alive": spec.keep_alive_seconds,
        # X-Forwarded-For/-Proto only from the named proxies; none named: the peer's address is the client
        "proxy_headers": bool(spec.trusted_proxies), "forwarded_allow_ips": list(spec.trusted_proxies),
    }


def _room_for_connections(max_connections: int) -> None:
    """Raise the soft file-descriptor limit so that `max_connections`, not the limit, caps connections."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + FD_MARGIN
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if raised > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    if raised < wanted:
        log.warning("serve.max_connections is %d but this process may open only %d files: lower it, or raise "
                    "the limit (ulimit -n)", max_connections, raised)


def serve(config: ServeConfig, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          tls_cert: str | None = None, tls_key: str | None = None) -> None:
    """Run uvicorn until interrupted."""
    _limit_threads()
    _configure_logging()
    spec = ServeSpec.model_validate(config.serve)
    _room_for_connections(spec.max_connections)
    os.environ[CONFIG_ENV] = config.to_json()
    os.environ.setdefault(SESSION_SECRET_ENV, secrets.token_hex(32))  # dashboard sessions: one secret per server
    # One process: build the app here, so a missing model or a failed verification is reported
    # before uvicorn starts. Several workers: each builds its own from the environment.
    target: Guard | str
    if workers == 1:
        built = build_server(config, on_startup=tune_process)
        served = built.holder.current
        assert served is not None  # the holder has started
        target, source, version = built.app, built.source, int(served.model.version)
    else:
        from keelml.serve.wiring import version_source  # after _limit_threads (see build_server)

        target = "keelml.serve.server:app_from_env"
        source = version_source(config)
        version = source.resolve()
    start = {"version": version, "host": host, "port": port, "workers": workers,
             "auth": "off" if config.insecure_no_auth else "on", "tls": "on" if tls_cert else "off"}
    log.info("serving %s (%s) version %d on %s:%d, auth %s, TLS %s", config.model, config.ref, version, host, port,
             start["auth"], start["tls"])
    source.record("serve.start", start)
    uvicorn.run(target, factory=workers > 1,
                **uvicorn_options(spec, host=host, port=port, workers=workers, tls_cert=tls_cert, tls_key=tls_key))


def main() -> None:
    """`python -m keelml.serve.server`: serve $KEEL_SERVE_CONFIG (or the file $KEEL_SERVE_CONFIG_FILE).

    Host, port, workers and TLS come from KEEL_SERVE_HOST, KEEL_SERVE_PORT, KEEL_SERVE_WORKERS,
    KEEL_TLS_CERT and KEEL_TLS_KEY.
    """
    _configure_logging()
    text = os.environ.get(CONFIG_ENV) or Path(os.environ["KEEL_SERVE_CONFIG_FILE"]).read_text()
    serve(ServeConfig.from_json(text), host=os.environ.get("KEEL_SERVE_HOST", "127.0.0.1"),
          port=int(os.environ.get("KEEL_SERVE_PORT", "8000")), workers=int(os.environ.get("KEEL_SERVE_WORKERS", "1")),
          tls_cert=os.environ.get("KEEL_TLS_CERT") or None, tls_key=os.environ.get("KEEL_TLS_KEY") or None)


if __name__ == "__main__":
    main()
