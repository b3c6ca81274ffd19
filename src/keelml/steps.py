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
from keelml.spec import ContractSpec, EvaluateSpec, ModelSpec, SourceSpec, TuneSpec


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


def tune(*, params: Mapping[str, Any], resources: Mapping[str, int], trial_log: Callable[..., None],
         storage_url: str, train: Any, contract: Mapping[str, Any], train_id: str,
         contract_id: str) -> dict[str, Any]:
    """Search hyperparameters with Optuna (study in the metadata database, every trial logged)."""
    from threadpoolctl import threadpool_limits

    from keelml.data.contract import Contract
    from keelml.model.tune import study_name, tune_model

    model = ModelSpec.model_validate({**params["model"], "threads": resources["threads"]})
    settings = TuneSpec.model_validate(params["tune"])
    budget = ("trials", "timeout_s")  # a bigger budget continues the same study
    identity = {**{k: v for k, v in params.items() if k != "tune"},
                "tune": {k: v for k, v in params["tune"].items() if k not in budget},
                "train": train_id, "contract": contract_id}
    study = study_name(params["pipeline"], identity)
    with threadpool_limits(limits=model.threads):
        summary = tune_model(train, Contract.model_validate(contract), model, settings, metric=params["metric"],
                             storage_url=storage_url, study=study,
                             log=lambda record: trial_log(record, study=study),
                             n_jobs=resources["n_jobs"], threads=model.threads)
    return {"tuning": summary}


def train(*, params: Mapping[str, Any], resources: Mapping[str, int], train: Any,
          contract: Mapping[str, Any], tuning: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fit the preprocessing + estimator pipeline on the training split, with k-fold CV and monitoring.

    With `tuning` (the tune step's summary) the best hyperparameters replace model.params and the
    summary is kept in the report under "tuning".
    """
    from threadpoolctl import threadpool_limits

    from keelml.data.contract import Contract
    from keelml.model.train import train_model

    settings = dict(params)
    metric = settings.pop("metric", None)
    spec = ModelSpec.model_validate({**settings, **resources})
    with threadpool_limits(limits=spec.threads):
        model, report = train_model(train, Contract.model_validate(contract), spec, metric=metric,
                                    params=tuning["best_params"] if tuning else None)
    if tuning:
        report["tuning"] = dict(tuning)
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
