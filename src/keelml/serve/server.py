"""Start the server: configuration, wiring (store, resolver, loader, keys, log), and uvicorn.

The configuration is one JSON-serialisable `ServeConfig`; worker processes (``--workers N``) and
infra validation's fresh process receive it in the ``KEEL_SERVE_CONFIG`` environment variable and
build the same application with `app_from_env`.
"""

from __future__ import annotations

import abc
import gc
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from keelml.spec.serve import ServeSpec

CONFIG_ENV = "KEEL_SERVE_CONFIG"
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


@dataclass(frozen=True)
class BuiltServer:
    """The guarded ASGI application, the holder following the live version, and where versions come from."""

    app: Any
    holder: Any  # swap.ModelHolder
    source: _Source


def create_app(config: ServeConfig, on_startup: Callable[[], None] | None = None) -> Any:
    """The guarded ASGI application for `config` (loads and verifies the live version first)."""
    return build_server(config, on_startup=on_startup).app


def build_server(config: ServeConfig, *, on_startup: Callable[[], None] | None = None) -> BuiltServer:
    """Build the application for `config`; its holder can also be polled directly (`holder.poll_once()`).

    `on_startup` runs in the serving process once the server has started (`serve` passes `tune_process`).
    """
    _limit_threads()
    from keelml.serve.app import AppSettings, build_app
    from keelml.serve.auth import KeyChecker
    from keelml.serve.extraction import ExtractionMonitor, ExtractionSettings
    from keelml.serve.limits import Guard, GuardSettings, RateLimiter
    from keelml.serve.metrics import Metrics
    from keelml.serve.predlog import PredictionLog
    from keelml.serve.recorded import smoke_check
    from keelml.serve.schema import request_models
    from keelml.serve.swap import ModelHolder, Served

    spec = ServeSpec.model_validate(config.serve)
    name = config.model
    metrics = Metrics(name)
    source = _project_source(config) if config.bundle_dir is None else _export_source(config)

    def loader(version: int) -> Served:
        model, sample = source.load(version)
        if sample is not None:
            smoke_check(model, sample)
        schema = request_models(model.contract, max_rows=spec.max_rows, title=name)
        return Served(model, schema)

    keys = KeyChecker()

    def refresh_keys() -> None:
        table = {} if config.insecure_no_auth else source.key_hashes()
        table.update({k: (v[0], v[1]) for k, v in config.extra_keys.items()})
        keys.replace(table)

    refresh_keys()
    holder = ModelHolder(resolver=source.resolve, loader=loader, metrics=metrics, poll_seconds=spec.poll_seconds,
                         on_poll=refresh_keys, on_event=source.record)
    served = holder.start()
    predlog = None
    log_dir: Path | None = None
    if spec.log_predictions:
        directory = Path(spec.log_path) if spec.log_path else source.log_root / "predictions" / name
        log_dir = directory
        contract = served.model.contract
        hashed, dropped = pii_columns(contract, spec.hash_columns)
        predlog = PredictionLog(
            directory, model=name, columns=[(c.name, c.type) for c in contract.features],
            hash_columns=hashed, drop_columns=dropped, hash_key=source.hash_key, roll_bytes=spec.log_roll_bytes,
            roll_seconds=spec.log_roll_seconds,
            on_written=lambda n: setattr(metrics, "log_rows", metrics.log_rows + n),
            on_dropped=lambda n: setattr(metrics, "log_dropped", metrics.log_dropped + n))
    settings = AppSettings(precision=spec.precision, top_k=spec.top_k, max_rows=spec.max_rows)
    extraction = ExtractionMonitor(
        ExtractionSettings(quota_rows=spec.query_quota_rows, min_rows=spec.extraction_min_rows,
                           margin=spec.extraction_margin, share=spec.extraction_share,
                           block=spec.block_suspected_extraction),
        on_alert=lambda key, reason, stats: source.audit("extraction_suspected", model=name, caller=key,
                                                         reason=reason, blocked=spec.block_suspected_extraction,
                                                         **stats))
    metrics.extra.append(extraction.render)
    app = build_app(holder=holder, metrics=metrics, settings=settings, predlog=predlog, extraction=extraction,
                    on_startup=on_startup)
    from keelml.serve.dashboard import add_dashboard, project_sources

    found = project_sources(source.project, name) if source.project is not None else (None, None)
    add_dashboard(app, name=name, holder=holder, metrics=metrics, log_dir=log_dir, reference=found[0],
                  history=found[1], alerts_file=source.log_root / "monitor" / "alerts.jsonl")
    if config.insecure_no_auth:
        log.warning("WARNING: authentication is OFF (--insecure-no-auth): anyone who can reach this port "
                    "can use the model")
    elif len(keys) == 0:
        log.warning("no API keys exist yet: every request will be refused with 401; "
                    "create one with `keel keys create-api-key --name NAME`")
    guard = Guard(app, keys=keys, limiter=RateLimiter(spec.rate_limit, spec.rate_burst),
                  settings=GuardSettings(require_key=not config.insecure_no_auth, max_body_bytes=spec.max_body_bytes),
                  metrics=metrics, fast_predict=app.state.predict_body, extraction=extraction)
    return BuiltServer(guard, holder, source)


