"""Metadata on PostgreSQL over TLS (verify-full against the test CA that `.ci/postgres.sh` makes)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from tests.registry.conftest import put_bundle
from tests.shared.conftest import with_query

from keelml.errors import SpecError
from keelml.registry import Registry
from keelml.registry.project import open_metadata
from keelml.store.artifacts import ArtifactStore
from keelml.store.audit import AuditLog
from keelml.store.keys import KeyRing

DEFAULT_CA = "/var/lib/postgresql/keel-tls/ca.crt"  # where .ci/postgres.sh puts its test CA


def _tls(url: str, ca: str | Path, mode: str = "verify-full") -> str:
    return with_query(url, sslmode=mode, sslrootcert=quote(str(ca), safe="/"))


@pytest.fixture
def test_ca(pg_schema: str) -> Path:
    ca = Path(os.environ.get("KEEL_TEST_POSTGRES_CA") or DEFAULT_CA)
    if not ca.is_file():
        pytest.skip(f"PostgreSQL TLS is not configured here: no test CA at {ca} (`.ci/postgres.sh`, run as root, "
                    "turns TLS on; or set KEEL_TEST_POSTGRES_CA)")
    engine = sa.create_engine(pg_schema)
    try:
        with engine.connect() as conn:
            ssl = conn.execute(sa.text("SHOW ssl")).scalar()
    finally:
        engine.dispose()
    if ssl != "on":
        pytest.skip("PostgreSQL TLS is not configured here: the server reports ssl = off (`.ci/postgres.sh`)")
    return ca


def test_verify_full_connection_is_encrypted(pg_schema: str, test_ca: Path) -> None:
    engine = sa.create_engine(_tls(pg_schema, test_ca))
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).one()
    finally:
        engine.dispose()
    assert row.ssl is True and row.version in ("TLSv1.2", "TLSv1.3")


def test_registry_and_audit_over_tls(pg_schema: str, test_ca: Path, artifacts: ArtifactStore, keys: KeyRing) -> None:
    metadata = open_metadata(_tls(pg_schema, test_ca))
    try:
        registry = Registry(metadata, artifacts, keys)
        for tag in ("1", "2"):
            registry.register("m", put_bundle(artifacts, keys, tag=tag), run_id=f"r{tag}", summary={})
        assert [v["version"] for v in registry.versions("m")] == [1, 2]
        assert AuditLog(metadata, keys).verify().ok
        with metadata.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).scalar() is True
            tables = set(conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))
                         .scalars())
        assert {"runs", "model_versions", "audit_log"} <= tables  # in the test's own schema
    finally:
        metadata.close()


def test_a_server_not_signed_by_the_trusted_ca_is_refused(pg_schema: str, test_ca: Path, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some other CA")])
    now = dt.datetime.now(dt.UTC)
    other = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now)
             .not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .sign(key, hashes.SHA256()))
    (tmp_path / "other-ca.crt").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(SpecError) as caught:
        open_metadata(_tls(pg_schema, tmp_path / "other-ca.crt"))
    assert "cannot open the metadata database" in caught.value.what
    assert "certificate verify failed" in caught.value.what
    assert "keel:keel" not in caught.value.what  # the password is not echoed
