"""The model registry: signed bundles registered as immutable numbered versions of named models."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from keelml.errors import IntegrityError, NotFoundError
from keelml.store import schema
from keelml.store.artifacts import ArtifactStore
from keelml.store.envelope import canonical_json
from keelml.store.keys import KeyRing
from keelml.store.metadata import MetadataStore

BUNDLE_FORMAT = "keelml.bundle/1"
COMPONENTS = ("model", "contract", "metrics", "cv", "verdict", "profile")


def build_bundle(*, name: str, components: Mapping[str, str], codecs: Mapping[str, str],
                 info: Mapping[str, Any], keys: KeyRing) -> dict[str, Any]:
    """A bundle manifest: component artifact ids (SHA-256 digests), facts, and an Ed25519 signature."""
    manifest = {
        "format": BUNDLE_FORMAT,
        "name": name,
        "components": {k: {"sha256": v, "codec": codecs[k]} for k, v in sorted(components.items())},
        "info": dict(info),
        "signed_by": keys.key_id,
    }
    signature = base64.b64encode(keys.sign(canonical_json(manifest))).decode()
    return {"manifest": manifest, "signature": signature}


def check_bundle(bundle: Mapping[str, Any], keys: KeyRing, artifacts: ArtifactStore, *, where: str,
                 name: str | None = None) -> None:
    """Verify the bundle's signature, its model name, and that every component is present and intact."""
    manifest = bundle.get("manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise IntegrityError(f"{where}: not a keelml bundle", expected=BUNDLE_FORMAT,
                             fix="register models only through `keel run`")
    if manifest.get("signed_by") != keys.key_id:
        raise IntegrityError(f"{where}: signed by an untrusted key {manifest.get('signed_by')!r}",
                             expected=f"this project's key {keys.key_id}",
                             fix="only bundles signed by this project's key are loaded")
    from cryptography.exceptions import InvalidSignature

    try:
        keys.public_key.verify(base64.b64decode(str(bundle.get("signature", ""))), canonical_json(manifest))
    except (InvalidSignature, ValueError):
        raise IntegrityError(f"{where}: bundle signature is invalid (the manifest was altered)",
                             fix="treat this model version as tampered with; re-run the pipeline") from None
    if name is not None and manifest.get("name") != name:
        raise IntegrityError(f"{where}: the bundle is for model {manifest.get('name')!r}, not {name!r}",
                             expected="a registry entry pointing at a bundle of the same model",
                             fix="treat the registry as tampered with; re-register with `keel run`")
    for entry in manifest["components"].values():
        artifacts.header(str(entry["sha256"]))  # raises if missing, altered or foreign


def _require_gate_passed(bundle: Mapping[str, Any], artifacts: ArtifactStore, *, where: str) -> None:
    """Only a model its gate passed may be (or stay) registered."""
    entry = bundle["manifest"]["components"].get("verdict")
    verdict = json.loads(artifacts.get(str(entry["sha256"]))) if entry else {}
    if not verdict.get("passed"):
        raise IntegrityError(f"{where}: the gate refused this model ({verdict.get('reason', 'no verdict')})",
                             expected="only models that passed the gate in the registry",
                             fix="improve the model until the gate passes; refused models are never registered")


@dataclass(frozen=True)
class Registration:
    name: str
    version: int
    bundle_id: str
    created: bool


class Registry:
    """Named models with immutable versions; the same bundle content never gets a second version."""

    def __init__(self, metadata: MetadataStore, artifacts: ArtifactStore, keys: KeyRing) -> None:
        self._meta = metadata
        self._artifacts = artifacts
        self._keys = keys

    def register(self, name: str, bundle_id: str, *, run_id: str,
                 summary: Mapping[str, Any]) -> Registration:
        bundle = json.loads(self._artifacts.get(bundle_id))
        check_bundle(bundle, self._keys, self._artifacts, where=f"bundle {bundle_id[:12]}", name=name)
        _require_gate_passed(bundle, self._artifacts, where=f"bundle {bundle_id[:12]}")
        engine = self._meta.engine
        for _attempt in range(20):
            with engine.begin() as conn:
                existing = conn.execute(select(schema.model_versions.c.version).where(
                    schema.model_versions.c.name == name,
                    schema.model_versions.c.bundle_id == bundle_id)).first()
                if existing:
                    return Registration(name, int(existing.version), bundle_id, created=False)
                if conn.execute(select(schema.models).where(schema.models.c.name == name)).first() is None:
                    try:
                        with conn.begin_nested():
                            conn.execute(insert(schema.models).values(name=name, created_at=time.time()))
                    except SqlIntegrityError:
                        pass
                latest = conn.execute(select(func.max(schema.model_versions.c.version))
                                      .where(schema.model_versions.c.name == name)).scalar()
                version = int(latest or 0) + 1
                try:
                    with conn.begin_nested():
                        conn.execute(insert(schema.model_versions).values(
                            name=name, version=version, bundle_id=bundle_id, run_id=run_id,
                            created_at=time.time(), metrics=json.dumps(dict(summary))))
                except SqlIntegrityError:
                    continue  # another process took this number (or this content) first; look again
                return Registration(name, version, bundle_id, created=True)
        raise RuntimeError(f"could not register {name}: too much concurrent registration")

    def models(self) -> list[dict[str, Any]]:
        query = (select(schema.model_versions.c.name, func.count().label("versions"),
                        func.max(schema.model_versions.c.version).label("latest"),
                        func.max(schema.model_versions.c.created_at).label("updated_at"))
                 .group_by(schema.model_versions.c.name).order_by(schema.model_versions.c.name))
        with self._meta.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def versions(self, name: str) -> list[dict[str, Any]]:
        query = (select(schema.model_versions).where(schema.model_versions.c.name == name)
                 .order_by(schema.model_versions.c.version))
        with self._meta.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        if not rows:
            known = ", ".join(m["name"] for m in self.models()) or "none yet"
            raise NotFoundError(f"no model named {name!r}", expected=f"one of: {known}",
                                fix="list models with `keel models list`")
        for row in rows:
            row["metrics"] = json.loads(row["metrics"])
        return rows

    def bundle(self, name: str, version: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(version row, verified bundle) for a version (default: the latest)."""
        rows = self.versions(name)
        row = rows[-1] if version is None else next((r for r in rows if r["version"] == version), None)
        if row is None:
            raise NotFoundError(f"model {name!r} has no version {version}",
                                expected="one of: " + ", ".join(str(r["version"]) for r in rows),
                                fix=f"list versions with `keel models show {name}`")
        bundle = json.loads(self._artifacts.get(row["bundle_id"]))
        where = f"{name} version {row['version']}"
        check_bundle(bundle, self._keys, self._artifacts, where=where, name=name)
        _require_gate_passed(bundle, self._artifacts, where=where)
        return row, bundle

    def verify_all(self) -> tuple[int, list[str]]:
        """Check every registered version's bundle; returns (count checked, problems)."""
        problems: list[str] = []
        count = 0
        for model in self.models():
            for row in self.versions(model["name"]):
                count += 1
                try:
                    self.bundle(model["name"], row["version"])
                except (IntegrityError, NotFoundError) as exc:
                    problems.append(exc.what)
        return count, problems