def pii_columns(contract: Any, hash_columns: list[str]) -> tuple[list[str], list[str]]:
    """(hashed, dropped) feature columns of the prediction log: the contract's PII flags, plus `hash_columns`.

    A PII column marked ``keep`` is still hashed in the log (requests are not the training data);
    ``drop`` columns are logged as nulls.
    """
    features = {c.name for c in contract.features}
    dropped = [c.name for c in contract.columns
               if c.pii is not None and c.pii_action == "drop" and c.name in features]
    hashed = [c.name for c in contract.columns if c.pii is not None and c.name in features and c.name not in dropped]
    hashed += [c for c in hash_columns if c not in hashed and c not in dropped]
    return hashed, dropped


class _Source(abc.ABC):
    """Where versions, keys and the log's hash key come from."""

    log_root: Path
    hash_key: bytes
    project: Any = None  # the opened project store, when serving from one (the dashboard reads it)

    @abc.abstractmethod
    def resolve(self) -> int:
        """The version that should be live now."""

    @abc.abstractmethod
    def load(self, version: int) -> tuple[Any, Any]:
        """(verified LoadedModel, recorded sample for the smoke prediction or None)."""

    @abc.abstractmethod
    def key_hashes(self) -> dict[str, tuple[str, str]]:
        """Active API keys: name -> (id, SHA-256 of the key)."""

    def audit(self, event: str, **details: Any) -> None:
        """Record a security event in the project's audit log (exported bundles have none: logged only)."""
        return None

    def record(self, event: str, details: dict[str, Any]) -> None:
        """Write a serving event to the audit log (no-op where there is none)."""
        return None


def _project_source(config: ServeConfig) -> _Source:
    from keelml.data.pii import pii_key
    from keelml.registry.project import open_store
    from keelml.serve.auth import active_key_hashes
    from keelml.serve.engine import load_registered
    from keelml.serve.recorded import recorded_sample

    assert config.store_root is not None
    project = open_store(Path(config.store_root), metadata_url=config.metadata_url, encryption=config.encryption,
                         artifacts_url=config.artifacts_url, artifacts_options=config.artifacts_options)
    name = config.model

    class ProjectSource(_Source):
        log_root = project.root
        hash_key = pii_key(project.keys.master_key)

        def resolve(self) -> int:
            if config.version is not None:
                return config.version
            return project.registry.resolve(name, config.alias)  # the alias, or the latest version

        def load(self, version: int) -> tuple[Any, Any]:
            if config.version is None and config.alias is None:  # following "latest": not moved back by a deletion
                project.registry.check_latest(name, version)
            model = load_registered(project, name, version, prefer_onnx=config.prefer_onnx)
            sample = None
            if config.smoke_rows > 0 and "holdout" in model.components:
                sample = recorded_sample(project.artifacts.get, model.components, model.columns, model.task,
                                         config.smoke_rows)
            return model, sample

        def key_hashes(self) -> dict[str, tuple[str, str]]:
            return active_key_hashes(project.metadata)

        def audit(self, event: str, **details: Any) -> None:
            project.audit.append(event, actor="keel-serve", **details)

        def record(self, event: str, details: dict[str, Any]) -> None:
            project.audit.append(event, model=name, ref=config.ref, pid=os.getpid(), purpose=config.purpose,
                                 **details)

    source = ProjectSource()
    source.project = project
    return source


