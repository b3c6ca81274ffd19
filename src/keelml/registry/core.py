"""The model registry: signed bundles registered as immutable numbered versions of named models,
aliases with their history, verification, lineage, and export/import between projects."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keelml.errors import IntegrityError, KeelError, NotFoundError
from keelml.model.persist import audit_model, load_model
from keelml.model.trust import DEFAULT_POLICY, TrustPolicy
from keelml.names import PRODUCTION, check_alias, check_name, check_text, check_version
from keelml.registry import integrity
from keelml.registry import status as status_ops
from keelml.registry.aliases import AliasChange, move_alias
from keelml.registry.bundles import (
    check_bundle,
    check_verdict_binding,
    component_entries,
    component_problem,
    require_gate_passed,
)
from keelml.registry.repository import RegistryRepository
from keelml.registry.status import Registration
from keelml.store.artifacts import ArtifactStore
from keelml.store.audit import AuditLog
from keelml.store.keys import KeyRing
from keelml.store.metadata import MetadataStore
from keelml.store.trust import TrustStore


def _actor(actor: str | None) -> str | None:
    return check_text(actor, what="actor", max_length=128)


def _no_version(name: str, rows: list[dict[str, Any]], version: int) -> NotFoundError:
    return NotFoundError(f"model {name!r} has no version {version}",
                         expected="one of: " + ", ".join(str(r["version"]) for r in rows),
                         fix=f"list versions with `keel models show {name}`")


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
        self._repo = RegistryRepository(metadata, self.audit, keys)  # creates the registry's tables if missing
        self._policy = policy  # a factory is called on first use (it may import the spec's estimator class)
        self._recorded: set[str] = set()  # verification failures already in the audit log (once per process)

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

    @property
    def repository(self) -> RegistryRepository:
        """The registry's tables; every read and write of them goes through it."""
        return self._repo

    # versions ---------------------------------------------------------------------------------
    def register(self, name: str, bundle_id: str, *, run_id: str, summary: Mapping[str, Any],
                 lineage: Mapping[str, Any] | None = None, actor: str | None = None,
                 rejected_ok: bool = False) -> Registration:
        """Register a verified bundle as the next version (or return the existing one).

        A bundle whose signed gate verdict passed is registered with status staging; the verdict must
        name the digests of the bundle's model and metrics (IntegrityError otherwise, audited). One the gate
        refused is refused here too, unless `rejected_ok` (the pipeline's own candidates): then it is
        registered with status rejected and the gate's reasons, for the audit trail, and can never
        be served, exported or aliased.
        """
        check_name(name)
        bundle = json.loads(self._artifacts.get(bundle_id))
        with self._audited(name, None, bundle_id=bundle_id):
            check_bundle(bundle, self._keys, self._artifacts, where=f"bundle {bundle_id[:12]}", name=name)
            verdict = status_ops.signed_verdict(bundle, self._artifacts)
            # the verdict must have judged this bundle's model and metrics, passed or not
            check_verdict_binding(bundle["manifest"], verdict, where=f"bundle {bundle_id[:12]}")
            if not rejected_ok:
                require_gate_passed(bundle, self._artifacts, where=f"bundle {bundle_id[:12]}")
        reasons = status_ops.failed_reasons(verdict)
        state = status_ops.STAGING if verdict.get("passed") else status_ops.REJECTED
        info = bundle["manifest"].get("info", {})
        facts = {"run_id": run_id, "data_digests": info.get("data_digests", {}), **dict(lineage or {})}
        known = self._repo.version_of_bundle(name, bundle_id)
        if known is not None:
            return self._registration(name, known, bundle_id, created=False)
        self._audit_model_files(bundle, name=name, bundle_id=bundle_id)
        version, created = self._repo.add_version(
            name, bundle_id, run_id=run_id, summary=summary, facts=facts, status=state, reasons=reasons,
            actor=actor, details={"signed_by": bundle["manifest"].get("signed_by"),
                                  **({"origin": facts["origin"]} if "origin" in facts else {})})
        if not created:
            return self._registration(name, version, bundle_id, created=False)
        return Registration(name, version, bundle_id, created=True, status=state, reasons=tuple(reasons))

    def _registration(self, name: str, version: int, bundle_id: str, *, created: bool) -> Registration:
        row = self._version_row(name, version)  # checked against its signed registration record
        return Registration(name, version, bundle_id, created=created, status=row["status"],
                            reasons=tuple(row["reasons"]))

    def _audit_model_files(self, bundle: Mapping[str, Any], *, name: str, bundle_id: str) -> None:
        """Refuse a bundle whose model file is a pickle or names a type outside the allowlist."""
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
        return self._repo.models()

    def versions(self, name: str) -> list[dict[str, Any]]:
        """A model's versions, oldest first, each checked against its signed registration record."""
        rows = self._repo.version_rows(check_name(name))
        if not rows:
            known = ", ".join(m["name"] for m in self.models()) or "none yet"
            raise NotFoundError(f"no model named {name!r}", expected=f"one of: {known}",
                                fix="list models with `keel models list`")
        with self._audited(name, None):
            return integrity.checked_versions(self, rows)

    def resolve(self, name: str, ref: str | int | None = None) -> int:
        """The version a reference means: None or "latest" = the newest accepted (not rejected) version,
        a number = that version (whatever its status), else an alias."""
        return self._resolve_in(name, self.versions(name), ref)

    def _version_row(self, name: str, ref: str | int | None, *, accepted_for: str | None = None) -> dict[str, Any]:
        """The row (with status) of the version `ref` means, from one read of the version list: an unknown
        model, version or alias is refused as `resolve` refuses it, then (with `accepted_for`, the action)
        a rejected version as `require_accepted` refuses it."""
        rows = self.versions(name)
        number = self._resolve_in(name, rows, ref)
        row = next((r for r in rows if r["version"] == number), None)
        if row is None:  # an alias naming a version that is not there: refused as that number would be
            raise _no_version(name, rows, number)
        if accepted_for is not None and row["status"] == status_ops.REJECTED:
            raise status_ops.refuse_rejected(name, number, row["reasons"], action=accepted_for)
        return row

    def accepted_version(self, name: str, ref: str | int | None, *, action: str) -> int:
        """`resolve`, then `require_accepted` (the same errors, in that order), from one read."""
        return int(self._version_row(name, ref, accepted_for=action)["version"])

    def _resolve_in(self, name: str, rows: list[dict[str, Any]], ref: str | int | None) -> int:
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
                raise _no_version(name, rows, version)
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
        row = self._version_row(name, version)
        return row, self.checked_bundle(name, row, rejected_ok=rejected_ok)

    def checked_bundle(self, name: str, row: Mapping[str, Any], *, rejected_ok: bool) -> dict[str, Any]:
        """The verified bundle of a version row (see `bundle`)."""
        number = int(row["version"])
        where = f"{name} version {number}"
        rejected = row["status"] == status_ops.REJECTED
        if rejected and not rejected_ok:
            raise status_ops.refuse_rejected(name, number, row["reasons"], action="used")
        with self._audited(name, number, bundle_id=row["bundle_id"]):
            try:
                bundle = json.loads(self._artifacts.get(row["bundle_id"]))
            except (IntegrityError, NotFoundError) as exc:  # a registered bundle that is gone: integrity
                raise component_problem(f"{where}: bundle", exc) from None
            check_bundle(bundle, self._keys, self._artifacts, where=where, name=name)
            if not rejected:
                require_gate_passed(bundle, self._artifacts, where=where)
        return dict(bundle)

    def verify(self, name: str, ref: str | int | None = None, *, rejected_ok: bool = False) -> dict[str, Any]:
        """Full check of one version: signature, every component decrypted and re-hashed, the gate
        verdict, and the model file's types against the allowlist (nothing is deserialized).
        A rejected version is refused unless `rejected_ok` (then its integrity is checked)."""
        return self._verify_row(name, self._version_row(name, ref), rejected_ok=rejected_ok)

    def _verify_row(self, name: str, row: Mapping[str, Any], *, rejected_ok: bool = False) -> dict[str, Any]:
        version = int(row["version"])
        bundle = self.checked_bundle(name, row, rejected_ok=rejected_ok)
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
                    raise component_problem(f"{where}: component {part!r}", exc) from None
                report["components"][part] = {**entry, "size": len(data)}
        return report

    def load_model(self, name: str, ref: str | int | None = None) -> LoadedModel:
        """Verify a version (signature, digests, type allowlist) and only then construct its model."""
        row = self._version_row(name, ref)
        version = int(row["version"])
        bundle = self.checked_bundle(name, row, rejected_ok=False)
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
        """Check every registered version (its row against its signed record, its bundle), every alias
        move and the references into the audit log; returns (versions checked, every problem)."""
        count, problems = integrity.verify_registry(self)
        for problem in problems:
            self._record_failure("registry", None, problem)
        return count, problems

    def audit_references(self) -> list[str]:
        """Problems between the registry and the audit log (records it names, registrations it lacks)."""
        return integrity.reference_problems(self)

    def check_latest(self, name: str, version: int) -> None:
        """Refuse (IntegrityError, audited) when `version` is not the newest accepted version the audit log
        registered for `name`: what a server following "latest" checks before it switches."""
        with self._audited(name, version):
            integrity.check_latest(self, check_name(name), version)

    @contextmanager
    def _audited(self, name: str, version: int | None, **details: Any) -> Iterator[None]:
        """Record a failed verification in the audit log, then let the error through."""
        try:
            yield
        except IntegrityError as exc:
            self._record_failure(name, version, exc.what, **details)
            raise

    def _record_failure(self, name: str, version: int | None, problem: str, **details: Any) -> None:
        """One ``verification_failure`` record per problem and process (a server polling a tampered alias
        must not flood the log)."""
        if problem in self._recorded:
            return
        with suppress(Exception):  # the integrity error is what the caller must see
            self.audit.append("verification_failure", name=name, version=version, problem=problem[:500], **details)
            self._recorded.add(problem)

    def require_accepted(self, name: str, version: int, *, action: str) -> None:
        """Refuse (KeelError, with the gate's reasons) a version registered as rejected."""
        self._version_row(name, version, accepted_for=action)

    # aliases ----------------------------------------------------------------------------------
    def aliases(self, name: str) -> dict[str, int]:
        """alias -> version for one model, each checked against its last signed move (IntegrityError)."""
        with self._audited(check_name(name), None):
            return integrity.checked_aliases(self, name)

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        """Every alias change of one model (promotions and rollbacks), oldest first, each checked."""
        with self._audited(check_name(name), None):
            return integrity.checked_history(self, name)

    def promote(self, name: str, version: int, *, alias: str = PRODUCTION, reason: str,
                actor: str | None = None, details: Mapping[str, Any] | None = None) -> AliasChange:
        """Point name@alias at a version after verifying it fully; a gate-refused model never moves.

        `details` are added to the promotion's audit record (e.g. the infra validation's outcome,
        see `keelml.pipeline.promotion`); this method itself starts no server and makes no HTTP call.
        """
        number = check_version(version)
        check_alias(alias)
        why = str(check_text(reason, what="reason", required=True))
        # one read of the version row: an unknown version, then a rejected one, is refused; then full verification
        self._verify_row(name, self._version_row(name, number, accepted_for=f"promoted to {alias}"))
        self.aliases(name)  # an alias moved outside keelml is refused, not built upon
        return move_alias(self._repo, name=name, alias=alias, version=number, action="promotion", reason=why,
                          actor=_actor(actor), details=dict(details) if details else None)

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
        target = check_version(to) if to is not None else self._repo.previous_version(name, alias)
        if target is None:
            raise NotFoundError(f"{name}@{alias} has no earlier version to roll back to (it is v{current})",
                                expected="an alias that was moved at least once",
                                fix=f"name the version: `keel models rollback {name} --to VERSION`")
        if target == current:
            raise KeelError(f"{name}@{alias} is already v{current}", expected="another version",
                            fix=f"see `keel models history {name}`")
        self._verify_row(name, self._version_row(name, target, accepted_for=f"the target of a rollback of {alias}"))
        return move_alias(self._repo, name=name, alias=alias, version=target, action="rollback", reason=why,
                          actor=_actor(actor), expected=current)

    # lineage and transport --------------------------------------------------------------------
    def lineage(self, name: str, ref: str | int | None = None) -> dict[str, Any]:
        from keelml.registry.lineage import lineage  # lineage reads the Registry: an import cycle at module level

        return lineage(self, name, ref)

    def versions_fed_by(self, digest: str) -> list[dict[str, Any]]:
        from keelml.registry.lineage import (
            versions_fed_by,  # lineage reads the Registry: an import cycle at module level
        )

        return versions_fed_by(self, digest)

    def export_bundle(self, name: str, ref: str | int | None, path: Path, *, actor: str | None = None,
                      overwrite: bool = False) -> dict[str, Any]:
        from keelml.registry.transport import (
            export_bundle,  # transport reads the Registry: an import cycle at module level
        )

        return export_bundle(self, name, ref, path, actor=actor, overwrite=overwrite)

    def import_bundle(self, path: Path, trust: TrustStore, *, actor: str | None = None,
                      allow_types: Sequence[str] = (), **limits: int) -> Registration:
        """Verify an export archive with a trusted key and register it (see transport.py); `allow_types`
        names each type beyond this project's policy that the archive's model may hold."""
        from keelml.registry.transport import (
            import_bundle,  # transport reads the Registry: an import cycle at module level
        )

        label = path.name
        with self._audited(label, None, archive=str(path), allow_types=list(allow_types)):
            return import_bundle(self, path, trust, actor=actor, allow_types=allow_types, **limits)

