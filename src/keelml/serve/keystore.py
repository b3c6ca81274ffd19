"""The API keys' table and the only SQL on it: `ApiKeyRepository`.

Only hashes are stored (see auth.py); a key's text never reaches the database. Imported lazily by
auth.py, so the server and the CLI load SQLAlchemy only when they touch the table.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Column, Float, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.exc import OperationalError

from keelml.store.audit import AuditLog, retryable
from keelml.store.metadata import MetadataStore

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),  # the public part of the key, shown in its text
    Column("name", String(64), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False),  # SHA-256 of the whole key; the key itself is never stored
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

ATTEMPTS = 50


class _NoActiveKey(Exception):
    """No active key has the name to revoke."""


class ApiKeyRepository:
    """API key rows in the metadata database; constructing it creates the table if it is missing."""

    def __init__(self, metadata_store: MetadataStore) -> None:
        self._meta = metadata_store
        metadata_store.ensure_tables(metadata)

    def add(self, ident: str, name: str, key_hash: str, *, audit: AuditLog | None, actor: str | None) -> bool:
        """Store a key's hash (with an ``api_key.create`` audit record, same transaction); False when an
        active or revoked key already has this name (nothing is written then)."""
        for _attempt in range(ATTEMPTS):
            try:
                with audit.transaction() if audit is not None else self._meta.engine.begin() as conn:
                    if conn.execute(select(api_keys.c.id).where(api_keys.c.name == name)).first():
                        return False
                    conn.execute(insert(api_keys).values(id=ident, name=name, key_hash=key_hash,
                                                         created_at=time.time()))
                    if audit is not None:
                        audit.append_in(conn, "api_key.create", actor=actor,
                                        details={"key_name": name, "key_id": ident})
                return True
            except (SqlIntegrityError, OperationalError) as exc:
                if not retryable(exc):
                    raise
                # the name was taken a moment ago (seen on the next attempt) or the audit slot was
        raise RuntimeError("could not create the API key: too much concurrent writing")

    def rows(self) -> list[dict[str, Any]]:
        """Every key (id, name, key_hash, created_at, revoked_at), oldest first."""
        with self._meta.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(api_keys).order_by(api_keys.c.created_at))]

    def revoke(self, name: str, *, audit: AuditLog | None, actor: str | None) -> bool:
        """Revoke the active key named `name` (with an ``api_key.revoke`` audit record, same transaction);
        False when there is no active key of that name."""
        active = (api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
        for _attempt in range(ATTEMPTS):
            try:
                with audit.transaction() if audit is not None else self._meta.engine.begin() as conn:
                    row = conn.execute(select(api_keys.c.id).where(*active)).first()
                    done = conn.execute(update(api_keys).where(*active).values(revoked_at=time.time()))
                    if done.rowcount == 0 or row is None:
                        raise _NoActiveKey  # rolls the update back
                    if audit is not None:
                        audit.append_in(conn, "api_key.revoke", actor=actor,
                                        details={"key_name": name, "key_id": row.id})
                return True
            except _NoActiveKey:
                return False
            except (SqlIntegrityError, OperationalError) as exc:
                if not retryable(exc):
                    raise
        raise RuntimeError("could not revoke the API key: too much concurrent writing")

    def active_hashes(self) -> dict[str, tuple[str, str]]:
        """{key id: (name, SHA-256 hash)} of every key not revoked."""
        query = select(api_keys.c.id, api_keys.c.name, api_keys.c.key_hash).where(api_keys.c.revoked_at.is_(None))
        with self._meta.engine.connect() as conn:
            return {r.id: (r.name, r.key_hash) for r in conn.execute(query)}