def _export_source(config: ServeConfig) -> _Source:
    import secrets

    from keelml.serve.auth import read_hashes_file
    from keelml.serve.engine import build_model
    from keelml.serve.exported import load_exported

    assert config.bundle_dir is not None
    directory = Path(config.bundle_dir)
    name, version, bundle_id, components, get, policy = load_exported(directory, trusted_key_id=config.trusted_key_id)
    if name != config.model:
        from keelml.errors import IntegrityError

        raise IntegrityError(f"the exported bundle is model {name!r}, not {config.model!r}",
                             fix="serve the bundle under its own name")
    key_env = os.environ.get("KEEL_LOG_HASH_KEY", "")

    class ExportSource(_Source):
        log_root = Path(os.environ.get("KEEL_LOG_DIR", "/var/lib/keel"))
        hash_key = key_env.encode() if key_env else secrets.token_bytes(32)

        def resolve(self) -> int:
            return version

        def load(self, wanted: int) -> tuple[Any, Any]:
            return build_model(name=name, version=wanted, bundle_id=bundle_id, components=components, get=get,
                               prefer_onnx=config.prefer_onnx, policy=policy), None

        def key_hashes(self) -> dict[str, tuple[str, str]]:
            return read_hashes_file(Path(config.keys_file)) if config.keys_file else {}

    return ExportSource()


def app_from_env() -> Any:
    """uvicorn factory for worker processes: the configuration comes from KEEL_SERVE_CONFIG."""
    _configure_logging()
    return create_app(ServeConfig.from_json(os.environ[CONFIG_ENV]), on_startup=tune_process)


def _configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s keel-serve %(levelname)s %(message)s",
                        stream=sys.stderr)
    log.setLevel(logging.INFO)


def serve(config: ServeConfig, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          tls_cert: str | None = None, tls_key: str | None = None) -> None:
    """Run uvicorn until interrupted."""
    import importlib.util

    import uvicorn

    _limit_threads()
    _configure_logging()
    os.environ[CONFIG_ENV] = config.to_json()
    # One process: build the app here, so a missing model or a failed verification is reported
    # before uvicorn starts. Several workers: each builds its own from the environment.
    if workers == 1:
        built = build_server(config, on_startup=tune_process)
        target, source, version = built.app, built.source, int(built.holder.current.model.version)
    else:
        target = "keelml.serve.server:app_from_env"
        source = _project_source(config) if config.bundle_dir is None else _export_source(config)
        version = source.resolve()
    start = {"version": version, "host": host, "port": port, "workers": workers,
             "auth": "off" if config.insecure_no_auth else "on", "tls": "on" if tls_cert else "off"}
    log.info("serving %s (%s) version %d on %s:%d, auth %s, TLS %s", config.model, config.ref, version, host, port,
             start["auth"], start["tls"])
    source.record("serve.start", start)
    uvicorn.run(
        target, factory=workers > 1, host=host, port=port, workers=workers,
        ssl_certfile=tls_cert, ssl_keyfile=tls_key, access_log=False, log_level="warning",
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        timeout_graceful_shutdown=10, server_header=False,
    )


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
