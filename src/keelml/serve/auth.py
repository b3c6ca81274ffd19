"""API keys: created once and shown once, stored only as a SHA-256 hash, checked in constant time.

A key reads ``keel_<id>_<secret>``: the id (16 hex characters) is public and names the stored
hash; the secret is 256 random bits. Because keys are random, one SHA-256 is enough (no
password-stretching KDF is needed); the presented key's hash is compared with
``hmac.compare_digest``, and an unknown id is compared against a dummy hash so that the time taken
does not tell whether an id exists.

A browser gives its key once, as `GET /dashboard?key=`, and then holds a dashboard session
(`DashboardSessions`): a cookie bound to that key, short-lived, ended when the key is revoked, and
never the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from keelml.errors import KeelError, NotFoundError

if TYPE_CHECKING:
    from keelml.store.audit import AuditLog
    from keelml.store.metadata import MetadataStore

PREFIX = "keel"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DUMMY_HASH = hashlib.sha256(b"keelml: no such key").hexdigest()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_id(key: str) -> str | None:
    """The public id part of a presented key, or None if it is not shaped like a keelml key."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or len(parts[1]) != 16:
        return None
    return parts[1]


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    created_at: float
    revoked_at: float | None


def create_api_key(metadata: MetadataStore, name: str, *, audit: AuditLog | None = None,
                   actor: str | None = None) -> str:
    """Create a key named `name`; returns the key text (the only time it exists outside the caller).

    With `audit`, an ``api_key.create`` record (name and public id, never the key) is written in the
    same transaction as the key's hash.
    """
    from keelml.serve.keystore import ApiKeyRepository  # SQLAlchemy: the server checks keys from memory

    if not _NAME.match(name):
        raise KeelError(f"invalid API key name {name!r}", expected="1-64 letters, digits, '.', '_' or '-'",
                        fix="choose a name such as ci-deployer or team-dashboard")
    ident = secrets.token_hex(8)
    key = f"{PREFIX}_{ident}_{secrets.token_urlsafe(32)}"
    if not ApiKeyRepository(metadata).add(ident, name, hash_key(key), audit=audit, actor=actor):
        raise KeelError(f"an API key named {name!r} already exists", expected="a new name",
                        fix=f"choose another name, or revoke the old key with `keel keys revoke-api-key {name}`")
    return key


def list_api_keys(metadata: MetadataStore) -> list[ApiKey]:
    from keelml.serve.keystore import ApiKeyRepository  # SQLAlchemy: the server checks keys from memory

    return [ApiKey(r["id"], r["name"], r["created_at"], r["revoked_at"]) for r in ApiKeyRepository(metadata).rows()]


def revoke_api_key(metadata: MetadataStore, name: str, *, audit: AuditLog | None = None,
                   actor: str | None = None) -> None:
    """Revoke the active key named `name` (with `audit`: an ``api_key.revoke`` record, same transaction)."""
    from keelml.serve.keystore import ApiKeyRepository  # SQLAlchemy: the server checks keys from memory

    if not ApiKeyRepository(metadata).revoke(name, audit=audit, actor=actor):
        raise NotFoundError(f"no active API key named {name!r}", expected="the name of an active key",
                            fix="list keys with `keel keys list-api-keys`")


def active_key_hashes(metadata: MetadataStore) -> dict[str, tuple[str, str]]:
    """{key id: (name, SHA-256 hash)} of every key not revoked."""
    from keelml.serve.keystore import ApiKeyRepository  # SQLAlchemy: the server checks keys from memory

    return ApiKeyRepository(metadata).active_hashes()


def write_hashes_file(path: Path, hashes: dict[str, tuple[str, str]]) -> None:
    """Key hashes (never keys) as `name:id:sha256` lines, for servers without the metadata database."""
    path.write_text("".join(f"{name}:{ident}:{digest}\n" for ident, (name, digest) in sorted(hashes.items())))


def read_hashes_file(path: Path) -> dict[str, tuple[str, str]]:
    table: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.strip().split(":")
        if len(parts) != 3 or len(parts[1]) != 16 or len(parts[2]) != 64:
            raise KeelError(f"{path}:{number}: not a key hash line", expected="name:id:sha256",
                            fix="write the file with `keel keys export-hashes`")
        table[parts[1]] = (parts[0], parts[2])
    return table


