"""Shared fixtures: fresh keys and stores in temporary directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from keelml.store.artifacts import ArtifactStore
from keelml.store.keys import KeyRing, create_keys
from keelml.store.metadata import MetadataStore

ROOT = Path(__file__).resolve().parent.parent
ADULT = ROOT / "examples" / "adult"


@pytest.fixture
def keys(tmp_path: Path) -> KeyRing:
    return create_keys(tmp_path / "keys")


@pytest.fixture
def artifacts(tmp_path: Path, keys: KeyRing) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "store"), keys)


@pytest.fixture
def metadata(tmp_path: Path) -> MetadataStore:
    store = MetadataStore(f"sqlite:///{tmp_path / 'keel.db'}")
    yield store  # type: ignore[misc]
    store.close()
