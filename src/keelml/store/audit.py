"""The audit log: an append-only, hash-chained, signed table in the metadata database.

Record n holds its sequence number, UTC time, actor, event, details (JSON), the hash of record
n-1 (`prev_hash`; 64 zeros for the first) and its own `hash`: SHA-256 over the canonical JSON of
all of those. Each hash is also signed with the project's Ed25519 key, so rewriting the whole
chain after an edit needs the signing key too. `verify()` names every record that breaks.

A log cut short (its newest records deleted, or all of them) still chains: the signed head
(`audithead.py`, a file in the store directory, advanced after each append commits) names the newest
record, and `verify()` refuses a log that ends before it. Writes that append inside a larger
transaction use `transaction()`, so the head advances once that transaction has committed.
"""

from __future__ import annotations

import base64
import datetime as dt
import getpass
import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.exc import OperationalError

from keelml.names import check_text
from keelml.store import tables
from keelml.store.audithead import AuditHead
from keelml.store.envelope import canonical_json, trusted_from
from keelml.store.keys import KeyRing
from keelml.store.metadata import MetadataStore

GENESIS = "0" * 64
EVENTS = ("registration", "promotion", "rollback", "key_creation", "key_rotation", "key_trust",
          "verification_failure", "import", "export", "infra_validation", "serve.start", "serve.swap",
          "serve.swap_refused", "api_key.create", "api_key.revoke", "version_deleted")
