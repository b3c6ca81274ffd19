"""The audit log's signed head: the last record's number and hash, signed, in a file beside the keys.

The audit chain in the database detects an edited, inserted or removed record, but not a log cut short:
deleting the newest records (or all of them) leaves a chain that still checks out. The head closes that:
`<store>/audit-head.json` (mode 0600, written atomically) names the newest record this store appended or
verified, signed with the project's Ed25519 key, and lives apart from the metadata database.

- It advances after each append's transaction commits, under an exclusive lock on
  `<store>/audit-head.lock`, only to a greater number, and only when the log still holds the record the
  head names (so a log that was cut and then appended to never moves the head onto its new branch).
- A crash between the commit and the head's update leaves the head behind the log: the log extending
  past the head is accepted (and the head catches up when the log is verified); a log ending before
  the head, or holding another record where the head points, is not.
- With the metadata in the store (SQLite), a log with records but no head is refused (the head was
  deleted). With `store.metadata_url` (PostgreSQL, several machines), each store directory keeps its own
  head: a store without one adopts the log it first verifies or appends to.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from keelml.errors import IntegrityError
from keelml.store.atomic import atomic_write_bytes
from keelml.store.envelope import canonical_json
from keelml.store.keys import KeyRing

HEAD_FILE = "audit-head.json"
LOCK_FILE = "audit-head.lock"
FORMAT = "keelml.audit-head/1"
HashAt = Callable[[int], "str | None"]  # the hash of the record with this number in the log, None if absent


@dataclass(frozen=True)
class Head:
    """The newest audit record a store has seen: its number and hash."""

    seq: int
    hash: str


class AuditHead:
    """Read, check and advance one store's signed head file."""

    def __init__(self, path: Path, keys: KeyRing, *, required: bool) -> None:
        self.path = path
        self._keys = keys
        self.required = required  # a log with records but no head is refused (the metadata is in the store)

    @classmethod
    def in_store(cls, root: Path, keys: KeyRing, *, metadata_in_store: bool) -> AuditHead:
        return cls(root / HEAD_FILE, keys, required=metadata_in_store)

    def read(self) -> Head | None:
        """The signed head, None when there is none; IntegrityError when the file is not a head this
        project's key signed."""
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise self._bad("is not an audit head written by keelml")
        body = {k: data.get(k) for k in ("format", "seq", "hash", "signed_by")}
        if body["signed_by"] != self._keys.key_id or not isinstance(body["seq"], int) \
                or not isinstance(body["hash"], str):
            raise self._bad(f"is not signed by this project's key {self._keys.key_id}")
        try:
            self._keys.public_key.verify(base64.b64decode(str(data.get("sig")), validate=True), canonical_json(body))
        except (InvalidSignature, ValueError):
            raise self._bad("has an invalid signature (it was altered)") from None
        return Head(body["seq"], body["hash"])

    def _bad(self, what: str) -> IntegrityError:
        return IntegrityError(f"the signed audit head {self.path} {what}",
                              expected="the head keelml wrote with the project's signing key",
                              fix="treat the store as tampered with: restore keel.db and audit-head.json from "
                                  "a backup")

    def write(self, seq: int, digest: str) -> None:
        body = {"format": FORMAT, "seq": seq, "hash": digest, "signed_by": self._keys.key_id}
        signed = {**body, "sig": base64.b64encode(self._keys.sign(canonical_json(body))).decode()}
        atomic_write_bytes(self.path, json.dumps(signed, sort_keys=True).encode() + b"\n", mode=0o600)

    def advance(self, seq: int, digest: str, hash_at: HashAt) -> bool:
        """Move the head to record `seq` (hash `digest`) if that is further than it is, and the log
        still extends the current head; True when it moved. Never moves it back."""
        with self._locked():
            try:
                current = self.read()
            except IntegrityError:
                return False  # a damaged head is left for verification to report
            if current is not None and (seq <= current.seq or hash_at(current.seq) != current.hash):
                return False
            self.write(seq, digest)
            return True

    def check(self, count: int, last_hash: str, hash_at: HashAt) -> tuple[str, int] | None:
        """(what is wrong, the first record concerned) with a log of `count` intact, chained records
        whose newest hash is `last_hash`, compared with the head; None when it matches. A log that
        extends past the head moves the head forward (as does a store without a head where one is
        not required)."""
        try:
            head = self.read()
        except IntegrityError as exc:
            return exc.what, count + 1
        if head is None:
            if self.required and count > 0:
                return (f"the audit log has {count} records but its signed head {self.path} is missing (it was "
                        "deleted, or the store was made by a keelml without audit heads)"), 1
            if count > 0:
                self._catch_up(count, last_hash, hash_at)
            return None
        if count < head.seq:
            return (f"the audit log ends at record {count} but its signed head names record {head.seq}: the "
                    "newest records were deleted (or the database was replaced by an older copy)"), count + 1
        if hash_at(head.seq) != head.hash:
            return (f"audit record {head.seq} is not the record the signed head names: the log was cut short "
                    "and written again"), head.seq
        if count > head.seq:
            self._catch_up(count, last_hash, hash_at)
        return None

    def _catch_up(self, seq: int, digest: str, hash_at: HashAt) -> None:
        """Move the head to a verified end; a store directory that cannot be written is left as it is."""
        with contextlib.suppress(OSError):
            self.advance(seq, digest, hash_at)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock across processes (flock on a lock file beside the head)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                import fcntl  # Unix only
            except ImportError:  # no flock (Windows): one writer per store is assumed there
                yield
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
