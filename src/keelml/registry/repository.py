"""The registry's repository: every read and write of the registry's tables (tables.py) goes through here.

Writes that change what the registry says (a new version, an alias move) are one transaction with
their audit record and their signed record (`records.py`: signed here with the project's key). Nothing
here checks bundles, signatures or gate verdicts: `Registry` does that before it writes and after it reads.
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

from keelml.registry import records, tables
from keelml.registry.status import STAGING
from keelml.store.audit import AuditLog, retryable
from keelml.store.envelope import canonical_json
from keelml.store.keys import KeyRing
from keelml.store.metadata import MetadataStore

ATTEMPTS = 50


class _Moved(Exception):
    """The alias moved between reading and writing it (the transaction is rolled back)."""


class RegistryRepository:
    """Models, versions (with status and lineage facts), aliases and alias history in the metadata database.

    Constructing it creates the registry's missing tables (checkfirst; safe when another process
    does the same at once).
    """

    def __init__(self, metadata: MetadataStore, audit: AuditLog, keys: KeyRing) -> None:
        self._meta = metadata
        self._audit = audit
        self._keys = keys  # signs the registration and alias-move records
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
        (a version without a status row was registered before statuses existed: staging), and, unchecked,
        its signed registration `record` and `sig` and its lineage facts as stored (`facts_text`)."""
        mv, vs, vr, vl = tables.model_versions, tables.version_status, tables.version_records, tables.version_lineage
        joined = (mv.outerjoin(vs, and_(vs.c.name == mv.c.name, vs.c.version == mv.c.version))
                  .outerjoin(vr, and_(vr.c.name == mv.c.name, vr.c.version == mv.c.version))
                  .outerjoin(vl, and_(vl.c.name == mv.c.name, vl.c.version == mv.c.version)))
        query = (select(mv, vs.c.status, vs.c.reasons, vr.c.record, vr.c.sig, vl.c.facts.label("facts_text"))
                 .select_from(joined).where(mv.c.name == name).order_by(mv.c.version))
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
        facts_text = json.dumps(dict(facts), sort_keys=True, default=str)
        for attempt in range(ATTEMPTS):
            try:
                with self._audit.transaction() as conn:
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
                    version, now = int(latest or 0) + 1, time.time()
                    conn.execute(insert(mv).values(name=name, version=version, bundle_id=bundle_id, run_id=run_id,
                                                   created_at=now, metrics=json.dumps(dict(summary))))
                    conn.execute(insert(tables.version_lineage).values(name=name, version=version, facts=facts_text))
                    conn.execute(insert(tables.version_status).values(
                        name=name, version=version, status=status, reasons=json.dumps(reasons)))
                    audit = self._audit.append_record(conn, "registration", actor=actor,
                                                      details={**record, "version": version})
                    signed = records.registration(
                        name=name, version=version, bundle_id=bundle_id, run_id=run_id, created_at=now,
                        summary=summary, status=status, reasons=reasons, facts_text=facts_text, audit=audit,
                        keys=self._keys)
                    conn.execute(insert(tables.version_records).values(
                        name=name, version=version, record=canonical_json(signed).decode(),
                        sig=records.sign(self._keys, signed)))
                return version, True
            except (SqlIntegrityError, OperationalError) as exc:
                if not retryable(exc):
                    raise
                # another process took this number (or this content, or the audit slot) first, or
                # SQLite refused to upgrade a read to a write while another writer was active: back off
                time.sleep(random.uniform(0.0, min(1.0, 0.02 * 2 ** min(attempt, 6))))  # noqa: S311 (jitter)
        raise RuntimeError(f"could not register {name}: too much concurrent registration")

    def delete_version(self, name: str, version: int, *, actor: str | None = None) -> None:
        """Remove a version with its status, lineage facts and signed record, with a ``version_deleted``
        audit record, in one transaction (aliases are left alone). keelml itself never calls this:
        versions are immutable. It exists for tests and manual repair, so that nobody deletes only some
        of a version's rows (and so that the deletion is on the record)."""
        with self._audit.transaction() as conn:
            for table in (tables.version_records, tables.version_status, tables.version_lineage,
                          tables.model_versions):
                conn.execute(delete(table).where(table.c.name == name, table.c.version == version))
            self._audit.append_in(conn, "version_deleted", actor=actor, details={"name": name, "version": version})

    # aliases ----------------------------------------------------------------------------------
    def aliases(self, name: str) -> dict[str, int]:
        """alias -> version for one model."""
        al = tables.aliases
        query = select(al.c.alias, al.c.version).where(al.c.name == name).order_by(al.c.alias)
        with self._meta.engine.connect() as conn:
            return {str(r.alias): int(r.version) for r in conn.execute(query)}

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        """Every alias change of one model, oldest first, each with (unchecked) its signed `record`, its
        `hash` and `sig` (None when it has no signed record)."""
        ah, ar = tables.alias_history, tables.alias_records
        query = (select(ah, ar.c.record, ar.c.hash, ar.c.sig)
                 .select_from(ah.outerjoin(ar, ar.c.history_id == ah.c.id))
                 .where(ah.c.name == name).order_by(ah.c.id))
        with self._meta.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def aliased_models(self) -> list[str]:
        """Every model with an alias or an alias move (what verification walks besides the versions)."""
        al, ah = tables.aliases, tables.alias_history
        with self._meta.engine.connect() as conn:
            names = {str(r.name) for r in conn.execute(select(al.c.name).distinct())}
            names |= {str(r.name) for r in conn.execute(select(ah.c.name).distinct())}
        return sorted(names)

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
        """Point name@alias from `current` (None: unset) to `version`, with a history row, its signed
        record (chained to the alias's previous move) and an audit record (`details` added to it), in one
        transaction; returns the audit record's number.

        None when the change must be computed again: the alias is no longer at `current`, or the
        transaction lost a race (the audit slot, the alias's next move, a busy database).
        """
        signed_t, al = tables.alias_records, tables.aliases
        try:
            with self._audit.transaction() as conn:
                if current is None:
                    conn.execute(insert(al).values(name=name, alias=alias, version=version, updated_at=at))
                else:
                    done = conn.execute(update(al).where(al.c.name == name, al.c.alias == alias,
                                                         al.c.version == current).values(version=version,
                                                                                         updated_at=at))
                    if done.rowcount != 1:
                        raise _Moved
                # read after the alias row is ours: the previous move is the one this change follows
                before = conn.execute(select(signed_t.c.hash).where(signed_t.c.name == name, signed_t.c.alias == alias)
                                      .order_by(signed_t.c.history_id.desc()).limit(1)).first()
                audit = self._audit.append_record(conn, action, actor=actor, details={
                    "name": name, "alias": alias, "from_version": current, "to_version": version,
                    "reason": reason, **details})
                row = {"name": name, "alias": alias, "action": action, "from_version": current,
                       "to_version": version, "actor": actor, "at": at, "reason": reason}
                inserted = conn.execute(insert(tables.alias_history).values(**row, audit_seq=audit[0]))
                history_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
                previous = str(before.hash) if before else records.GENESIS
                signed = records.alias_move(row, audit=audit, prev_hash=previous, keys=self._keys)
                conn.execute(insert(signed_t).values(
                    history_id=history_id, name=name, alias=alias, prev_hash=previous, hash=records.move_hash(signed),
                    record=canonical_json(signed).decode(), sig=records.sign(self._keys, signed)))
            return audit[0]
        except _Moved:
            return None
        except (SqlIntegrityError, OperationalError) as exc:
            if not retryable(exc):
                raise
            return None
