"""A candidate model around the gate: the production version it is compared with (by identity: name,
version and bundle digest), and what its registration becomes (staging, rejected, or promoted to
production when `gate.promote: auto`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from keelml.errors import IntegrityError
from keelml.pipeline.promotion import promote_validated
from keelml.registry import PRODUCTION, Registry
from keelml.registry.project import Project
from keelml.registry.status import STAGING
from keelml.spec.pipeline import LoadedSpec


def production_reference(registry: Registry, name: str) -> dict[str, Any] | None:
    """{name, version, bundle} of the version name@production points at; None when the alias is not set."""
    version = registry.aliases(name).get(PRODUCTION)
    if version is None:
        return None
    row = next(r for r in registry.versions(name) if r["version"] == version)
    return {"name": name, "version": version, "bundle": row["bundle_id"]}


def reference_loader(registry: Registry) -> Callable[[Mapping[str, Any]], tuple[Any, dict[str, Any]]]:
    """Load a reference version with the registry's safe loader (signature, digests and type allowlist
    checked before anything is constructed), and its contract; refuse a bundle other than the one named."""

    def load(reference: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        loaded = registry.load_model(str(reference["name"]), int(reference["version"]))
        if loaded.bundle_id != reference["bundle"]:
            raise IntegrityError(
                f"{reference['name']} v{reference['version']} is bundle {loaded.bundle_id[:12]}, not the "
                f"{str(reference['bundle'])[:12]} this run compared against",
                expected="the registry unchanged during a run", fix="run the pipeline again")
        entry = loaded.manifest["components"]["contract"]
        return loaded.model, json.loads(registry.artifacts.get(entry["sha256"]))

    return load


def register_candidate(project: Project, loaded: LoadedSpec, *, bundle_id: str, run_id: str,
                       verdict: Mapping[str, Any], summary: Mapping[str, Any],
                       lineage: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Register the run's bundle: staging when the gate passed (then production with `gate.promote: auto`),
    rejected with the gate's reasons when it did not. Returns the registration (as JSON) and notes for the user."""
    spec = loaded.spec
    registration = project.registry.register(spec.name, bundle_id, run_id=run_id, summary=summary,
                                             lineage=lineage, rejected_ok=True)
    # the registry read the bundle's own signed verdict (checked against its model and metrics): its status rules
    if not verdict["passed"] or registration.status != STAGING:
        return registration.as_dict(), [f"gate refused the model ({verdict['reason']}); registered as {spec.name} "
                              f"v{registration.version} with status rejected: it can never be promoted"]
    notes = [f"registered {spec.name} v{registration.version} as staging"]
    if spec.gate.promote == "auto" and project.registry.aliases(spec.name).get(PRODUCTION) != registration.version:
        done = promote_validated(project, spec.name, registration.version, alias=PRODUCTION,
                                 reason=f"gate.promote: auto (run {run_id}): {verdict['reason']}"[:500],
                                 serve=spec.serve.model_dump(mode="json"))
        notes.append(f"promoted {spec.name} v{registration.version} to production (gate.promote: auto"
                     f"{', infra validation passed' if done.infra is not None else ''})")
    return registration.as_dict(), notes
