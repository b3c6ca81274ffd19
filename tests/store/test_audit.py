"""The audit log: a hash chain with signatures; any edit, removal or insertion names the record."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from keelml.store import tables
from keelml.store.audit import GENESIS, AuditLog, record_hash
from keelml.store.keys import KeyRing, create_keys
from keelml.store.metadata import MetadataStore


def _log(metadata: MetadataStore, keys: KeyRing, n: int = 5) -> AuditLog:
    log = AuditLog(metadata, keys)
    for i in range(n):
        log.append("promotion", actor=f"user{i}", name="m", version=i + 1, reason=f"because {i}")
    return log


def test_records_are_chained_and_verify(metadata: MetadataStore, keys: KeyRing) -> None:
    log = _log(metadata, keys)
    rows = log.records()
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["prev_hash"] == GENESIS
    for before, after in itertools.pairwise(rows):
        assert after["prev_hash"] == before["hash"]
    first = rows[0]
    body = {"seq": 1, "at": first["at"], "actor": "user0", "event": "promotion", "details": first["details"],
            "prev_hash": GENESIS}
    assert first["hash"] == hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    report = log.verify()
    assert report.ok and report.count == 5 and report.head == rows[-1]["hash"]
    assert [r["seq"] for r in log.records(limit=2)] == [4, 5]


def _edit(metadata: MetadataStore, seq: int, **values: object) -> None:
    with metadata.engine.begin() as conn:
        conn.execute(update(tables.audit_log).where(tables.audit_log.c.seq == seq).values(**values))


def test_editing_a_middle_record_is_named(metadata: MetadataStore, keys: KeyRing) -> None:
    log = _log(metadata, keys)
    _edit(metadata, 3, details=json.dumps({"name": "m", "version": 99, "reason": "because 2"}))
    report = log.verify()
    assert not report.ok and report.bad_seq == 3 and report.count == 2
    assert "audit record 3 (promotion by user2" in str(report.problem) and "altered" in str(report.problem)


def test_rewriting_the_chain_without_the_signing_key_is_named(metadata: MetadataStore, keys: KeyRing) -> None:
    log = _log(metadata, keys)
    with metadata.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(tables.audit_log).order_by(tables.audit_log.c.seq))]
    # An attacker with database access edits record 2 and recomputes every hash after it.
    rows[1]["actor"] = "mallory"
    previous = rows[0]["hash"]
    for row in rows[1:]:
        row["prev_hash"] = previous
        row["hash"] = record_hash({**row, "details": json.loads(row["details"])})
        previous = row["hash"]
        _edit(metadata, row["seq"], actor=row["actor"], prev_hash=row["prev_hash"], hash=row["hash"])
    report = log.verify()
    assert report.bad_seq == 2 and "invalid signature" in str(report.problem)


def test_removed_and_reordered_records_are_named(metadata: MetadataStore, keys: KeyRing) -> None:
    log = _log(metadata, keys)
    with metadata.engine.begin() as conn:
        conn.execute(delete(tables.audit_log).where(tables.audit_log.c.seq == 2))
    report = log.verify()
    assert report.bad_seq == 2 and "audit record 2 is missing" in str(report.problem)


def test_a_record_signed_by_another_key_fails(tmp_path: Path, metadata: MetadataStore, keys: KeyRing) -> None:
    log = _log(metadata, keys, n=2)
    AuditLog(metadata, create_keys(tmp_path / "other")).append("export", name="m")
    report = log.verify()
    assert report.bad_seq == 3 and "invalid signature" in str(report.problem)


def test_secrets_are_refused(metadata: MetadataStore, keys: KeyRing) -> None:
    log = AuditLog(metadata, keys)
    for key in ("master_key", "api_key", "password", "token", "private_key", "wrapped_key", "seed"):
        with pytest.raises(ValueError, match="never hold secrets"):
            log.append("export", **{key: "x"})
    with pytest.raises(ValueError, match="never hold secrets"):
        log.append("export", nested={"secret": "x"})
    log.append("key_rotation", old_master_key_id="aes:1", new_master_key_id="aes:2", rewrapped=3)
    assert log.verify().count == 1


def test_no_key_material_in_the_log(tmp_path: Path, metadata: MetadataStore, keys: KeyRing) -> None:
    import base64

    log = _log(metadata, keys, n=2)
    log.append("key_creation", signing_key_id=keys.key_id, master_key_id=keys.master_key_id)
    dump = json.dumps(log.records())
    assert base64.b64encode(keys.master_key).decode() not in dump
    assert keys.master_key.hex() not in dump


def test_concurrent_appenders_keep_one_chain(tmp_path: Path, keys: KeyRing) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'keel.db'}"
    MetadataStore(url).close()
    script = """
import sys
from pathlib import Path
from keelml.store.audit import AuditLog
from keelml.store.keys import load_keys
from keelml.store.metadata import MetadataStore
log = AuditLog(MetadataStore(sys.argv[1]), load_keys(Path(sys.argv[2]), environ={}))
for i in range(20):
    log.append("serving_start", actor=sys.argv[3], n=i)
"""
    procs = [subprocess.Popen([sys.executable, "-c", script, url, str(tmp_path / "keys"), tag]) for tag in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    report = AuditLog(MetadataStore(url), keys).verify()
    assert report.ok and report.count == 40


def test_event_names_may_be_dotted_by_area(metadata: MetadataStore, keys: KeyRing) -> None:
    log = AuditLog(metadata, keys)
    for event in ("serve.start", "api_key.create", "infra_validation"):
        log.append(event, model="m")
    assert [r["event"] for r in log.records()] == ["serve.start", "api_key.create", "infra_validation"]
    for bad in ("Serve.start", "serve.", ".start", "serve..start", "serve start", "serve.start\n", "x" * 65, ""):
        with pytest.raises(ValueError, match="lowercase identifiers"):
            log.append(bad)
    with pytest.raises(ValueError, match="never hold secrets"):
        log.append("api_key.create", api_key="keel_0123_secret")
    assert log.verify().ok and log.verify().count == 3
