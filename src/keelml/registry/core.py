"""The model registry: signed bundles registered as immutable numbered versions of named models,
aliases with their history, verification, lineage, and export/import between projects."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.exc import OperationalError

from keelml.errors import IntegrityError, KeelError, NotFoundError
from keelml.model.trust import DEFAULT_POLICY, TrustPolicy
from keelml.names import PRODUCTION, check_alias, check_name, check_text, check_version
from keelml.registry import aliases as alias_ops
from keelml.registry import status as status_ops
from keelml.registry.aliases import AliasChange
from keelml.registry.bundles import check_bundle, component_entries, require_gate_passed
from keelml.store import schema
from keelml.store.artifacts import ArtifactStore
from keelml.store.audit import AuditLog, retryable
from keelml.store.keys import KeyRing
from keelml.store.metadata import MetadataStore
from keelml.store.trust import TrustStore


@dataclass(frozen=True)
class Registration:
    name: str
    version: int
    bundle_id: str
    created: bool
    status: str = status_ops.STAGING  # staging (the gate passed) or rejected (kept for the audit trail)
    reasons: tuple[str, ...] = ()  # the gate's failed checks, for a rejected version

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "bundle_id": self.bundle_id, "created": self.created,
                "status": self.status, "reasons": list(self.reasons)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Registration:
        return cls(str(data["name"]), int(data["version"]), str(data["bundle_id"]), bool(data["created"]),
                   str(data["status"]), tuple(str(r) for r in data["reasons"]))


def _actor(actor: str | None) -> str | None:
    return check_text(actor, what="actor", max_length=128)


@dataclass(frozen=True)
class LoadedModel:
    """A registered model, verified and constructed (only allowlisted types)."""

    name: str
    version: int
    bundle_id: str
    manifest: dict[str, Any]
    model: Any


class Registry:
    """Named models with immutable versions; the same bundle content never gets a second version."""

    def __init__(self, metadata: MetadataStore, artifacts: ArtifactStore, keys: KeyRing,
                 audit: AuditLog | None = None, policy: TrustPolicy | Callable[[], TrustPolicy] = DEFAULT_POLICY
                 ) -> None:
        self._meta = metadata
        self._artifacts = artifacts
        self._keys = keys
        self.audit = audit if audit is not None else AuditLog(metadata, keys)
        self._policy = policy  # a factory is called on first use (it may import the spec's estimator class)

    @property
    def policy(self) -> TrustPolicy:
        """The project's trust policy: keelml's allowlist plus what its spec declares."""
        if not isinstance(self._policy, TrustPolicy):
            self._policy = self._policy()
        return self._policy

    def policy_for(self, manifest: Mapping[str, Any]) -> TrustPolicy:
        """What may be loaded from a bundle: the project's trust policy, plus the policy recorded in the
        bundle only when this project's own key signed it (its own spec declared it then). Trusting
        another project's key accepts its signatures, never its type list."""
        if manifest.get("signed_by") != self._keys.key_id:
            return self.policy
        return self.policy.union(TrustPolicy.from_dict((manifest.get("info") or {}).get("trust")))

    @property
    def metadata(self) -> MetadataStore:
        return self._meta

    @property
    def artifacts(self) -> ArtifactStore:
        return self._artifacts

    @property
    def keys(self) -> KeyRing:
        return self._keys

    # versions ---------------------------------------------------------------------------------
    def register(self, name: str, bundle_id: str, *, run_id: str, summary: Mapping[str, Any],
                 lineage: Mapping[str, Any] | None = None, actor: str | None = None,
                 rejected_ok: bool = False) -> Registration:
        """Register a verified bundle as the next version (or return the existing one).

        A bundle whose signed gate verdict passed is registered with status staging. One the gate
        refused is refused here too, unless `rejected_ok` (the pipeline's own candidates): then it is
        registered with status rejected and the gate's reasons, for the audit trail, and can never
        be served, exported or aliased.
        """
        check_name(name)
        bundle = json.loads(self._artifacts.get(bundle_id))
        with self._audited(name, None, bundle_id=bundle_id):
            check_bundle(bundle, self._keys, self._artifacts, where=f"bundle {bundle_id[:12]}", name=name)
            verdict = status_ops.signed_verdict(bundle, self._artifacts)
            if not rejected_ok:
                require_gate_passed(bundle, self._artifacts, where=f"bundle {bundle_id[:12]}")
        reasons = status_ops.failed_reasons(verdict)
        state = status_ops.STAGING if verdict.get("passed") else status_ops.REJECTED
        info = bundle["manifest"].get("info", {})
        facts = {"run_id": run_id, "data_digests": info.get("data_digests", {}), **dict(lineage or {})}
        engine = self._meta.engine
        with engine.connect() as conn:
            known = conn.execute(select(schema.model_versions.c.version).where(
                schema.model_versions.c.name == name, schema.model_versions.c.bundle_id == bundle_id)).first()
        if known:
            return self._registration(name, int(known.version), bundle_id, created=False)
        self._audit_model_files(bundle, name=name, bundle_id=bundle_id)
        for _attempt in range(50):
            try:
                with engine.begin() as conn:
                    existing = conn.execute(select(schema.model_versions.c.version).where(
                        schema.model_versions.c.name == name,
                        schema.model_versions.c.bundle_id == bundle_id)).first()
                    if existing:
                        return self._registration(name, int(existing.version), bundle_id, created=False)
                    if conn.execute(select(schema.models).where(schema.models.c.name == name)).first() is None:
                        try:
                            with conn.begin_nested():
                                conn.execute(insert(schema.models).values(name=name, created_at=time.time()))
                        except SqlIntegrityError:
                            pass
                    latest = conn.execute(select(func.max(schema.model_versions.c.version))
                                          .where(schema.model_versions.c.name == name)).scalar()
                    version = int(latest or 0) + 1
                    conn.execute(insert(schema.model_versions).values(
                        name=name, version=version, bundle_id=bundle_id, run_id=run_id,
                        created_at=time.time(), metrics=json.dumps(dict(summary))))
                    conn.execute(insert(schema.version_lineage).values(
                        name=name, version=version, facts=json.dumps(facts, sort_keys=True, default=str)))
                    conn.execute(delete(schema.version_status).where(  # an orphan left by a removed row
                        schema.version_status.c.name == name, schema.version_status.c.version == version))
                    conn.execute(insert(schema.version_status).values(
                        name=name, version=version, status=state, reasons=json.dumps(reasons)))
                    self.audit.append_in(conn, "registration", actor=actor, details={
                        "name": name, "version": version, "bundle": bundle_id, "run_id": run_id,
                        "signed_by": bundle["manifest"].get("signed_by"), "status": state,
                        **({"reasons": reasons} if reasons else {}),
                        **({"origin": facts["origin"]} if "origin" in facts else {})})
                return Registration(name, version, bundle_id, created=True, status=state, reasons=tuple(reasons))
            except (SqlIntegrityError, OperationalError) as exc:
                if not retryable(exc):
                    raise
                # another process took this number (or this content, or the audit slot) first, or
                # SQLite refused to upgrade a read to a write while another writer was active: back off
                time.sleep(random.uniform(0.0, min(1.0, 0.02 * 2 ** min(_attempt, 6))))  # noqa: S311 (jitter)
        raise RuntimeError(f"could not register {name}: too much concurrent registration")

    def _registration(self, name: str, version: int, bundle_id: str, *, created: bool) -> Registration:
        state, reasons = status_ops.statuses(self._meta, name).get(version, (status_ops.STAGING, []))
        return Registration(name, version, bundle_id, created=created, status=state, reasons=tuple(reasons))

    def _audit_model_files(self, bundle: Mapping[str, Any], *, name: str, bundle_id: str) -> None:
        """Refuse a bundle whose model file is a pickle or names a type outside the allowlist."""
        from keelml.model.persist import audit_model

        where = f"bundle {bundle_id[:12]}"
        with self._audited(name, None, bundle_id=bundle_id):
            entries = component_entries(bundle["manifest"], where=where)
            for part, entry in entries.items():
                if entry["codec"] == "model":
                    try:
                        audit_model(self._artifacts.get(entry["sha256"]), self.policy_for(bundle["manifest"]))
                    except IntegrityError as exc:
                        raise IntegrityError(f"{where}: component {part!r}: {exc.what}", expected=exc.expected,
                                             fix=exc.fix) from None

    def models(self) -> list[dict[str, Any]]:
        query = (select(schema.model_versions.c.name, func.count().label("versions"),
                        func.max(schema.model_versions.c.version).label("latest"),
                        func.max(schema.model_versions.c.created_at).label("updated_at"))
                 .group_by(schema.model_versions.c.name).order_by(schema.model_versions.c.name))
        with self._meta.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def versions(self, name: str) -> list[dict[str, Any]]:
        check_name(name)
        query = (select(schema.model_versions).where(schema.model_versions.c.name == name)
                 .order_by(schema.model_versions.c.version))
        with self._meta.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        if not rows:
            known = ", ".join(m["name"] for m in self.models()) or "none yet"
            raise NotFoundError(f"no model named {name!r}", expected=f"one of: {known}",
                                fix="list models with `keel models list`")
        known_status = status_ops.statuses(self._meta, name)
        for row in rows:
            row["metrics"] = json.loads(row["metrics"])
            row["status"], row["reasons"] = known_status.get(int(row["version"]), (status_ops.STAGING, []))
        return rows

    def resolve(self, name: str, ref: str | int | None = None) -> int:
        """The version a reference means: None or "latest" = the newest accepted (not rejected) version,
        a number = that version (whatever its status), else an alias."""
        rows = self.versions(name)
        if ref is None or ref == "latest":
            accepted = [r for r in rows if r["status"] != status_ops.REJECTED]
            if not accepted:
                raise NotFoundError(f"model {name!r} has no accepted version (all {len(rows)} were rejected by "
                                    "the gate)", expected="a version whose gate passed",
                                    fix=f"see why with `keel models show {name}`; improve the model and run again")
            return int(accepted[-1]["version"])
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit()):
            version = check_version(ref)
            if not any(r["version"] == version for r in rows):
                raise NotFoundError(f"model {name!r} has no version {version}",
                                    expected="one of: " + ", ".join(str(r["version"]) for r in rows),
                                    fix=f"list versions with `keel models show {name}`")
            return version
        alias = check_alias(ref)
        known = self.aliases(name)
        if alias not in known:
            listed = ", ".join(f"{a} (v{v})" for a, v in known.items()) or "none yet"
            raise NotFoundError(f"model {name!r} has no alias {alias!r}", expected=f"one of: {listed}",
                                fix=f"promote a version first: `keel models promote {name} VERSION --to {alias}`")
        return known[alias]

    def bundle(self, name: str, version: str | int | None = None, *,
               rejected_ok: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
        """(version row, verified bundle) for a version or alias (default: the latest accepted one).

        A rejected version is refused (KeelError) unless `rejected_ok` (listing, lineage, verification
        of its integrity); any other version must carry a signed verdict that passed.
        """
        rows = self.versions(name)
        number = self.resolve(name, version)
        row = next(r for r in rows if r["version"] == number)
        where = f"{name} version {row['version']}"
        rejected = row["status"] == status_ops.REJECTED
        if rejected and not rejected_ok:
            raise status_ops.refuse_rejected(name, number, row["reasons"], action="used")
        with self._audited(name, number, bundle_id=row["bundle_id"]):
            try:
                bundle = json.loads(self._artifacts.get(row["bundle_id"]))
            except (IntegrityError, NotFoundError) as exc:
                raise type(exc)(f"{where}: bundle: {exc.what}", expected=exc.expected, fix=exc.fix) from None
            check_bundle(bundle, self._keys, self._artifacts, where=where, name=name)
            if not rejected:
                require_gate_passed(bundle, self._artifacts, where=where)
        return row, bundle

    def verify(self, name: str, ref: str | int | None = None, *, rejected_ok: bool = False) -> dict[str, Any]:
        """Full check of one version: signature, every component decrypted and re-hashed, the gate
        verdict, and the model file's types against the allowlist (nothing is deserialized).
        A rejected version is refused unless `rejected_ok` (then its integrity is checked)."""
        from keelml.model.persist import audit_model

        version = self.resolve(name, ref)
        row, bundle = self.bundle(name, version, rejected_ok=rejected_ok)
        where = f"{name} version {version}"
        report: dict[str, Any] = {"name": name, "version": version, "bundle": row["bundle_id"],
                                  "status": row["status"], "reasons": row["reasons"],
                                  "signed_by": bundle["manifest"]["signed_by"], "components": {},
                                  "aliases": sorted(a for a, v in self.aliases(name).items() if v == version)}
        with self._audited(name, version, bundle_id=row["bundle_id"]):
            entries = component_entries(bundle["manifest"], where=where)
            for part, entry in entries.items():
                try:
                    data = self._artifacts.get(entry["sha256"])
                    if entry["codec"] == "model":
                        report["model_types"] = len(audit_model(data, self.policy_for(bundle["manifest"])))
                except (IntegrityError, NotFoundError) as exc:
                    raise type(exc)(f"{where}: component {part!r}: {exc.what}", expected=exc.expected,
                                    fix=exc.fix) from None
                report["components"][part] = {**entry, "size": len(data)}
        return report

    def load_model(self, name: str, ref: str | int | None = None) -> LoadedModel:
        """Verify a version (signature, digests, type allowlist) and only then construct its model."""
        from keelml.model.persist import load_model

        version = self.resolve(name, ref)
        row, bundle = self.bundle(name, version)
        entries = component_entries(bundle["manifest"], where=f"{name} version {version}")
        entry = entries["model"]
        with self._audited(name, version, bundle_id=row["bundle_id"]):
            try:
                model = load_model(self._artifacts.get(entry["sha256"]), self.policy_for(bundle["manifest"]))
            except IntegrityError as exc:
                raise IntegrityError(f"{name} version {version}: component 'model': {exc.what}",
                                     expected=exc.expected, fix=exc.fix) from None
        return LoadedModel(name, version, row["bundle_id"], bundle["manifest"], model)

    def verify_all(self) -> tuple[int, list[str]]:
        """Check every registered version's bundle; returns (count checked, problems)."""
        problems: list[str] = []
        count = 0
        for model in self.models():
            for row in self.versions(model["name"]):
                count += 1
                try:
                    self.bundle(model["name"], row["version"], rejected_ok=True)
                except (IntegrityError, NotFoundError) as exc:
                    problems.append(exc.what)
        return count, problems

    @contextmanager
    def _audited(self, name: str, version: int | None, **details: Any) -> Iterator[None]:
        """Record a failed verification in the audit log, then let the error through."""
        try:
            yield
        except IntegrityError as exc:
            with suppress(Exception):  # the integrity error is what the caller must see
                self.audit.append("verification_failure", name=name, version=version,
                                  problem=exc.what[:500], **details)
            raise

    def require_accepted(self, name: str, version: int, *, action: str) -> None:
        """Refuse (KeelError, with the gate's reasons) a version registered as rejected."""
        state, reasons = status_ops.statuses(self._meta, check_name(name)).get(version, (status_ops.STAGING, []))
        if state == status_ops.REJECTED:
            raise status_ops.refuse_rejected(name, version, reasons, action=action)

    # aliases ----------------------------------------------------------------------------------
    def aliases(self, name: str) -> dict[str, int]:
        """alias -> version for one model."""
        return alias_ops.aliases(self._meta, check_name(name))

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        """Every alias change of one model (promotions and rollbacks), oldest first."""
        return alias_ops.alias_history(self._meta, check_name(name))

    def promote(self, name: str, version: int, *, alias: str = PRODUCTION, reason: str,
                actor: str | None = None, details: Mapping[str, Any] | None = None) -> AliasChange:
        """Point name@alias at a version after verifying it fully; a gate-refused model never moves.

        `details` are added to the promotion's audit record (e.g. the infra validation's outcome,
        see `keelml.pipeline.promotion`); this method itself starts no server and makes no HTTP call.
        """
        number = check_version(version)
        check_alias(alias)
        why = str(check_text(reason, what="reason", required=True))
        self.resolve(name, number)
        self.require_accepted(name, number, action=f"promoted to {alias}")
        self.verify(name, number)
        return alias_ops.move_alias(self._meta, self.audit, name=name, alias=alias, version=number,
                                    action="promotion", reason=why, actor=_actor(actor),
                                    details=dict(details) if details else None)

    def rollback(self, name: str, *, alias: str = PRODUCTION, to: int | None = None, reason: str = "rollback",
                 actor: str | None = None) -> AliasChange:
        """Move name@alias back: to `to`, or to the version it pointed to before its current one."""
        check_alias(alias)
        why = str(check_text(reason, what="reason", required=True))
        current = self.aliases(name).get(alias)
        if current is None:
            self.versions(name)  # an unknown model says so first
            raise NotFoundError(f"{name}@{alias} is not set: nothing to roll back",
                                expected=f"a version promoted to {alias} before",
                                fix=f"promote one: `keel models promote {name} VERSION --to {alias}`")
        target = check_version(to) if to is not None else alias_ops.previous_version(self._meta, name, alias)
        if target is None:
            raise NotFoundError(f"{name}@{alias} has no earlier version to roll back to (it is v{current})",
                                expected="an alias that was moved at least once",
                                fix=f"name the version: `keel models rollback {name} --to VERSION`")
        if target == current:
            raise KeelError(f"{name}@{alias} is already v{current}", expected="another version",
                            fix=f"see `keel models history {name}`")
        self.resolve(name, target)
        self.require_accepted(name, target, action=f"the target of a rollback of {alias}")
        self.verify(name, target)
        return alias_ops.move_alias(self._meta, self.audit, name=name, alias=alias, version=target,
                                    action="rollback", reason=why, actor=_actor(actor),
                                    expected=current)

    # lineage and transport --------------------------------------------------------------------
    def lineage(self, name: str, ref: str | int | None = None) -> dict[str, Any]:
        from keelml.registry.lineage import lineage

        return lineage(self, name, ref)

    def versions_fed_by(self, digest: str) -> list[dict[str, Any]]:
        from keelml.registry.lineage import versions_fed_by

        return versions_fed_by(self, digest)

    def export_bundle(self, name: str, ref: str | int | None, path: Path, *, actor: str | None = None,
                      overwrite: bool = False) -> dict[str, Any]:
        from keelml.registry.transport import export_bundle

        return export_bundle(self, name, ref, path, actor=actor, overwrite=overwrite)

    def import_bundle(self, path: Path, trust: TrustStore, *, actor: str | None = None,
                      **limits: int) -> Registration:
        """Verify an export archive with a trusted key and register it (see transport.py)."""
        from keelml.registry.transport import import_bundle

        label = path.name
        with self._audited(label, None, archive=str(path)):
            return import_bundle(self, path, trust, actor=actor, **limits)

