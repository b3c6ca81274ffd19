"""A project: the store named by a spec, opened with its keys, artifacts, metadata and registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from keelml.errors import SpecError
from keelml.registry import Registry
from keelml.spec import LoadedSpec
from keelml.store.artifacts import ArtifactStore
from keelml.store.keys import KeyRing, create_keys, key_files_exist, load_keys
from keelml.store.metadata import MetadataStore


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
        return self.root / "reports"

    def close(self) -> None:
        self.metadata.close()


def store_root(loaded: LoadedSpec) -> Path:
    location = loaded.resolve(loaded.spec.store.path)
    if "://" in location:
        raise SpecError(
            f"store.path {loaded.spec.store.path!r} is a URL; this version keeps the store on a local path",
            expected="a local directory such as .keel",
            fix="set store.path to a directory (object storage comes with the scale-out release)",
        )
    return Path(location)


def _keys_in_environment() -> bool:
    import os

    from keelml.store.keys import MASTER_ENV, SIGNING_ENV

    return bool(os.environ.get(MASTER_ENV) and os.environ.get(SIGNING_ENV))


def open_project(loaded: LoadedSpec, *, create: bool = True) -> Project:
    """Open the spec's store; a brand-new store gets fresh keys (when `create`)."""
    root = store_root(loaded)
    keys_dir = root / "keys"
    db_path = root / "keel.db"
    url = loaded.spec.store.metadata_url or f"sqlite:///{db_path}"
    created = False
    # A brand-new store (no artifacts, no local metadata, no keys) gets fresh keys on first use.
    fresh = not db_path.exists() and not (root / "store").exists() and not key_files_exist(keys_dir)
    if fresh and create and not _keys_in_environment():
        root.mkdir(parents=True, exist_ok=True)
        keys = create_keys(keys_dir)
        created = True
    else:
        keys = load_keys(keys_dir)
    if not loaded.spec.store.metadata_url:
        root.mkdir(parents=True, exist_ok=True)
    artifacts = ArtifactStore(str(root / "store"), keys, encrypt=loaded.spec.store.encryption)
    metadata = MetadataStore(url)
    return Project(root, keys, artifacts, metadata, Registry(metadata, artifacts, keys), created)
