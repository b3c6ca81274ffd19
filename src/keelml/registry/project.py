"""A project: the store named by a spec, opened with its keys, artifacts, metadata and registry."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import ArgumentError, OperationalError

from keelml.errors import KeyMaterialError, SpecError
from keelml.model.trust import TrustPolicy
from keelml.registry.core import Registry
from keelml.spec.pipeline import LoadedSpec
from keelml.store.artifacts import ArtifactStore
from keelml.store.atomic import private_dirs
from keelml.store.audit import AuditLog
from keelml.store.audithead import AuditHead
from keelml.store.keyproviders import KeyProvider, provider_for
from keelml.store.keys import KeyRing, create_keys, key_files_exist, keys_in_environment, load_keys
from keelml.store.metadata import MetadataStore
from keelml.store.stepcache import StepCache
from keelml.store.trust import TrustStore


@dataclass
class Project:
    """Everything a command needs to read or write a keelml store."""

    root: Path
    keys: KeyRing
    artifacts: ArtifactStore
    metadata: MetadataStore
    registry: Registry
    created_keys: bool = False

    @property
    def reports_dir(self) -> Path:
        """Human-readable run reports: plaintext, so kept next to the store, never inside it."""
        return self.root.parent / f"{self.root.name}-reports"

    @property
    def audit(self) -> AuditLog:
        return self.registry.audit

    @property
    def step_cache(self) -> StepCache:
        """The runner's recorder: the step cache with signed entries (refusals audited), and the run log."""
        return StepCache(self.metadata, self.keys, self.audit)

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def trust(self) -> TrustStore:
        """Public keys of other projects whose exported bundles may be imported here."""
        return TrustStore(self.keys_dir)

    def key_provider(self) -> KeyProvider:
        return provider_for(self.keys_dir)

    def referenced_artifacts(self) -> set[str]:
        """Every artifact id the metadata points at: the step cache's outputs and the registered bundles."""
        return self.metadata.referenced_artifacts() | self.registry.repository.bundle_ids()

    def close(self) -> None:
        self.metadata.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def store_root(loaded: LoadedSpec) -> Path:
    location = loaded.resolve(loaded.spec.store.path)
    if "://" in location:
        raise SpecError(
            f"store.path {loaded.spec.store.path!r} is a URL; this version keeps the store on a local path",
            expected="a local directory such as .keel",
            fix="set store.path to a local directory (keys live there) and put the artifacts on the URL with "
                "store.artifacts_url",
        )
    return Path(location)


def artifacts_location(loaded: LoadedSpec) -> str | None:
    """Where store.artifacts_url puts the artifacts (a URL, or an absolute shared directory); None: in the store."""
    url = loaded.spec.store.artifacts_url
    return loaded.resolve(url) if url else None


def shared_artifacts(project: Project) -> str | None:
    """The artifacts location to hand to another process: None when it is the store's own directory."""
    location = project.artifacts.location
    return None if location == str(project.root / "store") else location


def open_artifacts(root: Path, keys: KeyRing, *, encryption: bool, artifacts_url: str | None,
                   artifacts_options: Mapping[str, Any] | None = None) -> ArtifactStore:
    """The artifact store: `root`/store, or the shared location (claimed for this project's key)."""
    if artifacts_url is None:
        return ArtifactStore(str(root / "store"), keys, encrypt=encryption)
    try:
        artifacts = ArtifactStore(artifacts_url, keys, encrypt=encryption, storage_options=artifacts_options)
        artifacts.claim()
    except (ImportError, ValueError, OSError) as exc:
        raise SpecError(f"cannot open store.artifacts_url {artifacts_url}: {type(exc).__name__}: {exc}",
                        expected="a reachable directory or fsspec URL (with its driver installed, e.g. "
                                 "keelml[s3] for s3://) and credentials in the environment",
                        fix="check store.artifacts_url, store.artifacts_options and the credentials") from None
    return artifacts


