"""Security tests run single-threaded, like the steps do."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import keel_here
from threadpoolctl import threadpool_limits

from keelml.registry.project import Project, open_project
from keelml.spec.pipeline import load_spec
from keelml.store.keys import KeyRing, create_keys
from keelml.store.trust import public_key_pem


@pytest.fixture(autouse=True, scope="session")
def _single_thread() -> Iterator[None]:
    """OpenMP threads crawl on a busy shared CPU; the audits run single-threaded like the steps do."""
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime, so that the limit applies to it)

    with threadpool_limits(limits=1):
        yield


from tests.serve.conftest import api_key, store  # noqa: E402,F401  (the served Adult store, reused)


class Importer:
    """A project made by `keel init` that trusts a partner's key (`keel keys trust`)."""

    def __init__(self, spec: Path, partner: KeyRing) -> None:
        self.spec, self.partner = spec, partner

    def open(self) -> Project:
        return open_project(load_spec(self.spec), create=False)

    def events(self) -> list[dict[str, Any]]:
        with self.open() as project:
            return project.audit.records()


@pytest.fixture(scope="module")
def importer_template(tmp_path_factory: pytest.TempPathFactory) -> Importer:
    root = tmp_path_factory.mktemp("model-files")
    partner = create_keys(root / "partner" / "keys")
    assert keel_here("init", str(root / "p")).returncode == 0
    pem = root / "partner.pem"
    pem.write_bytes(public_key_pem(partner))
    spec = root / "p" / "pipeline.yaml"
    assert keel_here("keys", "trust", str(pem), "--name", "partner", "-f", str(spec)).returncode == 0
    return Importer(spec, partner)


@pytest.fixture
def importer(importer_template: Importer, tmp_path: Path) -> Importer:
    shutil.copytree(importer_template.spec.parent, tmp_path / "p")
    return Importer(tmp_path / "p" / "pipeline.yaml", importer_template.partner)

