"""What the runner hands to the steps at run time: the services a project provides, and the codecs.

The graph names services (`Step.services`); this module builds them from an open project. Nothing
here is part of a cache key.
"""

from __future__ import annotations

import functools
from typing import Any

from keelml.data.frames import decode_table, encode_table
from keelml.data.pii import pii_key
from keelml.engine.codecs import BUILTIN, Codec
from keelml.engine.executors import Backend
from keelml.model.persist import check_loadable, dump_model, load_model
from keelml.model.trust import TrustPolicy
from keelml.pipeline.production import reference_loader, register_candidate
from keelml.registry.bundles import build_bundle
from keelml.registry.lineage import code_version
from keelml.registry.project import Project
from keelml.spec.pipeline import LoadedSpec


def codecs(policy: TrustPolicy) -> dict[str, Codec]:
    """Built-in codecs plus tables (Arrow IPC) and models (skops, loaded only as the policy allows).

    A model that the policy would refuse to load is refused when it is saved, with the reason.
    """

    def encode_model(obj: Any) -> bytes:
        data = dump_model(obj)
        check_loadable(data, policy)
        return data

    return {**BUILTIN, "table": Codec("table", encode_table, decode_table),
            "model": Codec("model", encode_model, functools.partial(load_model, policy=policy))}


def project_services(project: Project, loaded: LoadedSpec, *, run_id: str, backend: Backend) -> dict[str, Any]:
    """Every service a standard graph names, bound to this project and run."""
    lineage = {"spec": {"path": str(loaded.path), "digest": loaded.digest}, "code": code_version(loaded.base_dir)}
    return {
        "sign": functools.partial(build_bundle, keys=project.keys),
        "pii_key": pii_key(project.keys.master_key),
        "trial_log": functools.partial(project.metadata.record_trial, run_id=run_id),
        "trial_storage": project.metadata.url,
        "backend": backend,
        "load_reference": reference_loader(project.registry),
        "register_candidate": functools.partial(register_candidate, project, loaded, run_id=run_id,
                                                lineage=lineage),
    }
