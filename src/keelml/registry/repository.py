"""The registry's repository: every read and write of the registry's tables (tables.py) goes through here.

Writes that change what the registry says (a new version, an alias move) are one transaction with
their audit record. Nothing here checks bundles, signatures or gate verdicts: `Registry` does that
before it writes.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.exc import OperationalError

from keelml.registry import tables
from keelml.registry.status import STAGING
from keelml.store.audit import AuditLog, retryable
from keelml.store.metadata import MetadataStore

ATTEMPTS = 50


class _Moved(Exception):
    """The alias moved between reading and writing it (the transaction is rolled back)."""


class RegistryRepository:
    """Models, versions (with status and lineage facts), aliases and alias history in the metadata database.

    Constructing it creates the registry's missing tables (checkfirst; safe when another process
    does the same at once).
    """

    def __init__(self, metadata: MetadataStore, audit: AuditLog) -> None:
        self._meta = metadata
        self._audit = audit
        metadata.ensure_tables(tables.metadata)

    # versions ---------------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        """name, versions (count), latest and updated_at of every model with a version, by name."""
        mv = tables.model_versions
        query = (select(mv.c.name, func.count().label("versions"), func.max(mv.c.version).label("latest"),
                        func.max(mv.c.created_at).label("updated_at"))
                 .group_by(mv.c.name).order_by(mv.c.name))
        with self._meta.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def version_rows(self, name: str) -> list[dict[str, Any]]:
        """A model's versions, oldest first, each with its metrics (decoded), status and the gate's reasons
        (a version without a status row was registered before statuses existed: staging)."""
        mv, vs = tables.model_versions, tables.version_status
        query = (select(mv, vs.c.status, vs.c.reasons)
                 .select_from(mv.outerjoin(vs, and_(vs.c.name == mv.c.name, vs.c.version == mv.c.version)))
                 .where(mv.c.name == name).order_by(mv.c.version))
        with self._meta.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["metrics"] = json.loads(row["metrics"])
            if row["status"] is None:
                row["status"], row["reasons"] = STAGING, []
            else:
                row["status"], row["reasons"] = str(row["status"]), list(json.loads(row["reasons"]))
        return rows

    def version_of_bundle(self, name: str, bundle_id: str) -> int | None:
        """The version this bundle is registered as under `name`, if it is."""
        mv = tables.model_versions
        query = select(mv.c.version).where(mv.c.name == name, mv.c.bundle_id == bundle_id)
        with self._meta.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else int(row.version)

    def status(self, name: str, version: int) -> tuple[str, list[str]]:
        """(status, the gate's reasons) of one version (staging when it has no status row)."""
        vs = tables.version_status
        query = select(vs.c.status, vs.c.reasons).where(vs.c.name == name, vs.c.version == version)
        with self._meta.engine.connect() as conn:
            row = conn.execute(query).first()
        return (STAGING, []) if row is None else (str(row.status), list(json.loads(row.reasons)))

    def facts(self, name: str, version: int) -> dict[str, Any]:
        """The lineage facts recorded when the version was registered ({} for versions older than them)."""
        vl = tables.version_lineage
        query = select(vl.c.facts).where(vl.c.name == name, vl.c.version == version)
        with self._meta.engine.connect() as conn:
            row = conn.execute(query).first()
        return dict(json.loads(row.facts)) if row else {}

    def bundle_ids(self) -> set[str]:
        """The bundle artifact of every registered version."""
        with self._meta.engine.connect() as conn:
            return {str(r.bundle_id) for r in conn.execute(select(tables.model_versions.c.bundle_id))}

    def add_version(self, name: str, bundle_id: str, *, run_id: str, summary: Mapping[str, Any],
                    facts: Mapping[str, Any], status: str, reasons: list[str], actor: str | None,
                    details: Mapping[str, Any] | None = None) -> tuple[int, bool]:
        """Register `bundle_id` as the next version of `name`: (version, True); or, when this content is
        already registered, (its version, False).

        The version row, its lineage facts, its status and the ``registration`` audit record (with
        `details` added) are written in one transaction; a transaction that loses a race (the
        version number, the content, the audit slot, a busy SQLite) is retried with jittered backoff.
        """
        record = {"name": name, "bundle": bundle_id, "run_id": run_id, "status": status,
                  **({"reasons": reasons} if reasons else {}), **dict(details or {})}
        for attempt in range(ATTEMPTS):
            try:
                with self._meta.engine.begin() as conn:
                    mv = tables.model_versions
                    existing = conn.execute(select(mv.c.version).where(mv.c.name == name,
                                                                       mv.c.bundle_id == bundle_id)).first()
                    if existing:
                        return int(existing.version), False
                    if conn.execute(select(tables.models).where(tables.models.c.name == name)).first() is None:
                        try:
                            with conn.begin_nested():
                                conn.execute(insert(tables.models).values(name=name, created_at=time.time()))
                        except SqlIntegrityError:
                            pass
                    latest = conn.execute(select(func.max(mv.c.version)).where(mv.c.name == name)).scalar()
                    version = int(latest or 0) + 1
                    conn.execute(insert(mv).values(name=name, version=version, bundle_id=bundle_id, run_id=run_id,
                                                   created_at=time.time(), metrics=json.dumps(dict(summary))))
                    conn.execute(insert(tables.version_lineage).values(
                        name=name, version=version, facts=json.dumps(dict(facts), sort_keys=True, default=str)))
                    conn.execute(insert(tables.version_status).values(
                        name=name, version=version, status=status, reasons=json.dumps(reasons)))
                    self._audit.append_in(conn, "registration", actor=actor, details={**record, "version": version})
                return version, True
            except (SqlIntegrityError, OperationalError) as exc:
                if not retryable(exc):
                    raise
                # another process took this number (or this content, or the audit slot) first, or
                # SQLite refused to upgrade a read to a write while another writer was active: back off
                time.sleep(random.uniform(0.0, min(1.0, 0.02 * 2 ** min(attempt, 6))))  # noqa: S311 (jitter)
        raise RuntimeError(f"could not register {name}: too much concurrent registration")

    def delete_version(self, name: str, version: int) -> None:
        """Remove a version with its status and lineage facts, in one transaction (aliases and the audit
        log are left alone). keelml itself never calls this: versions are immutable. It exists for
        tests and manual repair, so that nobody deletes only some of a version's rows."""
        with self._meta.engine.begin() as conn:
            for table in (tables.version_status, tables.version_lineage, tables.model_versions):
                conn.execute(delete(table).where(table.c.name == name, table.c.version == version))

    # aliases ----------------------------------------------------------------------------------
    def aliases(self, name: str) -> dict[str, int]:
        """alias -> version for one model."""
        al = tables.aliases
        query = select(al.c.alias, al.c.version).where(al.c.name == name).order_by(al.c.alias)
        with self._meta.engine.connect() as conn:
            return {str(r.alias): int(r.version) for r in conn.execute(query)}

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        """Every alias change of one model, oldest first."""
        ah = tables.alias_history
        query = select(ah).where(ah.c.name == name).order_by(ah.c.id)
        with self._meta.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def previous_version(self, name: str, alias: str) -> int | None:
        """The version the alias pointed to before its current one (from its latest change)."""
        ah = tables.alias_history
        query = (select(ah.c.from_version).where(ah.c.name == name, ah.c.alias == alias)
                 .order_by(ah.c.id.desc()).limit(1))
        with self._meta.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None or row.from_version is None else int(row.from_version)

    def try_move_alias(self, *, name: str, alias: str, current: int | None, version: int, action: str,
                       actor: str, at: float, reason: str, details: Mapping[str, Any]) -> int | None:
        """Point name@alias from `current` (None: unset) to `version`, with a history row and an audit
        record (`details` added to it), in one transaction; returns the audit record's number.

        None when the change must be computed again: the alias is no longer at `current`, or the
        transaction lost a race (the audit slot, a busy database).
        """
        al = tables.aliases
        try:
            with self._meta.engine.begin() as conn:
                if current is None:
                    conn.execute(insert(al).values(name=name, alias=alias, version=version, updated_at=at))
                else:
                    done = conn.execute(update(al).where(al.c.name == name, al.c.alias == alias,
                                                         al.c.version == current).values(version=version,
                                                                                         updated_at=at))
                    if done.rowcount != 1:
                        raise _Moved
                seq = self._audit.append_in(conn, action, actor=actor, details={
                    "name": name, "alias": alias, "from_version": current, "to_version": version,
                    "reason": reason, **details})
                conn.execute(insert(tables.alias_history).values(
                    name=name, alias=alias, action=action, from_version=current, to_version=version,
                    actor=actor, at=at, reason=reason, audit_seq=seq))
            return seq
        except _Moved:
            return None
        except (SqlIntegrityError, OperationalError) as exc:
            if not retryable(exc):
                raise
            return None
