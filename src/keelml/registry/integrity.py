"""Checking the registry's rows against their signed records (`records.py`) and the audit log.

- Every version row a caller gets (`Registry.versions`, and through it resolve, bundle, verify,
  load_model, promote, rollback, listings) matches its signed registration record.
- Every alias a caller gets (`Registry.aliases`, and through it resolve, serving, promote, rollback)
  is where its last signed move put it, that move is intact and follows the alias's previous one, and it
  is the newest promotion or rollback of that alias in the audit log.
- `keel verify` (`verify_registry`) walks everything: every version, every move of every alias, and the
  references between the registry and the audit log both ways (`reference_problems`, which
  `keel audit --verify` runs too).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from keelml.errors import IntegrityError, NotFoundError
from keelml.registry import records

if TYPE_CHECKING:
    from keelml.registry.core import Registry

EXPECTED = "registry rows that match the records keelml signed when it wrote them"
_INTERNAL = ("record", "sig", "facts_text", "hash")
_READS = 5
T = TypeVar("T")


def _settled(read: Callable[[], tuple[T, list[str]]]) -> tuple[T, list[str]]:
    """A check that reads an alias and its moves in several statements may see a move committed between them
    (each statement sees the latest commit): read again, and believe problems only once two reads in a
    row find the same ones."""
    value, problems = read()
    for _attempt in range(_READS):
        if not problems:
            break
        time.sleep(0.02)
        again, seen = read()
        if seen == problems:
            break
        value, problems = again, seen
    return value, problems


def refuse(problem: str) -> IntegrityError:
    return IntegrityError(problem, expected=EXPECTED, fix=records.FIX)


def public(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row without the signed record's columns (what listings and the API return)."""
    return {k: v for k, v in row.items() if k not in _INTERNAL}


