"""Lineage: what made a model version (data, contract, spec, code, parameters, run) and what a dataset fed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keelml import __version__
from keelml.errors import InputError

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


def lineage(registry: Registry, name: str, ref: str | int | None = None) -> dict[str, Any]:
    """Everything known about how one version was made, from its verified bundle and the metadata."""
    row, bundle = registry.bundle(name, ref, rejected_ok=True)
    version = int(row["version"])
    manifest = bundle["manifest"]
    info = manifest.get("info", {})
    facts = registry.repository.facts(name, version)
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
        "spec": facts.get("spec") or registry.metadata.run_spec(row["run_id"]),
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
            digests = registry.repository.facts(model["name"], row["version"]).get("data_digests")
            if digests is None:  # registered before lineage facts were stored: read the bundle
                _, bundle = registry.bundle(model["name"], row["version"], rejected_ok=True)
                digests = bundle["manifest"].get("info", {}).get("data_digests", {})
            for role, value in sorted(digests.items()):
                if str(value).startswith(wanted):
                    found.append({"name": model["name"], "version": row["version"], "role": role,
                                  "digest": value, "run_id": row["run_id"]})
    return found
