"""Attacks by someone who can write keel.db (and the store directory's files) but holds no key: swap what a
version serves, move an alias with one SQL statement, cut the audit log short. Issue 13, findings 2 and 3.

Each attack goes through the public interfaces (the `keel` command, raw SQL on keel.db, a running server
over HTTP on loopback) on a private copy of a real Adult store (versions 1 and 2), and must be refused with
exit 3 and an audit record, or closed.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import keel, keel_here
from tests.serve.conftest import NAME, Store, ThreadServer, free_port, sample_rows, serve_config

from keelml.errors import IntegrityError
from keelml.registry.project import Project, open_store
from keelml.serve.server import build_server
from keelml.store.audithead import HEAD_FILE


@dataclass
class Copy:
    """A private copy of the serving store, version 2 registered, its project open."""

    store: Store
    project: Project

    @property
    def spec(self) -> str:
        return str(self.store.spec)

    @property
    def db(self) -> Path:
        return self.store.root / "keel.db"

    def sql(self, *statements: str) -> None:
        """What the attacker does: plain SQL on keel.db, no keelml code, no key."""
        with sqlite3.connect(self.db) as conn:
            for statement in statements:
                conn.execute(statement)

    def events(self, event: str) -> list[dict[str, Any]]:
        with open_store(self.store.root) as project:
            return [r["details"] for r in project.audit.records(event=event)]


@pytest.fixture
def copy(store: Store, api_key: str, tmp_path: Path) -> Iterator[Copy]:
    directory = tmp_path / "p"
    shutil.copytree(store.spec.parent, directory, symlinks=True, ignore=shutil.ignore_patterns("predictions"))
    private = Store(directory / "pipeline.yaml", directory / ".keel", store.v2_bundle, store.v2_run)
    project = private.open()
    assert project.registry.register(NAME, store.v2_bundle, run_id=store.v2_run,
                                     summary={"primary": {"name": "roc_auc", "value": 0.5}}).version == 2
    try:
        yield Copy(private, project)
    finally:
        project.close()


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def _refused(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 3, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    return result.stderr


def _failures(copy: Copy, fragment: str) -> list[str]:
    return [str(d["problem"]) for d in copy.events("verification_failure") if fragment in str(d["problem"])]


# finding 2: swap what a version serves -------------------------------------------------------------
def test_swapping_the_bundles_of_two_versions_is_refused(copy: Copy) -> None:
    _ok(keel_here("verify", copy.spec))
    v1, v2 = copy.project.registry.versions(NAME)[0]["bundle_id"], copy.store.v2_bundle
    copy.sql(f"UPDATE model_versions SET bundle_id = 'x' WHERE name = '{NAME}' AND version = 1",
             f"UPDATE model_versions SET bundle_id = '{v1}' WHERE name = '{NAME}' AND version = 2",
             f"UPDATE model_versions SET bundle_id = '{v2}' WHERE name = '{NAME}' AND version = 1")
    swapped = "the bundle in the database"
    _refused(keel_here("verify", copy.spec), f"{NAME} version 1: {swapped}", f"{NAME} version 2: {swapped}")
    _refused(keel_here("audit", "--verify", "-f", copy.spec), swapped)  # the registration records disagree
    _refused(keel_here("models", "verify", f"{NAME}/1", "-f", copy.spec), swapped)
    _refused(keel_here("models", "promote", NAME, "1", "--to", "staging", "--reason", "x", "-f", copy.spec), swapped)
    _refused(keel_here("models", "list", "-f", copy.spec), swapped)
    with pytest.raises(IntegrityError, match=swapped):
        build_server(serve_config(copy.store, version=1, serve={"log_predictions": False}))
    assert _failures(copy, swapped)


def test_editing_the_summary_a_listing_shows_is_refused(copy: Copy) -> None:
    before = json.loads(_ok(keel_here("models", "list", "--json", "-f", copy.spec)))
    assert before[0]["entries"][1]["primary"] == {"name": "roc_auc", "value": 0.5}
    copy.sql(f"""UPDATE model_versions SET metrics = '{{"primary": {{"name": "roc_auc", "value": 0.99}}}}'
                 WHERE name = '{NAME}' AND version = 2""")
    _refused(keel_here("models", "list", "-f", copy.spec), "the summary (metrics) in the database")
    _refused(keel_here("models", "show", NAME, "-f", copy.spec), "the summary (metrics) in the database")
    _refused(keel_here("verify", copy.spec), "the summary (metrics) in the database")


def test_moving_an_alias_with_one_update_is_refused_and_a_running_server_does_not_follow(copy: Copy,
                                                                                           api_key: str) -> None:
    registry = copy.project.registry
    registry.promote(NAME, 1, alias="production", reason="first release")
    built = build_server(serve_config(copy.store, alias="production",
                                      serve={"log_predictions": False, "poll_seconds": 3600.0}))
    rows = {"records": sample_rows(copy.store, 2)}
    with ThreadServer(built.app) as server:
        copy.sql(f"UPDATE aliases SET version = 2 WHERE name = '{NAME}' AND alias = 'production'")
        assert built.holder.poll_once() is False and built.holder.poll_once() is False
        status, info, _ = server.request("GET", f"/v1/models/{NAME}", key=api_key)
        assert status == 200 and info["version"] == 1 and "moved outside keelml" in info["last_swap_error"]
        status, answer, headers = server.request("POST", f"/v1/models/{NAME}/predict", rows, key=api_key)
        assert status == 200 and answer["model_version"] == 1 and headers["x-model-version"] == "1"
    moved = f"{NAME}@production points at v2, but its last signed move put it at v1"
    [refusal] = [r for r in copy.events("serve.swap_refused") if moved in r["problem"]]  # once, not at every poll
    assert refusal["still_serving"] == 1 and refusal["version"] is None
    assert len(_failures(copy, moved)) == 1
    _refused(keel_here("verify", copy.spec), moved)
    _refused(keel_here("models", "promote", NAME, "2", "--to", "production", "--reason", "x", "-f", copy.spec), moved)
    _refused(keel_here("models", "rollback", NAME, "-f", copy.spec), moved)
    _refused(keel("serve", f"{NAME}@production", "-f", copy.spec, "--port", str(free_port()), timeout=120), moved)
    with pytest.raises(IntegrityError, match="moved outside keelml"):
        build_server(serve_config(copy.store, alias="production", serve={"log_predictions": False}))


def test_removing_the_last_move_and_setting_the_alias_back_is_refused(copy: Copy) -> None:
    registry = copy.project.registry
    registry.promote(NAME, 1, alias="production", reason="first release")
    registry.promote(NAME, 2, alias="production", reason="better")
    _ok(keel_here("verify", copy.spec))
    copy.sql("DELETE FROM alias_records WHERE history_id = (SELECT max(id) FROM alias_history)",
             "DELETE FROM alias_history WHERE id = (SELECT max(id) FROM alias_history)",
             f"UPDATE aliases SET version = 1 WHERE name = '{NAME}' AND alias = 'production'")
    removed = "a move was removed from the registry"
    _refused(keel_here("verify", copy.spec), removed)
    _refused(keel_here("models", "history", NAME, "-f", copy.spec), removed)
    with pytest.raises(IntegrityError, match=removed):
        build_server(serve_config(copy.store, alias="production", serve={"log_predictions": False}))


def test_an_alias_set_by_an_insert_is_refused(copy: Copy) -> None:
    copy.sql(f"INSERT INTO aliases (name, alias, version, updated_at) VALUES ('{NAME}', 'production', 2, 0)")
    _refused(keel_here("verify", copy.spec), f"{NAME}@production points at v2 but no signed move put it there")
    _refused(keel_here("models", "show", f"{NAME}@production", "-f", copy.spec), "no signed move")


def test_deleting_the_newest_version_does_not_move_a_latest_server_back(copy: Copy, api_key: str) -> None:
    built = build_server(serve_config(copy.store, serve={"log_predictions": False, "poll_seconds": 3600.0}))
    assert built.holder.current.model.version == 2
    copy.sql(*(f"DELETE FROM {t} WHERE name = '{NAME}' AND version = 2"
               for t in ("version_records", "version_status", "version_lineage", "model_versions")))
    assert built.holder.poll_once() is False and built.holder.current.model.version == 2
    assert "audit log registered v2 after it" in str(built.holder.last_error)
    _refused(keel_here("verify", copy.spec), f"{NAME} version 2 was registered with bundle", "has no such version")
    assert _failures(copy, "registered v2 after it")


# finding 3: truncate the audit log -------------------------------------------------------------------
def _count(copy: Copy) -> int:
    with sqlite3.connect(copy.db) as conn:
        return int(conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])


def test_deleting_the_newest_audit_records_is_refused(copy: Copy) -> None:
    copy.project.registry.promote(NAME, 2, alias="production", reason="release")
    _ok(keel_here("audit", "--verify", "-f", copy.spec))
    last = _count(copy)
    copy.sql(f"DELETE FROM audit_log WHERE seq > {last - 2}")
    cut = f"the audit log ends at record {last - 2} but its signed head names record {last}"
    _refused(keel_here("audit", "--verify", "-f", copy.spec), cut)
    assert _failures(copy, cut)  # recorded (after the cut: the head does not move onto that branch)
    _refused(keel_here("verify", copy.spec), "signed head", "names audit record")
    for _ in range(4):  # appending past the old end does not launder the cut
        keel_here("audit", "--verify", "-f", copy.spec)
    assert _count(copy) > last
    _refused(keel_here("audit", "--verify", "-f", copy.spec),
             f"audit record {last} is not the record the signed head names")


def test_wiping_the_audit_log_is_refused_despite_a_fresh_key_creation(copy: Copy) -> None:
    copy.project.registry.promote(NAME, 1, alias="production", reason="release")
    head = copy.store.root / HEAD_FILE
    assert head.stat().st_mode & 0o777 == 0o600
    last = _count(copy)
    copy.sql("DELETE FROM audit_log")
    result = keel_here("audit", "--verify", "--json", "-f", copy.spec)  # opening appends a fresh key_creation
    assert result.returncode == 3
    records = json.loads(result.stdout)["records"]
    assert records[0]["seq"] == 1 and records[0]["event"] == "key_creation"
    # the head names the old end; alias_history.audit_seq and the registrations point at records now gone
    _refused(result, f"the audit log ends at record 1 but its signed head names record {last}",
             "names audit record")
    _refused(keel_here("verify", copy.spec), f"but its signed head names record {last}")


def test_deleting_the_head_file_is_refused(copy: Copy) -> None:
    (copy.store.root / HEAD_FILE).unlink()
    _refused(keel_here("audit", "--verify", "-f", copy.spec), "signed head", "is missing")


def test_a_head_file_edited_or_from_another_store_is_refused(copy: Copy, tmp_path: Path) -> None:
    head = copy.store.root / HEAD_FILE
    data = json.loads(head.read_text())
    head.write_text(json.dumps({**data, "seq": data["seq"] - 1}))
    _refused(keel_here("audit", "--verify", "-f", copy.spec), "invalid signature")