def checked_versions(registry: Registry, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows, each checked against its signed registration record (IntegrityError at the first that
    does not match)."""
    for row in rows:
        _, problem = records.version_record(row, registry.keys)
        if problem:
            raise refuse(problem)
    return [public(row) for row in rows]


def checked_aliases(registry: Registry, name: str) -> dict[str, int]:
    """alias -> version for one model, each alias checked against its last signed move and the audit log."""
    current, problems = _settled(partial(_aliases_in_force, registry, name))
    if problems:
        raise refuse(problems[0])
    return current


def _aliases_in_force(registry: Registry, name: str) -> tuple[dict[str, int], list[str]]:
    current = registry.repository.aliases(name)
    lasts = records.last_moves(registry.repository.alias_history(name))
    for alias in sorted(set(current) | set(lasts)):
        move, previous = lasts.get(alias, (None, None))
        problem = _in_force(registry, name, alias, current.get(alias), move)
        problem = problem or (records.move_problem(move, previous, registry.keys) if move else None)
        problem = problem or (_audit_binding(registry, move, newest=True) if move else None)
        if problem:
            return current, [problem]
    return current, []


def checked_history(registry: Registry, name: str) -> list[dict[str, Any]]:
    """Every move of one model's aliases, each checked (signature, chain, audit record)."""
    moves, problems = _settled(partial(_history, registry, name))
    if problems:
        raise refuse(problems[0])
    return [public(move) for move in moves]


def _history(registry: Registry, name: str) -> tuple[list[dict[str, Any]], list[str]]:
    moves = registry.repository.alias_history(name)
    return moves, _history_problems(registry, name, moves)


def _in_force(registry: Registry, name: str, alias: str, version: int | None,
              move: Mapping[str, Any] | None) -> str | None:
    if move is None:
        return (f"{name}@{alias} points at v{version} but no signed move put it there (the alias was set "
                "outside keelml)")
    if version is None:
        return f"{name}@{alias} was removed outside keelml (its last signed move set it to v{move['to_version']})"
    if move["to_version"] != version:
        return (f"{name}@{alias} points at v{version}, but its last signed move put it at v{move['to_version']} "
                "(the alias was moved outside keelml)")
    return None


def _audit_binding(registry: Registry, move: Mapping[str, Any], *, newest: bool) -> str | None:
    """The move's audit record exists and records this move; with `newest`, no later promotion or
    rollback of the alias is in the log (a newer move was not removed)."""
    if move.get("record") is None:
        return None  # an unsigned move: `records.move_problem` names it
    seq = move.get("audit_seq")
    found, why = registry.audit.checked_record(int(seq)) if isinstance(seq, int) else (None, "no audit record")
    problem = records.audit_problem(move, found, why)
    if problem or not newest:
        return problem
    latest = registry.audit.latest(records.MOVES, name=move["name"], alias=move["alias"])
    if latest is not None and latest["seq"] != seq:
        return (f"{move['name']}@{move['alias']}: the newest promotion or rollback in the audit log (record "
                f"{latest['seq']}) is not its last signed move (record {seq}): a move was removed from the registry")
    return None


def _history_problems(registry: Registry, name: str, moves: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    previous: dict[str, dict[str, Any]] = {}
    for move in moves:
        problem = records.move_problem(move, previous.get(move["alias"]), registry.keys)
        problem = problem or _audit_binding(registry, move, newest=False)
        if problem:
            problems.append(problem)
        previous[move["alias"]] = move
    current = registry.repository.aliases(name)
    for alias in sorted(set(current) | set(previous)):
        last = previous.get(alias)
        problem = _in_force(registry, name, alias, current.get(alias), last)
        problem = problem or (_audit_binding(registry, last, newest=True) if last else None)
        if problem and problem not in problems:
            problems.append(problem)
    return problems


def _registration_binding(registry: Registry, record: Mapping[str, Any]) -> str | None:
    """The version's signed record names the audit record of its registration, and that record agrees."""
    where = f"{record['name']} version {record['version']}"
    found, why = registry.audit.checked_record(int(record["audit_seq"]))
    if found is None:
        return f"{where} names audit record {record['audit_seq']} for its registration, which is not intact: {why}"
    details = found["details"] if isinstance(found.get("details"), dict) else {}
    if found["hash"] != record["audit_hash"] or found["event"] != "registration" or (
            details.get("name"), details.get("version"), details.get("bundle")) != (
            record["name"], record["version"], record["bundle_id"]):
        return f"{where} names audit record {record['audit_seq']} for its registration, which records something else"
    return None


def _registered(registry: Registry) -> dict[str, dict[int, tuple[int, Mapping[str, Any]]]]:
    """name -> version -> (audit seq, details) of every registration in the log not deleted since."""
    live: dict[str, dict[int, tuple[int, Mapping[str, Any]]]] = {}
    events = registry.audit.records(event="registration") + registry.audit.records(event="version_deleted")
    for rec in sorted(events, key=lambda r: int(r["seq"])):
        details = rec["details"] if isinstance(rec["details"], dict) else {}
        name, version = str(details.get("name")), details.get("version")
        if not isinstance(version, int):
            continue
        if rec["event"] == "registration":
            live.setdefault(name, {})[version] = (int(rec["seq"]), details)
        else:
            live.get(name, {}).pop(version, None)
    return live


def reference_problems(registry: Registry) -> list[str]:
    """The registry's references into the audit log, both ways: each version's and each alias move's
    audit record exists and records it; each registration in the log (not deleted since) has its version."""
    problems: list[str] = []
    registered = _registered(registry)
    for name in sorted(set(registered) | {str(m["name"]) for m in registry.models()}):
        rows = {int(r["version"]): r for r in registry.repository.version_rows(name)}
        for version, (seq, details) in sorted(registered.get(name, {}).items()):
            row, bundle = rows.get(version), str(details.get("bundle"))
            if row is None or row["bundle_id"] != bundle:
                now = "has no such version" if row is None else "names another bundle"
                problems.append(f"{name} version {version} was registered with bundle {bundle[:12]} (audit record "
                                f"{seq}) but the registry {now} (it was deleted or replaced outside keelml)")
        for row in rows.values():
            record, problem = records.version_record(row, registry.keys)
            problem = problem or (_registration_binding(registry, record) if record else None)
            if problem and problem not in problems:
                problems.append(problem)
    for name in registry.repository.aliased_models():
        for move in registry.repository.alias_history(name):
            problem = _audit_binding(registry, move, newest=False) if move.get("record") is not None else None
            if problem and problem not in problems:
                problems.append(problem)
    return problems


def verify_registry(registry: Registry) -> tuple[int, list[str]]:
    """(versions checked, every problem): each version's row against its signed record and its bundle,
    each alias's whole history, and the references into the audit log."""
    problems: list[str] = []
    count = 0
    for model in registry.models():
        for row in registry.repository.version_rows(model["name"]):
            count += 1
            _, problem = records.version_record(row, registry.keys)
            if problem:
                problems.append(problem)
                continue
            try:
                registry.checked_bundle(model["name"], public(row), rejected_ok=True)
            except (IntegrityError, NotFoundError) as exc:
                problems.append(exc.what)
    for name in registry.repository.aliased_models():
        problems += [p for p in _settled(partial(_history, registry, name))[1]
                     if p not in problems]
    problems += [p for p in reference_problems(registry) if p not in problems]
    return count, problems


def check_latest(registry: Registry, name: str, version: int) -> None:
    """`version` is the newest accepted version the audit log registered for `name` (and did not delete
    since): a server following "latest" is not moved back by deleting the newest version's rows."""
    accepted = [v for v, (_, details) in _registered(registry).get(name, {}).items()
                if details.get("status") != "rejected"]
    newest = max(accepted, default=None)
    if newest is not None and newest != version:
        raise refuse(f"the latest accepted version of {name} in the registry is v{version}, but the audit log "
                     f"registered v{newest} after it (its rows were deleted outside keelml)")
