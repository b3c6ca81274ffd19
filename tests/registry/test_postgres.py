"""The registry, aliases and audit log on a real PostgreSQL server (skipped where none can be started)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.registry.conftest import put_bundle

from keelml.registry import Registry
from keelml.store.artifacts import ArtifactStore
from keelml.store.audit import AuditLog
from keelml.store.keys import KeyRing
from keelml.store.metadata import MetadataStore


def _as_postgres(*args: str) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    pytest.importorskip("psycopg")
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on PATH")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser")
    base = Path(tempfile.mkdtemp(prefix="keel-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    data = base / "data"
    started = False
    try:
        subprocess.run(_as_postgres("initdb", "-D", str(data), "-A", "trust", "-U", "keel"), check=True,
                       capture_output=True, timeout=120)
        # The server must not inherit our pipes (run() would wait for them): it logs to a file.
        started = True
        subprocess.run(_as_postgres("pg_ctl", "-D", str(data), "-w", "-l", str(base / "server.log"), "-o",
                                    f"-k {base} -c listen_addresses='' -c fsync=off", "start"),
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120)
        yield f"postgresql+psycopg://keel@/postgres?host={base}"
    finally:
        if started:
            subprocess.run(_as_postgres("pg_ctl", "-D", str(data), "-w", "-m", "fast", "stop"),
                           capture_output=True, timeout=120, check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_registry_aliases_and_audit_on_postgres(postgres_url: str, artifacts: ArtifactStore, keys: KeyRing) -> None:
    metadata = MetadataStore(postgres_url)
    try:
        registry = Registry(metadata, artifacts, keys)
        for tag in ("1", "2"):
            registry.register("m", put_bundle(artifacts, keys, tag=tag), run_id=f"r{tag}", summary={})
        registry.promote("m", 1, reason="first")
        registry.promote("m", 2, reason="second")
        registry.rollback("m")
        assert registry.aliases("m") == {"production": 1}
        assert [h["action"] for h in registry.alias_history("m")] == ["promotion", "promotion", "rollback"]
        report = AuditLog(metadata, keys).verify()
        assert report.ok and report.count == 5
    finally:
        metadata.close()
