"""The signed step cache: entries verify, refusals are audited, older databases gain the signature columns."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from keelml.errors import IntegrityError
from keelml.store.audit import AuditLog
from keelml.store.keys import KeyRing
from keelml.store.metadata import MetadataStore
from keelml.store.stepcache import StepCache

OUTPUTS = {"out": "ab" * 32}


def test_an_entry_round_trips_and_is_bound_to_its_step(metadata: MetadataStore, keys: KeyRing) -> None:
    cache = StepCache(metadata, keys)
    cache.remember(key="k" * 64, scope="p", step="train", outputs=OUTPUTS, parts={}, run_id="r")
    assert cache.lookup("k" * 64, step="train") == OUTPUTS
    assert cache.lookup("x" * 64, step="train") is None
    with pytest.raises(IntegrityError, match="made by step 'train', not 'gate'"):
        cache.lookup("k" * 64, step="gate")
    assert cache.verify_all() == (1, [])


def test_a_refused_entry_is_audited(metadata: MetadataStore, keys: KeyRing) -> None:
    audit = AuditLog(metadata, keys)
    cache = StepCache(metadata, keys, audit)
    cache.remember(key="k" * 64, scope="p", step="gate", outputs=OUTPUTS, parts={}, run_id="r")
    with metadata.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE step_cache SET outputs = '{\"out\": \"" + "cd" * 32 + "\"}'")
    with pytest.raises(IntegrityError, match="does not match its signature"):
        cache.lookup("k" * 64, step="gate")
    [record] = audit.records(event="verification_failure")
    assert record["details"]["what"] == "step_cache" and record["details"]["step"] == "gate"
    assert record["details"]["cache_key"] == "k" * 64 and audit.verify().ok


def test_an_older_database_gains_the_signature_columns(tmp_path: Path, keys: KeyRing) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the step_cache table as keelml created it before entries were signed
        db.execute("CREATE TABLE step_cache (cache_key VARCHAR(64) PRIMARY KEY, scope VARCHAR(64) NOT NULL, "
                   "step VARCHAR(64) NOT NULL, outputs TEXT NOT NULL, parts TEXT NOT NULL, created_at FLOAT NOT NULL, "
                   "run_id VARCHAR(40) NOT NULL)")
        db.execute("INSERT INTO step_cache VALUES (?, 'p', 'train', ?, '{}', 1.0, 'r')",
                   ("k" * 64, '{"out": "' + "ab" * 32 + '"}'))
    metadata = MetadataStore(f"sqlite:///{path}")
    try:
        cache = StepCache(metadata, keys)
        with pytest.raises(IntegrityError, match="is not signed"):  # an old entry is a miss, recomputed
            cache.lookup("k" * 64, step="train")
        cache.remember(key="k" * 64, scope="p", step="train", outputs=OUTPUTS, parts={}, run_id="r2")
        assert cache.lookup("k" * 64, step="train") == OUTPUTS
    finally:
        metadata.close()
