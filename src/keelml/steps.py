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


def validate(*, params: Mapping[str, Any], raw: Any, raw_test: Any = None,
             pii_key: bytes | None = None) -> dict[str, Any]:
    """Infer (or load) the contract from training data; split every source into valid and quarantined rows.

    Declared drop_columns are removed first; a dataset-level failure (validation rules) stops the run.
    """
    import polars as pl

    from keelml.data.anomalies import enforce
    from keelml.data.contract import contract_from_yaml
    from keelml.data.infer import infer_contract
    from keelml.data.validate import validate_frame
    from keelml.spec import ValidationSpec

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
    rules = ValidationSpec.model_validate(params.get("validation", {}))
    sources = {"train": raw} if raw_test is None else {"train": raw, "test": raw_test}
    outputs: dict[str, Any] = {"contract": contract.model_dump(mode="json")}
    reports: dict[str, Any] = {}
    quarantines = []
    for role, frame in sources.items():
        frame = frame.drop([c for c in params["drop_columns"] if c in frame.columns])
        result = validate_frame(frame, contract, options=rules, dedupe=role == "train", pii_key=pii_key)
        enforce(result.report, role)
        outputs[role] = result.valid
        reports[role] = result.report
        quarantines.append(result.quarantine.with_columns(pl.lit(role).alias("_source")))
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


def gate(*, params: Mapping[str, Any], metrics: Mapping[str, Any], privacy: Mapping[str, Any] | None = None,
         robustness: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Pass or refuse the model on its primary metric and the configured security limits (with the reasons)."""
    from keelml.security.gate import security_checks

    primary = metrics["primary"]
    floor = params.get("min_score")
    value = float(primary["value"])
    checks: list[dict[str, Any]] = []
    reasons: list[str] = []
    if floor is not None:
        higher_is_better = bool(primary.get("greater_is_better", True))
        if higher_is_better:
            passed = value >= float(floor)
            reasons.append(f"{primary['name']} {value:.4f} {'>=' if passed else '<'} required {float(floor):.4f}")
        else:
            passed = value <= float(floor)
            reasons.append(f"{primary['name']} {value:.4f} {'<=' if passed else '>'} allowed {float(floor):.4f}")
        checks.append({"metric": primary["name"], "value": value, "limit": float(floor),
                       "higher_is_better": higher_is_better, "passed": passed})
    for check in security_checks(params, privacy, robustness):
        reasons.append(check.pop("reason"))
        checks.append(check)
    if not checks:
        return {"verdict": {"passed": True, "reason": "no gate configured (gate.min_score unset)",
                            "checks": []}}
    passed = all(c["passed"] for c in checks)
    shown = reasons if passed else [r for r, c in zip(reasons, checks, strict=True) if not c["passed"]]
    return {"verdict": {"passed": passed, "reason": "; ".join(shown), "checks": checks}}


def privacy(*, params: Mapping[str, Any], resources: Mapping[str, int], model: Any, train: Any, test: Any,
            contract: Mapping[str, Any]) -> dict[str, Any]:
    """Membership-inference audit (members vs held-out rows) and attribute inference per sensitive column."""
    from threadpoolctl import threadpool_limits

    from keelml.data.contract import Contract
    from keelml.security.membership import privacy_audit

    with threadpool_limits(limits=resources["threads"]):
        report = privacy_audit(model, train, test, Contract.model_validate(contract),
                               sample_size=params["sample_rows"], seed=params["seed"],
                               max_auc=params["max_membership_auc"],
                               flag_advantage=params["attribute_advantage_flag"])
    return {"report": report}


def robustness(*, params: Mapping[str, Any], resources: Mapping[str, int], model: Any, train: Any, test: Any,
               contract: Mapping[str, Any]) -> dict[str, Any]:
    """Prediction flip rate under contract-valid perturbations; optionally a black-box attack."""
    from threadpoolctl import threadpool_limits

    from keelml.data.contract import Contract
    from keelml.security.robustness import robustness_audit

    with threadpool_limits(limits=resources["threads"]):
        report = robustness_audit(model, train, test, Contract.model_validate(contract),
                                  noise_scale=params["noise_scale"], swap_fraction=params["swap_fraction"],
                                  sample_size=params["sample_rows"], seed=params["seed"],
                                  max_flip_rate=params["max_flip_rate"], attack=params["attack"],
                                  attack_rows=params["attack_rows"])
    return {"report": report}


def register(*, params: Mapping[str, Any], sign: Callable[..., dict[str, Any]], model: str, contract: str,
             metrics: str, cv: str, verdict: str) -> dict[str, Any]:
    """Assemble the signed bundle manifest (component digests, environment, lineage facts)."""
    import importlib.metadata as md

    def version_of(pkg: str) -> str:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return "not installed"

    components = {"model": model, "contract": contract, "metrics": metrics, "cv": cv, "verdict": verdict}
    environment = {"python": platform.python_version(),
                   **{p: version_of(p) for p in ("keelml", "scikit-learn", "skops", "numpy", "polars")}}
    info = {"data_digests": params["data_digests"], "environment": environment}
    return {"bundle": sign(name=params["name"], components=components, codecs=params["codecs"], info=info)}
