"""Aliases: promote, rollback, resolve and their history, all recorded in the audit log."""

from __future__ import annotations

import itertools

import pytest
from tests.registry.conftest import MakeBundle

from keelml.errors import InputError, IntegrityError, KeelError, NotFoundError
from keelml.registry import Registry


def _three_versions(registry: Registry, make_bundle: MakeBundle) -> None:
    for tag in ("1", "2", "3"):
        registry.register("m", make_bundle(tag=tag), run_id=f"r{tag}", summary={})


def test_promote_promote_rollback_returns_to_v1_with_history_and_audit(registry: Registry,
                                                                       make_bundle: MakeBundle) -> None:
    _three_versions(registry, make_bundle)
    first = registry.promote("m", 1, reason="first release", actor="alice")
    second = registry.promote("m", 2, reason="better recall", actor="bob")
    back = registry.rollback("m", reason="recall dropped in production", actor="carol")
    assert (first.from_version, first.to_version) == (None, 1)
    assert (second.from_version, second.to_version) == (1, 2)
    assert (back.from_version, back.to_version, back.action) == (2, 1, "rollback")
    assert registry.aliases("m") == {"production": 1}
    assert registry.resolve("m", "production") == 1
    history = registry.alias_history("m")
    assert [(h["action"], h["from_version"], h["to_version"], h["actor"], h["reason"]) for h in history] == [
        ("promotion", None, 1, "alice", "first release"),
        ("promotion", 1, 2, "bob", "better recall"),
        ("rollback", 2, 1, "carol", "recall dropped in production"),
    ]
    events = [r["event"] for r in registry.audit.records()]
    assert events == ["registration"] * 3 + ["promotion", "promotion", "rollback"]
    assert [h["audit_seq"] for h in history] == [4, 5, 6]
    report = registry.audit.verify()
    assert report.ok and report.count == 6


def test_rollback_to_an_explicit_version_and_default_actor(registry: Registry, make_bundle: MakeBundle) -> None:
    _three_versions(registry, make_bundle)
    registry.promote("m", 3, alias="staging", reason="try it")
    change = registry.rollback("m", alias="staging", to=1, reason="too slow")
    assert change.to_version == 1 and change.actor  # the OS user
    assert registry.aliases("m") == {"staging": 1}
    with pytest.raises(KeelError, match="already v1"):
        registry.rollback("m", alias="staging", to=1)


def test_rollback_needs_an_earlier_version(registry: Registry, make_bundle: MakeBundle) -> None:
    _three_versions(registry, make_bundle)
    with pytest.raises(NotFoundError, match="is not set: nothing to roll back"):
        registry.rollback("m")
    registry.promote("m", 2, reason="first")
    with pytest.raises(NotFoundError, match="no earlier version to roll back to"):
        registry.rollback("m")


def test_promoting_the_current_version_changes_nothing(registry: Registry, make_bundle: MakeBundle) -> None:
    _three_versions(registry, make_bundle)
    registry.promote("m", 2, reason="go")
    again = registry.promote("m", 2, reason="go again")
    assert not again.changed
    assert len(registry.alias_history("m")) == 1


def test_resolve(registry: Registry, make_bundle: MakeBundle) -> None:
    _three_versions(registry, make_bundle)
    registry.promote("m", 2, alias="staging", reason="x")
    assert registry.resolve("m") == 3
    assert registry.resolve("m", "latest") == 3
    assert registry.resolve("m", 1) == 1
    assert registry.resolve("m", "2") == 2
    assert registry.resolve("m", "staging") == 2
    with pytest.raises(NotFoundError, match=r"no alias 'production'") as info:
        registry.resolve("m", "production")
    assert "staging (v2)" in str(info.value)
    with pytest.raises(NotFoundError, match="has no version 9"):
        registry.resolve("m", 9)
    with pytest.raises(InputError):
        registry.resolve("m", "../staging")


def test_a_gate_refused_model_is_never_promoted(registry: Registry, make_bundle: MakeBundle) -> None:
    _three_versions(registry, make_bundle)
    refused = make_bundle(tag="refused", passed=False)
    with pytest.raises(IntegrityError, match="gate refused"):
        registry.register("m", refused, run_id="r", summary={})
    # Even written into the registry behind its back (its repository, past every check), it cannot be promoted.
    assert registry.repository.add_version("m", refused, run_id="r", summary={}, facts={}, status="staging",
                                           reasons=[], actor=None) == (4, True)
    with pytest.raises(IntegrityError, match="gate refused"):
        registry.promote("m", 4, reason="sneak it in")
    registry.promote("m", 1, reason="ok")
    with pytest.raises(IntegrityError, match="gate refused"):
        registry.rollback("m", to=4)
    assert registry.aliases("m") == {"production": 1}
    assert "verification_failure" in [r["event"] for r in registry.audit.records()]


def test_promotion_needs_a_reason_and_a_valid_alias(registry: Registry, make_bundle: MakeBundle) -> None:
    _three_versions(registry, make_bundle)
    with pytest.raises(InputError, match="reason is required"):
        registry.promote("m", 1, reason="  ")
    for alias in ("../prod", "prod/x", "latest", "42", "Prod", "prod\x00"):
        with pytest.raises(InputError):
            registry.promote("m", 1, alias=alias, reason="x")
    assert registry.aliases("m") == {}


def test_two_processes_moving_one_alias_leave_a_consistent_history(tmp_path: object, registry: Registry,
                                                                    make_bundle: MakeBundle) -> None:
    import subprocess
    import sys

    _three_versions(registry, make_bundle)
    # The alias move itself (promote() also verifies the bundle first, which is not what races here).
    script = """
import sys
from pathlib import Path
from keelml.registry.aliases import move_alias
from keelml.registry.repository import RegistryRepository
from keelml.store.audit import AuditLog
from keelml.store.keys import load_keys
from keelml.store.metadata import MetadataStore
root = Path(sys.argv[1])
meta = MetadataStore(f"sqlite:///{root / 'keel.db'}")
keys = load_keys(root / "keys", environ={})
audit = AuditLog(meta, keys)
for i in range(10):
    move_alias(RegistryRepository(meta, audit, keys), name="m", alias="production",
               version=1 + (i + int(sys.argv[2])) % 3, action="promotion", reason=f"p{sys.argv[2]}-{i}", actor=None)
"""
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), tag]) for tag in ("0", "1")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    history = registry.alias_history("m")
    for before, after in itertools.pairwise(history):
        assert after["from_version"] == before["to_version"]  # no lost update
    assert registry.aliases("m")["production"] == history[-1]["to_version"]
    assert registry.audit.verify().ok