# lowercase identifiers, optionally dotted by area (`serve.swap`), at most 64 characters
_EVENT = re.compile(r"(?=.{1,64}\Z)[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
# Detail keys that could carry key material or credentials are refused outright.
_SECRET_KEY = re.compile(r"secret|password|passwd|token|private|credential|api_?key|master_key$|data_key$|"
                         r"wrapped_key|seed", re.IGNORECASE)
MAX_DETAILS = 64 * 1024
_APPENDED = "keelml.audit.appended"  # conn.info: (seq, hash) of the records appended in this transaction
log = logging.getLogger("keelml.store")


def retryable(exc: Exception) -> bool:
    """A write that lost a race (a taken sequence number, a busy or serialization-failed database)."""
    if isinstance(exc, SqlIntegrityError):
        return True
    text = str(exc).lower()
    return isinstance(exc, OperationalError) and ("locked" in text or "busy" in text or "serializ" in text
                                                   or "deadlock" in text)


def default_actor() -> str:
    """The OS user running keel."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a record's fields (all but hash and signature)."""
    body = {k: record[k] for k in ("seq", "at", "actor", "event", "details", "prev_hash")}
    return hashlib.sha256(canonical_json(body)).hexdigest()


@dataclass(frozen=True)
class AuditReport:
    """Outcome of checking the chain: how many records, the head hash, the first problem (and every problem)."""

    count: int
    head: str
    problem: str | None = None
    bad_seq: int | None = None
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem is None


class AuditLog:
    """Append and verify audit records; other modules call `append(event, actor=..., **details)`."""

    def __init__(self, metadata: MetadataStore, keys: KeyRing,
                 trusted: Mapping[str, Ed25519PublicKey] | None = None, *, head: AuditHead | None = None) -> None:
        self._meta = metadata
        self._keys = keys
        self._trusted = dict(trusted) if trusted is not None else trusted_from(keys)
        self.head = head  # None: no signed head (a log without a store directory, e.g. in tests)

    def append(self, event: str, *, actor: str | None = None, **details: Any) -> int:
        """Append one record in its own transaction; returns its sequence number."""
        for _attempt in range(50):
            try:
                with self.transaction() as conn:
                    seq = self.append_in(conn, event, actor=actor, details=details)
                return seq
            except (SqlIntegrityError, OperationalError) as exc:
                if not retryable(exc):
                    raise
                continue  # another writer took this sequence number first: read the head again
        raise RuntimeError("could not append to the audit log: too much concurrent writing")

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction that may append records (`append_in`); once it has committed, the signed
        head advances to the newest of them."""
        with self._meta.engine.begin() as conn:
            conn.info[_APPENDED] = []
            try:
                yield conn
                appended: list[tuple[int, str]] = list(conn.info[_APPENDED])
            finally:
                conn.info.pop(_APPENDED, None)
        if appended:
            self._advance(*appended[-1])

    def _advance(self, seq: int, digest: str) -> None:
        if self.head is None:
            return
        try:
            self.head.advance(seq, digest, self._hash_at)
        except OSError as exc:  # the record is committed; verification reports a head left behind
            log.warning("could not update the signed audit head %s: %s", self.head.path, exc)

    def _hash_at(self, seq: int) -> str | None:
        with self._meta.engine.connect() as conn:
            row = conn.execute(select(tables.audit_log.c.hash).where(tables.audit_log.c.seq == seq)).first()
        return None if row is None else str(row.hash)

    def append_in(self, conn: Connection, event: str, *, actor: str | None,
                  details: Mapping[str, Any]) -> int:
        """Append inside the caller's transaction (the caller retries on a sequence conflict); returns
        the record's number. Use it in `transaction()`, so that the signed head follows."""
        return self.append_record(conn, event, actor=actor, details=details)[0]

    def append_record(self, conn: Connection, event: str, *, actor: str | None,
                      details: Mapping[str, Any]) -> tuple[int, str]:
        """`append_in`, returning (number, hash) of the record."""
        if not _EVENT.fullmatch(event):
            raise ValueError(f"audit event names are lowercase identifiers (dotted by area), got {event!r}")
        _refuse_secrets(details)
        text = canonical_json(dict(details)).decode()
        if len(text) > MAX_DETAILS:
            raise ValueError(f"audit details too large ({len(text)} bytes)")
        who = check_text(actor, what="actor", max_length=128) or default_actor()[:128] or "unknown"
        head = conn.execute(select(tables.audit_log.c.seq, tables.audit_log.c.hash)
                            .order_by(tables.audit_log.c.seq.desc()).limit(1)).first()
        record: dict[str, Any] = {
            "seq": (int(head.seq) + 1) if head else 1,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            "actor": who,
            "event": event,
            "details": json.loads(text),
            "prev_hash": str(head.hash) if head else GENESIS,
        }
        digest = record_hash(record)
        conn.execute(insert(tables.audit_log).values(
            **{**record, "details": text}, hash=digest, signed_by=self._keys.key_id,
            sig=base64.b64encode(self._keys.sign(digest.encode())).decode()))
        pending = conn.info.get(_APPENDED)
        if isinstance(pending, list):
            pending.append((int(record["seq"]), digest))
        return int(record["seq"]), digest

    def records(self, *, limit: int | None = None, event: str | None = None) -> list[dict[str, Any]]:
        """Records oldest first (the newest `limit` of them when given)."""
        query = select(tables.audit_log).order_by(tables.audit_log.c.seq.desc())
        if event is not None:
            query = query.where(tables.audit_log.c.event == event)
        if limit is not None:
            query = query.limit(limit)
        with self._meta.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["details"] = _parse(row["details"])
        return rows[::-1]

    def _rows(self) -> Iterator[dict[str, Any]]:
        with self._meta.engine.connect() as conn:
            for row in conn.execute(select(tables.audit_log).order_by(tables.audit_log.c.seq)):
                yield dict(row._mapping)

    def verify(self) -> AuditReport:
        """Walk the whole chain and name every record that does not check out (the first in `problem`,
        all of them in `problems`), then compare the end of the chain with the signed head (when this log
        has one); `count` and `head` are those of the records before the first problem."""
        previous, count, head, expected_seq = GENESIS, 0, GENESIS, 1
        problems: list[tuple[int, str]] = []
        for row in self._rows():
            seq = int(row["seq"])
            gap = seq != expected_seq
            if gap:  # the next record's broken link is the same deletion, not named again
                problems.append((expected_seq, f"audit record {expected_seq} is missing "
                                               f"(the sequence jumps from {expected_seq - 1} to {seq})"))
            problem = self._row_problem(row, None if gap else previous)
            if problem:
                problems.append((seq, problem))
            if not problems:
                count, head = seq, str(row["hash"])
            previous, expected_seq = str(row["hash"]), seq + 1
        if not problems and self.head is not None:
            found = self.head.check(count, head, self._hash_at)
            if found is not None:
                problems.append((found[1], found[0]))
        if not problems:
            return AuditReport(count, head)
        return AuditReport(count, head, problems[0][1], problems[0][0], tuple(p for _, p in problems))

    def _row_problem(self, row: Mapping[str, Any], previous: str | None) -> str | None:
        """What is wrong with one stored record (its link to `previous` too, unless None)."""
        seq = int(row["seq"])
        label = f"audit record {seq} ({row['event']} by {row['actor']} at {row['at']})"
        details = _parse(row["details"])
        if previous is not None and row["prev_hash"] != previous:
            return (f"{label} does not follow record {seq - 1}: its prev_hash does not match "
                    "(a record before it was altered, removed or inserted)")
        if details is None or record_hash({**row, "details": details}) != row["hash"]:
            return f"{label} was altered: its content does not match its hash"
        key = self._trusted.get(str(row["signed_by"]))
        try:
            if key is None:
                raise InvalidSignature
            key.verify(base64.b64decode(str(row["sig"])), str(row["hash"]).encode())
        except (InvalidSignature, ValueError):
            return f"{label} has an invalid signature (the chain was rewritten without the signing key)"
        return None

    def checked_record(self, seq: int) -> tuple[dict[str, Any] | None, str | None]:
        """(record, None) when record `seq` exists and matches its hash and signature, else (None, why).
        What other tables point at (an alias move, a registration) is checked with it."""
        with self._meta.engine.connect() as conn:
            row = conn.execute(select(tables.audit_log).where(tables.audit_log.c.seq == seq)).first()
        if row is None:
            return None, f"audit record {seq} does not exist"
        record = dict(row._mapping)
        problem = self._row_problem(record, None)
        if problem:
            return None, problem
        record["details"] = _parse(record["details"])
        return record, None

    def latest(self, events: tuple[str, ...], **match: Any) -> dict[str, Any] | None:
        """The newest record of one of `events` whose details hold every `match` item (unchecked)."""
        query = (select(tables.audit_log.c.seq, tables.audit_log.c.details)
                 .where(tables.audit_log.c.event.in_(events)).order_by(tables.audit_log.c.seq.desc()))
        with self._meta.engine.connect() as conn:
            for row in conn.execute(query):
                details = _parse(row.details)
                if isinstance(details, dict) and all(details.get(k) == v for k, v in match.items()):
                    return {"seq": int(row.seq), "details": details}
        return None

    def knows_master_key(self, master_key_id: str) -> bool:
        """True when a key creation or rotation record names this master key."""
        query = select(tables.audit_log.c.details).where(
            tables.audit_log.c.event.in_(("key_creation", "key_rotation")))
        with self._meta.engine.connect() as conn:
            return any(master_key_id in str(r.details) for r in conn.execute(query))


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _refuse_secrets(details: Mapping[str, Any], path: str = "") -> None:
    for key, value in details.items():
        if _SECRET_KEY.search(str(key)) and not str(key).endswith("_id"):
            raise ValueError(f"audit details must never hold secrets: refusing key {path + str(key)!r}")
        if isinstance(value, Mapping):
            _refuse_secrets(value, f"{path}{key}.")
