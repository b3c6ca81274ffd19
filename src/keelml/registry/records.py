"""Signed registry records: what each version is, and every move of every alias.

A bundle is signed before registration gives it a number, so the bundle alone cannot say which version
of which model it is. Registration therefore signs a record (Ed25519, the project's key) naming the
model, the version number, the bundle, the run, when, the summary shown in listings, the status and
the gate's reasons, a digest of the lineage facts and the registration's audit record; it is stored
beside the version row (`version_records`) and every read of a version row is checked against it.

Each alias move is a signed record too (`alias_records`: name, alias, action, from and to version, who,
when, why, its audit record, and the hash of the alias's previous move, so the moves of one alias form
a hash chain). The alias in force must be the last signed move, and that move must be the newest
promotion or rollback of that alias in the audit log (whose end the signed audit head pins).

Nothing here runs SQL: `repository.py` stores the records, `Registry` checks them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from keelml.registry.bundles import signature_valid
from keelml.store.envelope import canonical_json
from keelml.store.keys import KeyRing

REGISTRATION = "keelml.registration/1"
ALIAS_MOVE = "keelml.alias-move/1"
GENESIS = "0" * 64
MOVES = ("promotion", "rollback")
FIX = ("treat the registry as tampered with: restore keel.db (and audit-head.json) from a backup, or re-register "
       "with `keel run` in a fresh store; a store made before records were signed must be re-created")

# The record fields a version row must match: (record field, row column, what it is called in messages).
_VERSION_FIELDS = (("name", "name", "model"), ("version", "version", "version"), ("bundle_id", "bundle_id", "bundle"),
                   ("run_id", "run_id", "run"), ("created_at", "created_at", "registration time"),
                   ("metrics", "metrics", "summary (metrics)"), ("status", "status", "status"),
                   ("reasons", "reasons", "gate reasons"))
_MOVE_FIELDS = ("name", "alias", "action", "from_version", "to_version", "actor", "at", "reason", "audit_seq")


def sign(keys: KeyRing, record: Mapping[str, Any]) -> str:
    return base64.b64encode(keys.sign(canonical_json(dict(record)))).decode()


_VERIFIED: set[tuple[str, str, str]] = set()  # (key id, record text, signature) found valid in this process
_MAX_VERIFIED = 65536


def _signed(keys: KeyRing, text: str, record: Any, sig: Any) -> bool:
    """`record` (parsed from `text`) is this project's key's and `sig` is its signature. A server checks the
    same rows at every poll: the same text and signature, once verified, are not verified again."""
    key_id = keys.key_id
    if not isinstance(record, dict) or record.get("signed_by") != key_id:
        return False
    seen = (key_id, text, str(sig))
    if seen in _VERIFIED:
        return True
    if not signature_valid(record, sig, keys.public_key):
        return False
    if len(_VERIFIED) >= _MAX_VERIFIED:
        _VERIFIED.clear()
    _VERIFIED.add(seen)
    return True


def _same(a: Any, b: Any) -> bool:
    """The same JSON value (NaN equal to NaN, as in the canonical form that was signed)."""
    if type(a) is type(b) and a == b:
        return True
    return canonical_json(a) == canonical_json(b)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def facts_digest(facts_text: str) -> str:
    return hashlib.sha256(facts_text.encode()).hexdigest()


# versions -------------------------------------------------------------------------------------------
def registration(*, name: str, version: int, bundle_id: str, run_id: str, created_at: float,
                 summary: Mapping[str, Any], status: str, reasons: list[str], facts_text: str,
                 audit: tuple[int, str], keys: KeyRing) -> dict[str, Any]:
    """The record registration signs for one version."""
    return {"format": REGISTRATION, "name": name, "version": version, "bundle_id": bundle_id, "run_id": run_id,
            "created_at": created_at, "metrics": json.loads(json.dumps(dict(summary))), "status": status,
            "reasons": list(reasons), "facts_sha256": facts_digest(facts_text), "audit_seq": audit[0],
            "audit_hash": audit[1], "signed_by": keys.key_id}


def version_record(row: Mapping[str, Any], keys: KeyRing) -> tuple[dict[str, Any] | None, str | None]:
    """(the signed registration record, None) when a version row (with its `record`, `sig`, `facts_text`)
    matches it; else (None, what is wrong)."""
    where = f"{row['name']} version {row['version']}"
    if row.get("record") is None:
        return None, (f"{where} has no signed registration record (its rows were written outside keelml, its "
                      "record was deleted, or it was registered before versions were signed)")
    try:
        record = json.loads(str(row["record"]))
    except ValueError:
        record = None
    if not _signed(keys, str(row["record"]), record, row.get("sig")) or record.get("format") != REGISTRATION:
        return None, f"{where}: its signed registration record was altered (the signature does not match)"
    for field, column, label in _VERSION_FIELDS:
        if not _same(record.get(field), row.get(column)):
            return None, (f"{where}: the {label} in the database ({_short(row.get(column))}) is not the one its "
                          f"signed registration names ({_short(record.get(field))})")
    facts = row.get("facts_text")
    if facts is None or facts_digest(str(facts)) != record.get("facts_sha256"):
        return None, f"{where}: its lineage facts do not match its signed registration (altered or deleted)"
    return record, None


# aliases --------------------------------------------------------------------------------------------
def move_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(dict(record))).hexdigest()


def alias_move(row: Mapping[str, Any], *, audit: tuple[int, str], prev_hash: str, keys: KeyRing) -> dict[str, Any]:
    """The record an alias move signs (`row`: the alias_history values, without its audit_seq)."""
    return {"format": ALIAS_MOVE, **{f: row[f] for f in _MOVE_FIELDS if f != "audit_seq"}, "audit_seq": audit[0],
            "audit_hash": audit[1], "prev_hash": prev_hash, "signed_by": keys.key_id}


def move_problem(move: Mapping[str, Any], previous: Mapping[str, Any] | None, keys: KeyRing) -> str | None:
    """What is wrong with one alias_history row (joined with its `record`, `hash`, `sig`), given the move
    before it of the same alias (None: it is the first)."""
    where = f"{move['name']}@{move['alias']} move #{move['id']} (v{move['from_version']} -> v{move['to_version']})"
    if move.get("record") is None:
        return (f"{where} has no signed record (it was written outside keelml, its record was deleted, or it "
                "predates signed alias moves)")
    try:
        record = json.loads(str(move["record"]))
    except ValueError:
        record = None
    if not _signed(keys, str(move["record"]), record, move.get("sig")) or record.get("format") != ALIAS_MOVE \
            or move_hash(record) != move.get("hash"):
        return f"{where}: its signed record was altered (the signature does not match)"
    for field in _MOVE_FIELDS:
        if not _same(record.get(field), move.get(field)):
            return (f"{where}: its {field} in the database ({_short(move.get(field))}) is not the one its signed "
                    f"record names ({_short(record.get(field))})")
    expected = GENESIS if previous is None else previous.get("hash")
    if record.get("prev_hash") != expected:
        return f"{where} does not follow the alias's previous move (a move before it was removed or inserted)"
    return None


def audit_problem(move: Mapping[str, Any], found: Mapping[str, Any] | None, why: str | None) -> str | None:
    """What is wrong between a signed move and the audit record it names (`found`, or None and `why`)."""
    where = f"{move['name']}@{move['alias']} move #{move['id']}"
    try:
        record = json.loads(str(move["record"]))
        seq, digest = record["audit_seq"], record["audit_hash"]
    except (ValueError, TypeError, KeyError):
        return None  # not a signed record: `move_problem` names it
    if found is None:
        return f"{where} names audit record {seq}, which is not intact: {why}"
    details = found["details"] if isinstance(found.get("details"), dict) else {}
    if found["hash"] != digest or found["event"] != record.get("action") or not all(
            details.get(k) == record.get(k) for k in ("name", "alias", "from_version", "to_version")):
        return f"{where} names audit record {seq}, which records something else"
    return None


def last_moves(moves: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], dict[str, Any] | None]]:
    """alias -> (its newest move, the move before it or None), from one model's history (oldest first)."""
    found: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {}
    for move in moves:
        before = found.get(move["alias"])
        found[move["alias"]] = (move, before[0] if before else None)
    return found
