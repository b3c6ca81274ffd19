"""The standard steps: thin, pure wrappers over data/, model/ and registry functions.

Each takes its inputs as arguments and `params` (the JSON part of its cache key) and returns a
dict of outputs. Heavy libraries are imported inside the functions so that a fully cached run
never loads them.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping
from typing import Any

from keelml.errors import DataError
from keelml.spec import ContractSpec, EvaluateSpec, ModelSpec, SourceSpec


def ingest(*, params: Mapping[str, Any], location: str) -> dict[str, Any]:
    """Read one source into a table (params carry the source options and the file digest)."""
    from keelml.data.sources import read_source

    return {"raw": read_source(SourceSpec.model_validate(params["source"]), location)}


def validate(*, params: Mapping[str, Any], raw: Any, raw_test: Any = None) -> dict[str, Any]:
    """Infer (or load) the contract from training data; split every source into valid and quarantined rows."""
    import polars as pl

    from keelml.data.contract import contract_from_yaml
    from keelml.data.infer import infer_contract
    from keelml.data.validate import validate_frame

    if params.get("declared_contract"):
        contract = contract_from_yaml(params["declared_contract"], source=params["declared_contract_path"])
        if contract.target != params["target"]:
            raise DataError(
                f"{params['declared_contract_path']} declares target {contract.target!r} "
                f"but data.target is {params['target']!r}",
                expected="the same target column in the spec and the contract",
                fix="make data.target and the contract's target agree",
            )
    else:
        contract = infer_contract(
            raw, target=params["target"], options=ContractSpec.model_validate(params["options"]),
            drop_columns=params["drop_columns"], sensitive_columns=params["sensitive_columns"],
        )
    result = validate_frame(raw, contract)
    outputs: dict[str, Any] = {"contract": contract.model_dump(mode="json"), "train": result.valid}
    reports = {"train": result.report}
    quarantines = [result.quarantine.with_columns(pl.lit("train").alias("_source"))]
    if raw_test is not None:
        test_result = validate_frame(raw_test, contract)
        outputs["test"] = test_result.valid
        reports["test"] = test_result.report
        quarantines.append(test_result.quarantine.with_columns(pl.lit("test").alias("_source")))
    outputs["quarantine"] = pl.concat(quarantines, how="diagonal_relaxed")
    outputs["report"] = reports
    return outputs


def split(*, params: Mapping[str, Any], train: Any, test: Any = None) -> dict[str, Any]:
    """Hold out a stratified test set, unless a separate test source was given."""
    from keelml.data.split import split_frame

    if test is not None:
        return {"train": train, "test": test}
    fit, held_out = split_frame(train, target=params["target"], test_size=params["test_size"],
                                stratify=params["stratify"], seed=params["seed"])
    return {"train": fit, "test": held_out}


def train(*, params: Mapping[str, Any], resources: Mapping[str, int], train: Any,
          contract: Mapping[str, Any]) -> dict[str, Any]:
    """Fit the preprocessing + estimator pipeline on the training split, with k-fold CV."""
    from threadpoolctl import threadpool_limits

    from keelml.data.contract import Contract
    from keelml.model.train import train_model

    spec = ModelSpec.model_validate({**params, **resources})
    with threadpool_limits(limits=spec.threads):
        model, report = train_model(train, Contract.model_validate(contract), spec)
    return {"model": model, "cv": report}


def evaluate(*, params: Mapping[str, Any], resources: Mapping[str, int], model: Any, test: Any,
             contract: Mapping[str, Any]) -> dict[str, Any]:
    """Score the held-out data: metrics with a bootstrap interval, and the predictions."""
    from threadpoolctl import threadpool_limits

    from keelml.data.contract import Contract
    from keelml.model.evaluate import evaluate_model

    with threadpool_limits(limits=resources["threads"]):
        metrics, predictions = evaluate_model(model, test, Contract.model_validate(contract),
                                              EvaluateSpec.model_validate(params))
    return {"metrics": metrics, "predictions": predictions}


def export(*, params: Mapping[str, Any], resources: Mapping[str, int], model: Any, test: Any,
           contract: Mapping[str, Any]) -> dict[str, Any]:
    """The serving fast path: an ONNX graph checked against scikit-learn on the held-out rows (or why not)."""
    from threadpoolctl import threadpool_limits

    from keelml.data.contract import Contract
    from keelml.model.export import export_fast_path
    from keelml.model.features import to_xy

    parsed = Contract.model_validate(contract)
    X, _ = to_xy(test, parsed)
    with threadpool_limits(limits=resources["threads"]):
        graph, engine = export_fast_path(model, X, parsed)
    return {"onnx": graph, "engine": {**engine, "onnx_extra_installed": params["onnx"]}}


def gate(*, params: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Pass or refuse the model on its primary metric (with the reason either way)."""
    primary = metrics["primary"]
    floor = params.get("min_score")
    value = float(primary["value"])
    if floor is None:
        return {"verdict": {"passed": True, "reason": "no gate configured (gate.min_score unset)",
                            "checks": []}}
    higher_is_better = bool(primary.get("greater_is_better", True))
    if higher_is_better:
        passed = value >= float(floor)
        reason = f"{primary['name']} {value:.4f} {'>=' if passed else '<'} required {float(floor):.4f}"
    else:
        passed = value <= float(floor)
        reason = f"{primary['name']} {value:.4f} {'<=' if passed else '>'} allowed {float(floor):.4f}"
    checks = [{"metric": primary["name"], "value": value, "limit": float(floor),
               "higher_is_better": higher_is_better, "passed": passed}]
    return {"verdict": {"passed": passed, "reason": reason, "checks": checks}}


def register(*, params: Mapping[str, Any], sign: Callable[..., dict[str, Any]], model: str, contract: str,
             metrics: str, cv: str, verdict: str, onnx: str | None = None, engine: str | None = None,
             holdout: str | None = None, predictions: str | None = None) -> dict[str, Any]:
    """Assemble the signed bundle manifest (component digests, environment, lineage facts).

    Besides the model and its facts, the bundle names the serving engine description and ONNX
    graph, and the held-out rows with the predictions recorded at evaluation (for infra validation).
    """
    import importlib.metadata as md

    def version_of(pkg: str) -> str:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return "not installed"

    components = {"model": model, "contract": contract, "metrics": metrics, "cv": cv, "verdict": verdict}
    optional = {"onnx": onnx, "engine": engine, "holdout": holdout, "predictions": predictions}
    components.update({k: v for k, v in optional.items() if v is not None})
    environment = {"python": platform.python_version(),
                   **{p: version_of(p) for p in ("keelml", "scikit-learn", "skops", "numpy", "polars",
                                                 "onnxruntime")}}
    info = {"data_digests": params["data_digests"], "environment": environment}
    return {"bundle": sign(name=params["name"], components=components, codecs=params["codecs"], info=info)}
