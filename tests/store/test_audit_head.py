"""The signed audit head: it follows every append, never goes back, survives concurrent appenders and a crash
between a commit and its update, and makes a log cut short (or replaced by another branch) fail verification."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete

from keelml.errors import IntegrityError
from keelml.store import tables
from keelml.store.audit import AuditLog
from keelml.store.audithead import HEAD_FILE, AuditHead
from keelml.store.keys import KeyRing, create_keys
from keelml.store.metadata import MetadataStore


def _log(tmp_path: Path, metadata: MetadataStore, keys: KeyRing, *, required: bool = True) -> AuditLog:
    return AuditLog(metadata, keys, head=AuditHead.in_store(tmp_path, keys, metadata_in_store=required))


def _append(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append("promotion", actor="u", name="m", version=i + 1)


def test_the_head_follows_each_append_in_a_private_file(tmp_path: Path, metadata: MetadataStore,
                                                        keys: KeyRing) -> None:
    log = _log(tmp_path, metadata, keys)
    _append(log, 3)
    head = log.head.read() if log.head else None
    assert head is not None and head.seq == 3 and head.hash == log.records()[-1]["hash"]
    assert (tmp_path / HEAD_FILE).stat().st_mode & 0o777 == 0o600
    assert log.verify().ok


def test_the_head_never_goes_back(tmp_path: Path, metadata: MetadataStore, keys: KeyRing) -> None:
    log = _log(tmp_path, metadata, keys)
    _append(log, 3)
    assert log.head is not None and not log.head.advance(2, log.records()[1]["hash"], lambda _s: None)
    assert log.head.read() is not None and log.head.read().seq == 3  # type: ignore[union-attr]


def test_a_log_cut_short_or_wiped_is_refused(tmp_path: Path, metadata: MetadataStore, keys: KeyRing) -> None:
    log = _log(tmp_path, metadata, keys)
    _append(log, 5)
    with metadata.engine.begin() as conn:
        conn.execute(delete(tables.audit_log).where(tables.audit_log.c.seq > 3))
    report = log.verify()
    assert not report.ok and report.bad_seq == 4 and "ends at record 3" in str(report.problem)
    _append(log, 3)  # writing on: the head stays where it was, and the new branch does not match it
    assert log.head is not None and log.head.read().seq == 5  # type: ignore[union-attr]
    assert "audit record 5 is not the record the signed head names" in str(log.verify().problem)
    with metadata.engine.begin() as conn:
        conn.execute(delete(tables.audit_log))
    assert "ends at record 0" in str(log.verify().problem)


def test_a_crash_between_commit_and_head_update_is_not_a_false_alarm(tmp_path: Path, metadata: MetadataStore,
                                                                     keys: KeyRing) -> None:
    log = _log(tmp_path, metadata, keys)
    _append(log, 2)
    _append(AuditLog(metadata, keys), 2)  # committed, the head not updated (as if the process died in between)
    assert log.head is not None and log.head.read().seq == 2  # type: ignore[union-attr]
    assert log.verify().ok  # a log past its head is accepted, and the head catches up
    assert log.head.read().seq == 4  # type: ignore[union-attr]


def test_a_missing_edited_or_foreign_head_is_refused(tmp_path: Path, metadata: MetadataStore, keys: KeyRing) -> None:
    log = _log(tmp_path, metadata, keys)
    _append(log, 2)
    path = tmp_path / HEAD_FILE
    good = path.read_text()
    path.write_text(json.dumps({**json.loads(good), "seq": 1}))
    assert "invalid signature" in str(log.verify().problem)
    other = create_keys(tmp_path / "other")
    AuditHead(path, other, required=True).write(2, json.loads(good)["hash"])
    assert "not signed by this project's key" in str(log.verify().problem)
    with pytest.raises(IntegrityError):
        AuditHead(path, keys, required=True).read()
    path.unlink()
    assert "is missing" in str(log.verify().problem)


def test_a_store_whose_metadata_is_elsewhere_adopts_the_log(tmp_path: Path, metadata: MetadataStore,
                                                            keys: KeyRing) -> None:
    """With store.metadata_url, a new machine's store directory has no head yet: it adopts the log."""
    _append(AuditLog(metadata, keys), 3)  # written by another machine
    log = _log(tmp_path / "here", metadata, keys, required=False)
    assert log.verify().ok and log.head is not None and log.head.read().seq == 3  # type: ignore[union-attr]


def test_concurrent_appenders_leave_the_head_at_the_end(tmp_path: Path, keys: KeyRing) -> None:
    url = f"sqlite:///{tmp_path / 'keel.db'}"
    MetadataStore(url).close()
    script = """
import sys
from pathlib import Path
from keelml.store.audit import AuditLog
from keelml.store.audithead import AuditHead
from keelml.store.keys import load_keys
from keelml.store.metadata import MetadataStore
keys = load_keys(Path(sys.argv[2]), environ={})
head = AuditHead.in_store(Path(sys.argv[3]), keys, metadata_in_store=True)
log = AuditLog(MetadataStore(sys.argv[1]), keys, head=head)
for i in range(15):
    log.append("serve.start", actor=sys.argv[4], n=i)
"""
    procs = [subprocess.Popen([sys.executable, "-c", script, url, str(tmp_path / "keys"), str(tmp_path), tag])
             for tag in "abc"]
    assert [p.wait(timeout=180) for p in procs] == [0, 0, 0]
    log = _log(tmp_path, MetadataStore(url), keys)
    head = log.head.read() if log.head else None
    assert head is not None and head.seq == 45 and head.hash == log.records()[-1]["hash"]
    assert log.verify().ok


@pytest.mark.parametrize("kept", range(7))
def test_every_cut_of_the_newest_records_is_refused(tmp_path: Path, metadata: MetadataStore, keys: KeyRing,
                                                    kept: int) -> None:
    log = _log(tmp_path, metadata, keys)
    _append(log, 6)
    with metadata.engine.begin() as conn:
        conn.execute(delete(tables.audit_log).where(tables.audit_log.c.seq > kept))
    report = log.verify()
    assert report.ok == (kept == 6), report
    if kept < 6:
        assert report.bad_seq == kept + 1 and f"ends at record {kept} but its signed head names record 6" in str(
            report.problem)
