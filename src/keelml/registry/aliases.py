"""Aliases (production, staging, any name) pointing at model versions, with their full history.

Every change writes, in one transaction, the alias row, a history row (who, when, from which
version, to which, why) and an audit record. Two processes moving the same alias at once cannot
both win: the update is a compare-and-swap on the version the change was computed from.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.exc import OperationalError

from keelml.errors import NotFoundError
from keelml.store import schema
from keelml.store.audit import AuditLog, default_actor, retryable
from keelml.store.metadata import MetadataStore


@dataclass(frozen=True)
class AliasChange:
    """One move of an alias (or, with changed=False, a request that found it already there)."""

    name: str
    alias: str
    action: str  # promotion | rollback
    from_version: int | None
    to_version: int
    actor: str
    at: float
    reason: str
    changed: bool = True
    audit_seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


ANY = object()


class _Moved(Exception):
    """The alias moved between reading and writing it: compute the change again."""


def aliases(meta: MetadataStore, name: str) -> dict[str, int]:
    """alias -> version for one model."""
    query = select(schema.aliases.c.alias, schema.aliases.c.version).where(schema.aliases.c.name == name)
    with meta.engine.connect() as conn:
        return {str(r.alias): int(r.version) for r in conn.execute(query.order_by(schema.aliases.c.alias))}


def alias_history(meta: MetadataStore, name: str) -> list[dict[str, Any]]:
    """Every alias change of one model, oldest first."""
    query = (select(schema.alias_history).where(schema.alias_history.c.name == name)
             .order_by(schema.alias_history.c.id))
    with meta.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def previous_version(meta: MetadataStore, name: str, alias: str) -> int | None:
    """The version the alias pointed to before its current one (from its latest change)."""
    query = (select(schema.alias_history.c.from_version)
             .where(schema.alias_history.c.name == name, schema.alias_history.c.alias == alias)
             .order_by(schema.alias_history.c.id.desc()).limit(1))
    with meta.engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None or row.from_version is None else int(row.from_version)


def move_alias(meta: MetadataStore, audit: AuditLog, *, name: str, alias: str, version: int, action: str,
               reason: str, actor: str | None, expected: object = ANY,
               details: dict[str, Any] | None = None) -> AliasChange:
    """Point name@alias at version, recording history and audit atomically.

    `expected` is the version the caller saw the alias at (ANY: whatever it is now); if the
    alias moved meanwhile, the change is refused rather than applied on top of someone else's.
    """
    who = (actor or default_actor())[:128]
    for _attempt in range(50):
        current = aliases(meta, name).get(alias)
        if expected is not ANY and current != expected:
            raise NotFoundError(
                f"{name}@{alias} moved while this {action} was prepared (now v{current}, expected v{expected})",
                expected="no concurrent alias change", fix="look at `keel models history NAME` and try again")
        now = time.time()
        if current == version:
            return AliasChange(name, alias, action, current, version, who, now, reason, changed=False)
        try:
            with meta.engine.begin() as conn:
                if current is None:
                    conn.execute(insert(schema.aliases).values(name=name, alias=alias, version=version,
                                                               updated_at=now))
                else:
                    done = conn.execute(update(schema.aliases).where(
                        schema.aliases.c.name == name, schema.aliases.c.alias == alias,
                        schema.aliases.c.version == current).values(version=version, updated_at=now))
                    if done.rowcount != 1:
                        raise _Moved
                seq = audit.append_in(conn, action, actor=who, details={
                    "name": name, "alias": alias, "from_version": current, "to_version": version,
                    "reason": reason, **(details or {})})
                conn.execute(insert(schema.alias_history).values(
                    name=name, alias=alias, action=action, from_version=current, to_version=version,
                    actor=who, at=now, reason=reason, audit_seq=seq))
            return AliasChange(name, alias, action, current, version, who, now, reason, audit_seq=seq)
        except _Moved:
            continue
        except (SqlIntegrityError, OperationalError) as exc:
            if not retryable(exc):
                raise
    raise RuntimeError(f"could not move {name}@{alias}: too much concurrent change")
