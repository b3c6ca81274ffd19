"""Wiring a server from its `ServeConfig`: where versions, keys and the log's hash key come from (a
project store or an exported bundle), the loader with its smoke prediction, the hot-swap holder, the
prediction log, the extraction monitor, the application with its dashboard, and the guard in front
of it, given the application's fast predict path (see `app.py`).

`server.build_server` imports this module only once it has limited the process to one BLAS/OpenMP
thread: numpy and the libraries below size their thread pools when they are loaded.
"""

from __future__ import annotations

import abc
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keelml.data.pii import pii_key
from keelml.errors import IntegrityError, KeyMaterialError
from keelml.monitor.window import LogKeys
from keelml.registry.project import open_store
from keelml.serve.app import build_app
from keelml.serve.auth import DashboardSessions, KeyChecker, active_key_hashes, read_hashes_file, session_secret
from keelml.serve.connections import ConnectionPolicy
from keelml.serve.dashboard import add_dashboard, project_sources
from keelml.serve.engine import ServedModel, build_model, load_registered
from keelml.serve.exported import load_exported
from keelml.serve.extraction import ExtractionMonitor, ExtractionSettings
from keelml.serve.limits import Guard, GuardSettings, RateLimiter
from keelml.serve.metrics import Metrics
from keelml.serve.predlog import PredictionLog
from keelml.serve.recorded import RecordedSample, recorded_sample, smoke_check
from keelml.serve.schema import request_models
from keelml.serve.state import AppSettings
from keelml.serve.swap import ModelHolder, Served
from keelml.spec.serve import ServeSpec
from keelml.store.keys import KeyRing
from keelml.store.sealed import LOG_KEY_ENV, LOG_KEY_FILE_ENV, log_key_from_env, log_ring, reading_rings

if TYPE_CHECKING:
    from keelml.serve.server import ServeConfig

log = logging.getLogger("keelml.serve")


@dataclass(frozen=True)
class BuiltServer:
    """The guarded ASGI application, the holder following the live version, and where versions come from."""

    app: Guard
    holder: ModelHolder
    source: VersionSource


def wire(config: ServeConfig, *, on_startup: Callable[[], None] | None = None) -> BuiltServer:
    """The guarded application for `config`, its holder and its source (`server.build_server` calls this)."""
    spec = ServeSpec.model_validate(config.serve)
    name = config.model
    metrics = Metrics(name)
    source = version_source(config)
    if spec.log_predictions and config.encryption and source.log_seal is None:
        raise KeyMaterialError(
            "the prediction log is encrypted (store.encryption), and a server without a store has no key for it",
            expected=f"a log key in ${LOG_KEY_FILE_ENV} (a file) or ${LOG_KEY_ENV} (base64 of 32 bytes)",
            fix="mount the secrets/keel_log_key file `keel containerize` wrote and set "
                f"{LOG_KEY_FILE_ENV} to its path, or turn the log off (serve.log_predictions: false)")

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
            roll_seconds=spec.log_roll_seconds, seal=source.log_seal if config.encryption else None,
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
    built = build_app(holder=holder, metrics=metrics, settings=settings, predlog=predlog, extraction=extraction,
                      on_startup=on_startup)
    sessions = None if config.insecure_no_auth else DashboardSessions(keys, seconds=spec.dashboard_session_seconds,
                                                                       secret=session_secret())
    found = project_sources(source.project, name) if source.project is not None else (None, None)
    add_dashboard(built.app, name=name, holder=holder, metrics=metrics, log_dir=log_dir, reference=found[0],
                  history=found[1], sessions=sessions, alerts_file=source.log_root / "monitor" / "alerts.jsonl",
                  log_keys=LogKeys(source.log_keys, sealed_only=config.encryption))
    connections = ConnectionPolicy(header_timeout=spec.header_timeout_seconds, body_timeout=spec.body_timeout_seconds,
                                   max_connections=spec.max_connections)
    metrics.extra.append(connections.render)
    if config.insecure_no_auth:
        log.warning("WARNING: authentication is OFF (--insecure-no-auth): anyone who can reach this port "
                    "can use the model")
    elif len(keys) == 0:
        log.warning("no API keys exist yet: every request will be refused with 401; "
                    "create one with `keel keys create-api-key --name NAME`")
    # the guard answers POST /v1/models/{name}/predict itself with the app's fast path (keelml.serve.app)
    guard = Guard(built.app, keys=keys, limiter=RateLimiter(spec.rate_limit, spec.rate_burst),
                  settings=GuardSettings(require_key=not config.insecure_no_auth, max_body_bytes=spec.max_body_bytes),
                  metrics=metrics, fast_predict=built.fast_predict, extraction=extraction, sessions=sessions,
                  connection_policy=connections)
    return BuiltServer(guard, holder, source)