def open_project(loaded: LoadedSpec, *, create: bool = True) -> Project:
    """Open the spec's store; a brand-new store gets fresh keys (when `create`)."""
    root = store_root(loaded)
    if root.exists() and not root.is_dir():
        raise SpecError(f"store.path {loaded.spec.store.path!r} is a file: {root}",
                        expected="a directory (created if missing) for keys, artifacts and metadata",
                        fix="point store.path at a directory, e.g. .keel")
    keys_dir = root / "keys"
    db_path = root / "keel.db"
    url = loaded.spec.store.metadata_url or f"sqlite:///{db_path}"
    created = False
    # A brand-new store (no artifacts, no local metadata, no keys) gets fresh keys on first use.
    fresh = not db_path.exists() and not (root / "store").exists() and not key_files_exist(keys_dir)
    if fresh and create and not keys_in_environment():
        private_dirs(root)
        try:
            keys = create_keys(keys_dir)
            created = True
        except KeyMaterialError:
            keys = load_keys(keys_dir)  # another process created them a moment ago
    else:
        keys = load_keys(keys_dir)
    if not loaded.spec.store.metadata_url:
        private_dirs(root)
    artifacts = open_artifacts(root, keys, encryption=loaded.spec.store.encryption,
                               artifacts_url=artifacts_location(loaded),
                               artifacts_options=loaded.spec.store.artifacts_options)
    metadata = open_metadata(url)
    audit = open_audit(root, metadata, keys, metadata_in_store=not loaded.spec.store.metadata_url)
    if created or not audit.knows_master_key(keys.master_key_id):
        # Keys made by `keel init` (no database yet) or given in the environment are recorded on first use.
        audit.append("key_creation", signing_key_id=keys.key_id, master_key_id=keys.master_key_id,
                     source=keys.source, how="created by this run" if created else "first use by this store")
    spec = loaded.spec
    policy = functools.partial(TrustPolicy.from_spec, spec.model, spec.preprocess)
    return Project(root, keys, artifacts, metadata, Registry(metadata, artifacts, keys, audit, policy), created)


def open_store(root: Path, *, metadata_url: str | None = None, encryption: bool = True,
               artifacts_url: str | None = None, artifacts_options: Mapping[str, Any] | None = None) -> Project:
    """Open an existing store by its directory (no spec needed; never creates keys)."""
    keys = load_keys(root / "keys")
    artifacts = open_artifacts(root, keys, encryption=encryption, artifacts_url=artifacts_url,
                               artifacts_options=artifacts_options)
    metadata = open_metadata(metadata_url or f"sqlite:///{root / 'keel.db'}")
    audit = open_audit(root, metadata, keys, metadata_in_store=metadata_url is None)
    return Project(root, keys, artifacts, metadata, Registry(metadata, artifacts, keys, audit))


def open_audit(root: Path, metadata: MetadataStore, keys: KeyRing, *, metadata_in_store: bool) -> AuditLog:
    """The audit log, with its signed head in the store directory (required there when the metadata
    database is the store's own keel.db; see `keelml.store.audithead`)."""
    return AuditLog(metadata, keys, head=AuditHead.in_store(root, keys, metadata_in_store=metadata_in_store))


def open_metadata(url: str) -> MetadataStore:
    """The metadata store at a SQLAlchemy URL; a malformed or unreachable URL is a SpecError."""
    try:
        return MetadataStore(url)
    except ArgumentError as exc:
        raise SpecError(f"store.metadata_url is not a valid database URL: {exc}",
                        expected="a SQLAlchemy URL such as sqlite:///keel.db or postgresql+psycopg://user@host/db",
                        fix="fix store.metadata_url, or remove it to use the SQLite file in the store") from None
    except (OperationalError, ModuleNotFoundError) as exc:
        raise SpecError(f"cannot open the metadata database: {str(exc).splitlines()[0]}",
                        expected="a reachable database (and its driver installed, e.g. keelml[postgres])",
                        fix="check store.metadata_url, the server, and the credentials") from None
