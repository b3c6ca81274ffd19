"""The general property behind issue 13's finding 2: every registry row a database writer without the key
can change (each column of each signed table, a deleted or inserted row) is found by `verify_all`, and the
reads that load or serve (`versions`, `aliases`) refuse it."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from tests.registry.conftest import MakeBundle

from keelml.errors import IntegrityError
from keelml.registry import Registry

# (what is changed, SQL). Version 2 of model m is the victim; production went v1 -> v2.
EDITS = {
    "version bundle": "UPDATE model_versions SET bundle_id = :other WHERE version = 2",
    "version number": "UPDATE model_versions SET version = 3 WHERE version = 2",
    "version model name": "INSERT INTO models (name, created_at) VALUES ('n', 0); "
                          "UPDATE model_versions SET name = 'n' WHERE version = 2",
    "version run": "UPDATE model_versions SET run_id = 'r-other' WHERE version = 2",
    "version time": "UPDATE model_versions SET created_at = created_at - 1 WHERE version = 2",
    "version summary": "UPDATE model_versions SET metrics = '{\"primary\": 1}' WHERE version = 2",
    "status": "UPDATE version_status SET status = 'rejected' WHERE version = 2",
    "gate reasons": "UPDATE version_status SET reasons = '[\"x\"]' WHERE version = 2",
    "lineage facts": "UPDATE version_lineage SET facts = '{}' WHERE version = 2",
    "lineage facts deleted": "DELETE FROM version_lineage WHERE version = 2",
    "registration record": "UPDATE version_records SET record = replace(record, '\"version\":2', '\"version\":3') "
                           "WHERE version = 2",
    "registration signature": "UPDATE version_records SET sig = (SELECT sig FROM version_records WHERE version = 1) "
                              "WHERE version = 2",
    "registration record deleted": "DELETE FROM version_records WHERE version = 2",
    "alias version": "UPDATE aliases SET version = 1",
    "alias deleted": "DELETE FROM aliases",
    "alias inserted": "INSERT INTO aliases (name, alias, version, updated_at) VALUES ('m', 'staging', 2, 0)",
    **{f"move {column}": f"UPDATE alias_history SET {column} = {value} WHERE id = 2" for column, value in (
        ("alias", "'staging'"), ("action", "'rollback'"), ("from_version", "2"), ("to_version", "1"),
        ("actor", "'mallory'"), ("at", "at + 1"), ("reason", "'other'"), ("audit_seq", "audit_seq - 1"))},
    "move deleted": "DELETE FROM alias_history WHERE id = 2",
    "move record": "UPDATE alias_records SET record = replace(record, '\"second\"', '\"other\"') WHERE history_id = 2",
    "move hash": "UPDATE alias_records SET hash = (SELECT hash FROM alias_records WHERE history_id = 1) "
                 "WHERE history_id = 2",
    "move signature": "UPDATE alias_records SET sig = (SELECT sig FROM alias_records WHERE history_id = 1) "
                      "WHERE history_id = 2",
    "move record deleted": "DELETE FROM alias_records WHERE history_id = 2",
    "move and record deleted, alias set back": "DELETE FROM alias_records WHERE history_id = 2; "
                                               "DELETE FROM alias_history WHERE id = 2; UPDATE aliases SET version = 1",
    "registration audit record edited": "UPDATE audit_log SET details = replace(details, '\"version\":2', "
                                        "'\"version\":3') WHERE event = 'registration' "
                                        "AND details LIKE '%\"version\":2%'",
}


@pytest.fixture
def registered(registry: Registry, make_bundle: MakeBundle) -> tuple[Registry, str]:
    for tag in ("1", "2"):
        registry.register("m", make_bundle(tag=tag), run_id=f"r{tag}", summary={"primary": {"value": 0.9}})
    registry.promote("m", 1, reason="first", actor="alice")
    registry.promote("m", 2, reason="second", actor="bob")
    assert registry.verify_all() == (2, [])
    return registry, make_bundle(tag="3")


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_every_edit_of_a_signed_registry_row_is_found(registered: tuple[Registry, str], edit: str) -> None:
    registry, other = registered
    with registry.metadata.engine.begin() as conn:
        for statement in EDITS[edit].split("; "):
            conn.exec_driver_sql(statement.replace(":other", f"'{other}'"))
    _, problems = registry.verify_all()
    assert problems or not registry.audit.verify().ok, f"{edit}: not found"
    assert any(r["event"] == "verification_failure" for r in registry.audit.records())
    # and the reads that load or serve refuse it (a registration's audit record is checked by verify_all)
    if edit.startswith(("alias", "move")):
        with pytest.raises(IntegrityError):
            registry.aliases("m")
    elif not edit.startswith("registration audit"):
        with pytest.raises(IntegrityError):
            registry.versions("n" if edit == "version model name" else "m")


def test_concurrent_moves_cannot_fork_an_alias_chain(registered: tuple[Registry, str]) -> None:
    """Two moves signed after the same predecessor: the second is refused by the database."""
    from sqlalchemy.exc import IntegrityError as SqlIntegrityError

    registry, _ = registered
    with pytest.raises(SqlIntegrityError), registry.metadata.engine.begin() as conn:
        conn.execute(text("INSERT INTO alias_records (history_id, name, alias, prev_hash, hash, record, sig) "
                          "SELECT 99, name, alias, prev_hash, hash, record, sig FROM alias_records "
                          "WHERE history_id = 2"))