class KeyChecker:
    """Checks presented keys against a table of hashes that can be replaced at any time."""

    def __init__(self, hashes: dict[str, tuple[str, str]] | None = None) -> None:
        self._hashes: dict[str, tuple[str, str]] = dict(hashes or {})

    def replace(self, hashes: dict[str, tuple[str, str]]) -> None:
        self._hashes = dict(hashes)  # one reference swap: readers see the old or the new table

    def __len__(self) -> int:
        return len(self._hashes)

    def entry(self, ident: str) -> tuple[str, str] | None:
        """(name, SHA-256 of the key) of the active key with public id `ident`."""
        return self._hashes.get(ident)

    def check(self, presented: str | None) -> str | None:
        """The key's name when `presented` is a valid key, else None."""
        if not presented:
            return None
        ident = key_id(presented)
        name, stored = self._hashes.get(ident or "", ("", _DUMMY_HASH))
        if hmac.compare_digest(hash_key(presented), stored) and name:
            return name
        return None


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key from `Authorization: Bearer <key>` or `X-API-Key: <key>` (raw ASGI headers)."""
    for raw_name, raw_value in headers:
        name = raw_name.lower()
        if name == b"authorization":
            scheme, _, value = raw_value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return value.strip()
        elif name == b"x-api-key":
            return raw_value.decode("latin-1").strip()
    return None


DASHBOARD_COOKIE = "keel_dashboard"
DASHBOARD_PATH = "/dashboard"
SESSION_SECRET_ENV = "KEEL_DASHBOARD_SECRET"  # noqa: S105 (a variable name) hex; `serve` sets one per server so its workers share it


def _dashboard_get(scope: dict[str, Any] | Any) -> bool:
    path: str = scope.get("path", "")
    return scope.get("method") == "GET" and (path == DASHBOARD_PATH or path.startswith(DASHBOARD_PATH + "/"))


def browser_key(scope: dict[str, Any] | Any) -> str | None:
    """The key a browser gives once, as `?key=` on `GET /dashboard` (the page then opens a session).

    Only that request qualifies: a key in any other URL is not read.
    """
    if scope.get("path") != DASHBOARD_PATH or not _dashboard_get(scope):
        return None
    query: dict[str, list[str]] = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
    return query["key"][0] if query.get("key") else None


def session_cookie(scope: dict[str, Any] | Any) -> str | None:
    """The dashboard session cookie, on GET requests under `/dashboard` only.

    So a session can never authorise a prediction, feedback or any state change (and SameSite=Strict
    keeps other sites from sending it).
    """
    if not _dashboard_get(scope):
        return None
    for raw_name, raw_value in scope.get("headers", []):
        if raw_name.lower() == b"cookie":
            for part in bytes(raw_value).decode("latin-1").split(";"):
                cookie, _, value = part.strip().partition("=")
                if cookie == DASHBOARD_COOKIE and value:
                    return value
    return None


def session_secret() -> bytes:
    """The key that seals dashboard sessions: $KEEL_DASHBOARD_SECRET (hex, at least 32 bytes), else random."""
    text = os.environ.get(SESSION_SECRET_ENV, "")
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    return secret if len(secret) >= 32 else secrets.token_bytes(32)


class DashboardSessions:
    """Short-lived dashboard sessions, each bound to the API key that opened it (never the key itself).

    `GET /dashboard?key=KEY` opens one: the cookie reads ``<session id>.<key id>.<expiry>.<seal>``, a
    random 128-bit session id, the key's public id, the expiry (Unix seconds) and an HMAC-SHA256,
    under the server's session secret, of those and the key's stored hash. `check` honours it only
    before its expiry and while that key id still has that hash in the server's live key table: a
    revoked key ends its sessions at the server's next key reload (`serve.poll_seconds`). The secret
    lives in the server's memory (shared by its workers through the environment, never written
    anywhere): restarting the server ends every session. Stolen, the cookie opens the dashboard's
    GET pages only, until it expires.
    """

    def __init__(self, keys: KeyChecker, *, seconds: float, secret: bytes,
                 clock: Callable[[], float] = time.time) -> None:
        self.keys, self.seconds, self._secret, self._clock = keys, seconds, secret, clock

    def _seal(self, session: str, ident: str, expires: str, stored: str) -> str:
        return hmac.new(self._secret, f"{session}.{ident}.{expires}.{stored}".encode(), hashlib.sha256).hexdigest()

    def open(self, key: str) -> str | None:
        """A new session for a valid `key` (None when the key is not valid now)."""
        ident = key_id(key)
        found = self.keys.entry(ident or "")
        if ident is None or found is None or self.keys.check(key) is None:
            return None
        session, expires = secrets.token_hex(16), str(int(self._clock() + self.seconds))
        return f"{session}.{ident}.{expires}.{self._seal(session, ident, expires, found[1])}"

    def check(self, token: str) -> str | None:
        """The key's name when `token` is a live session of a key still active, else None."""
        parts = token.split(".")
        if len(parts) != 4 or not parts[2].isdigit() or int(parts[2]) <= self._clock():
            return None
        session, ident, expires, seal = parts
        found = self.keys.entry(ident)
        if found is None or not hmac.compare_digest(seal, self._seal(session, ident, expires, found[1])):
            return None
        return found[0]
