"""Release steps: sign the bundle (the model and every fact about it), then register it.

`bundle` is pure: the same components, facts and signing key give the same signed manifest.
`register` hands the signed bundle to the registry (the `register_candidate` service): staging when
the gate passed, rejected with its reasons when it did not; registering the same bundle again
returns the existing version.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
from collections.abc import Callable, Mapping
from typing import Any

PACKAGES = ("keelml", "scikit-learn", "skops", "numpy", "polars", "onnxruntime")


def _version_of(package: str) -> str:
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return "not installed"


def bundle(*, params: Mapping[str, Any], sign: Callable[..., dict[str, Any]], model: str, contract: str,
           metrics: str, cv: str, verdict: str, profile: str, onnx: str | None = None, engine: str | None = None,
           holdout: str | None = None, predictions: str | None = None) -> dict[str, Any]:
    """Assemble and sign the bundle manifest (component digests, environment, lineage, trust policy).

    Besides the model and its facts, the bundle names the training profile (the drift reference), the
    serving engine description and ONNX graph, and the held-out rows with the predictions recorded
    at evaluation (for infra validation).
    """
    components = {"model": model, "contract": contract, "metrics": metrics, "cv": cv, "verdict": verdict,
                  "profile": profile}
    optional = {"onnx": onnx, "engine": engine, "holdout": holdout, "predictions": predictions}
    components.update({k: v for k, v in optional.items() if v is not None})
    environment = {"python": platform.python_version(), **{p: _version_of(p) for p in PACKAGES}}
    info = {"data_digests": params["data_digests"], "environment": environment, "trust": params["trust"],
            **({"parameters": params["parameters"]} if "parameters" in params else {})}
    return {"bundle": sign(name=params["name"], components=components, codecs=params["codecs"], info=info)}


Registrar = Callable[..., tuple[Mapping[str, Any], list[str]]]


def register(*, params: Mapping[str, Any], register_candidate: Registrar, bundle: str,
             verdict: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Register the signed bundle (its artifact id) with the gate's verdict; notes say what happened."""
    registration, notes = register_candidate(bundle_id=bundle, verdict=verdict,
                                             summary={"primary": metrics.get("primary", {})})
    return {"registration": {**registration, "pipeline": params["name"], "notes": notes}}
