"""Lineage: what made a model version (data, contract, spec, code, parameters, run) and what a dataset fed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from keelml import __version__
from keelml.errors import InputError
from keelml.store import schema

if TYPE_CHECKING:
    from keelml.registry.core import Registry

_DIGEST = re.compile(r"^[0-9a-f]{8,64}$")


def code_version(directory: Path) -> dict[str, Any]:
    """keelml's version and, when `directory` is in a git work tree, its commit and whether it is dirty."""
    facts: dict[str, Any] = {"keelml": __version__, "git_commit": None, "git_dirty": None}
    git = shutil.which("git")
    if git is None or not directory.is_dir():
        return facts
    try:
        head = subprocess.run([git, "-C", str(directory), "rev-parse", "--verify", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=False)
        if head.returncode != 0:
            return facts
        status = subprocess.run([git, "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return facts
    commit = head.stdout.strip()
    if re.fullmatch(r"[0-9a-f]{40,64}", commit):
        facts["git_commit"] = commit
        facts["git_dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    return facts


def stored_facts(registry: Registry, name: str, version: int) -> dict[str, Any]:
    """The facts recorded when the version was registered ({} for versions older than this table)."""
    query = select(schema.version_lineage.c.facts).where(
        schema.version_lineage.c.name == name, schema.version_lineage.c.version == version)
    with registry.metadata.engine.connect() as conn:
        row = conn.execute(query).first()
    return dict(json.loads(row.facts)) if row else {}


def _run_spec(registry: Registry, run_id: str) -> dict[str, Any] | None:
    query = select(schema.runs.c.spec_path, schema.runs.c.spec_digest).where(schema.runs.c.id == run_id)
    with registry.metadata.engine.connect() as conn:
        row = conn.execute(query).first()
    return {"path": row.spec_path, "digest": row.spec_digest} if row else None


def lineage(registry: Registry, name: str, ref: str | int | None = None) -> dict[str, Any]:
    """Everything known about how one version was made, from its verified bundle and the metadata."""
    version = registry.resolve(name, ref)
    row, bundle = registry.bundle(name, version, rejected_ok=True)
    manifest = bundle["manifest"]
    info = manifest.get("info", {})
    facts = stored_facts(registry, name, version)
    contract = manifest["components"].get("contract", {}).get("sha256")
    return {
        "name": name,
        "version": version,
        "bundle": row["bundle_id"],
        "registered_at": row["created_at"],
        "run_id": row["run_id"],
        "status": row["status"],
        **({"rejected_because": row["reasons"]} if row["reasons"] else {}),
        "aliases": sorted(a for a, v in registry.aliases(name).items() if v == version),
        "data_digests": info.get("data_digests", {}),
        # The contract component is the contract's canonical JSON: its digest prefix is the contract version.
        "contract_version": contract[:12] if contract else None,
        "contract_sha256": contract,
        "parameters": info.get("parameters"),
        "spec": facts.get("spec") or _run_spec(registry, row["run_id"]),
        "code": facts.get("code") or {"keelml": info.get("environment", {}).get("keelml")},
        "environment": info.get("environment", {}),
        "origin": facts.get("origin") or manifest.get("imported_from"),
        "components": {part: entry["sha256"] for part, entry in manifest["components"].items()},
    }


def versions_fed_by(registry: Registry, digest: str) -> list[dict[str, Any]]:
    """Every model version whose training or test data had this SHA-256 (or a prefix of 8+ hex digits)."""
    wanted = digest.strip().lower()
    if not _DIGEST.match(wanted):
        raise InputError(f"{digest[:80]!r} is not a data digest", expected="8 to 64 lowercase hex digits of a SHA-256",
                         fix="copy it from `keel lineage NAME/VERSION` or the run report")
    found: list[dict[str, Any]] = []
    for model in registry.models():
        for row in registry.versions(model["name"]):
            digests = stored_facts(registry, model["name"], row["version"]).get("data_digests")
            if digests is None:  # registered before lineage facts were stored: read the bundle
                _, bundle = registry.bundle(model["name"], row["version"], rejected_ok=True)
                digests = bundle["manifest"].get("info", {}).get("data_digests", {})
            for role, value in sorted(digests.items()):
                if str(value).startswith(wanted):
                    found.append({"name": model["name"], "version": row["version"], "role": role,
                                  "digest": value, "run_id": row["run_id"]})
    return found