def version_source(config: ServeConfig) -> VersionSource:
    """Where `config`'s versions come from: its project store, or its exported bundle."""
    return _project_source(config) if config.bundle_dir is None else _export_source(config)


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


class VersionSource(abc.ABC):
    """Where versions, keys and the log's hash key come from."""

    log_root: Path
    hash_key: bytes
    log_seal: KeyRing | None = None  # what seals the prediction log (store.sealed); None: no key
    log_keys: tuple[KeyRing, ...] = ()  # what may open it
    project: Any = None  # the opened project store, when serving from one (the dashboard reads it)

    @abc.abstractmethod
    def resolve(self) -> int:
        """The version that should be live now."""

    @abc.abstractmethod
    def load(self, version: int) -> tuple[ServedModel, RecordedSample | None]:
        """(verified model, recorded sample for the smoke prediction or None)."""

    @abc.abstractmethod
    def key_hashes(self) -> dict[str, tuple[str, str]]:
        """Active API keys: name -> (id, SHA-256 of the key)."""

    def audit(self, event: str, **details: Any) -> None:
        """Record a security event in the project's audit log (exported bundles have none: logged only)."""
        return None

    def record(self, event: str, details: dict[str, Any]) -> None:
        """Write a serving event to the audit log (no-op where there is none)."""
        return None


def _project_source(config: ServeConfig) -> VersionSource:
    assert config.store_root is not None
    project = open_store(Path(config.store_root), metadata_url=config.metadata_url, encryption=config.encryption,
                         artifacts_url=config.artifacts_url, artifacts_options=config.artifacts_options)
    name = config.model

    class ProjectSource(VersionSource):
        log_root = project.root
        hash_key = pii_key(project.keys.master_key)
        log_seal = project.keys
        log_keys = tuple(reading_rings(project.keys))

        def resolve(self) -> int:
            if config.version is not None:
                return config.version
            return project.registry.resolve(name, config.alias)  # the alias, or the latest version

        def load(self, version: int) -> tuple[ServedModel, RecordedSample | None]:
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


def _export_source(config: ServeConfig) -> VersionSource:
    assert config.bundle_dir is not None
    directory = Path(config.bundle_dir)
    name, version, bundle_id, components, get, policy = load_exported(directory, trusted_key_id=config.trusted_key_id)
    if name != config.model:
        raise IntegrityError(f"the exported bundle is model {name!r}, not {config.model!r}",
                             fix="serve the bundle under its own name")
    key_env = os.environ.get("KEEL_LOG_HASH_KEY", "")
    log_key = log_key_from_env()  # see keelml.store.sealed: `keel containerize` writes it

    class ExportSource(VersionSource):
        log_root = Path(os.environ.get("KEEL_LOG_DIR", "/var/lib/keel"))
        hash_key = key_env.encode() if key_env else secrets.token_bytes(32)
        log_seal = None if log_key is None else log_ring(log_key)
        log_keys = () if log_seal is None else (log_seal,)

        def resolve(self) -> int:
            return version

        def load(self, wanted: int) -> tuple[ServedModel, RecordedSample | None]:
            return build_model(name=name, version=wanted, bundle_id=bundle_id, components=components, get=get,
                               prefer_onnx=config.prefer_onnx, policy=policy), None

        def key_hashes(self) -> dict[str, tuple[str, str]]:
            return read_hashes_file(Path(config.keys_file)) if config.keys_file else {}

    return ExportSource()
