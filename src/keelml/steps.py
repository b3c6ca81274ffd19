"""The standard steps: thin, pure wrappers over data/, model/ and registry functions.

Each takes its inputs as arguments and `params` (the JSON part of its cache key) and returns a
dict of outputs. Heavy libraries are imported inside the functions so that a fully cached run
never loads them.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from keelml.engine.executors import Backend, Executor
from keelml.errors import DataError
from keelml.spec import ContractSpec, EvaluateSpec, ModelSpec, ModelTestsSpec, PreprocessSpec, SourceSpec, TuneSpec


def ingest(*, params: Mapping[str, Any], location: str, files: Sequence[tuple[str, str]] | None = None,
           frame: Any = None) -> dict[str, Any]:
    """Read one source into a table, its malformed records into ``rejects``, and per-file counts.

    params carry the source options and the source's digest; ``files`` are a batch's (name, location)
    pairs and ``frame`` an already-read SQL result or DataFrame from the API (both as digested).
    """
    from keelml.data.sources import frame_with_rejects, read_files

    source = SourceSpec.model_validate(params["source"])
    if frame is not None:
        raw, rejects, summary = frame_with_rejects(source, frame, location)
    else:
        raw, rejects, summary = read_files(source, files if files is not None else location)
    return {"raw": raw, "rejects": rejects, "summary": summary}


def _with_reader_rejects(report: Mapping[str, Any], rejects: Any) -> dict[str, Any]:
    """A source's validation report counting the records the reader rejected as quarantined rows."""
    count = 0 if rejects is None else rejects.height
    return {**report, "rows_in": report["rows_in"] + count,
            "rows_quarantined": report["rows_quarantined"] + count, "rows_rejected_by_reader": count}


def validate(*, params: Mapping[str, Any], raw: Any, raw_test: Any = None, rejects: Any = None,
             rejects_test: Any = None, pii_key: bytes | None = None) -> dict[str, Any]:
    """Infer (or load) the contract from training data; split every source into valid and quarantined rows.

    Declared drop_columns are removed first; a dataset-level failure (validation rules) stops the run.
    Records the reader could not parse (``rejects``) join the quarantine; their raw text is withheld
    when the contract marks personal data that must not be stored.
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
    sources = {"train": (raw, rejects)}
    if raw_test is not None:
        sources["test"] = (raw_test, rejects_test)
    outputs: dict[str, Any] = {"contract": contract.model_dump(mode="json")}
    reports: dict[str, Any] = {}
    quarantines: list[Any] = []
    withhold = any(c.pii is not None and c.pii_action != "keep" for c in contract.columns)
    for role, (frame, reader_rejects) in sources.items():
        frame = frame.drop([c for c in params["drop_columns"] if c in frame.columns])
        result = validate_frame(frame, contract, options=rules, dedupe=role == "train", pii_key=pii_key)
        enforce(result.report, role)
        outputs[role] = result.valid
        reports[role] = _with_reader_rejects(result.report, reader_rejects)
        if reader_rejects is not None and withhold and "_raw" in reader_rejects.columns:
            reader_rejects = reader_rejects.with_columns(pl.lit(None, dtype=pl.String).alias("_raw"))
        quarantines.extend(q.with_columns(pl.lit(role).alias("_source"))
                           for q in (result.quarantine, reader_rejects) if q is not None)
    outputs["quarantine"] = pl.concat(quarantines, how="diagonal_relaxed")
    outputs["report"] = reports
    return outputs


def profile(*, params: Mapping[str, Any], train: Any, contract: Mapping[str, Any]) -> dict[str, Any]:
    """Profile the validated training table: the reference later data is compared with."""
    from keelml.data.contract import Contract
    from keelml.data.profile import profile_frame

    return {"profile": profile_frame(train, Contract.model_validate(contract), bins=params["bins"],
                                     top=params["top"])}


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
         contract_id: str, backend: Backend | None = None) -> dict[str, Any]:
    """Search hyperparameters with Optuna (study in the metadata database, every trial logged).

    Trial folds run on the backend's executor (local processes or Dask); it is not part of the key.
    """
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
                             n_jobs=resources["n_jobs"], threads=model.threads,
                             executor=_executor(backend, resources["n_jobs"], model.threads))
    return {"tuning": summary}


def train(*, params: Mapping[str, Any], resources: Mapping[str, int], train: Any,
          contract: Mapping[str, Any], tuning: Mapping[str, Any] | None = None,
          backend: Backend | None = None) -> dict[str, Any]:
    """Fit the preprocessing + estimator pipeline on the training split, with k-fold CV and monitoring.

    With `tuning` (the tune step's summary) the best hyperparameters replace model.params and the
    summary is kept in the report under "tuning".
    """
    from threadpoolctl import threadpool_limits

    from keelml.data.contract import Contract
    from keelml.model.train import train_model

    settings = {k: v for k, v in params.items() if k not in ("preprocess", "preprocess_sources")}
    metric = settings.pop("metric", None)
    spec = ModelSpec.model_validate({**settings, **resources})
    preprocess = PreprocessSpec.model_validate(params.get("preprocess", {}))
    with threadpool_limits(limits=spec.threads):
        model, report = train_model(train, Contract.model_validate(contract), spec, preprocess, metric=metric,
                                    params=tuning["best_params"] if tuning else None,
                                    executor=_executor(backend, spec.n_jobs, spec.threads))
    if tuning:
        report["tuning"] = dict(tuning)
    return {"model": model, "cv": report}


def evaluate(*, params: Mapping[str, Any], resources: Mapping[str, int], model: Any, test: Any,
             contract: Mapping[str, Any]) -> dict[str, Any]:
    """Score the held-out data: metrics with bootstrap intervals and curves, the analysis (slices,
    error analysis, fairness) and the predictions."""
    from threadpoolctl import threadpool_limits

    from keelml.data.contract import Contract
    from keelml.model.evaluate import evaluate_all

    with threadpool_limits(limits=resources["threads"]):
        metrics, analysis, predictions = evaluate_all(model, test, Contract.model_validate(contract),
                                                      EvaluateSpec.model_validate(params))
    return {"metrics": metrics, "analysis": analysis, "predictions": predictions}


def model_tests(*, params: Mapping[str, Any], resources: Mapping[str, int], model: Any, test: Any,
                contract: Mapping[str, Any]) -> dict[str, Any]:
    """Run the spec's model tests (golden, invariance, directional) on the candidate."""
    from threadpoolctl import threadpool_limits

    from keelml.data.contract import Contract
    from keelml.model.model_tests import run_model_tests

    with threadpool_limits(limits=resources["threads"]):
        results = run_model_tests(model, test, Contract.model_validate(contract), ModelTestsSpec.model_validate(params))
    return {"results": results}


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


def compare(*, params: Mapping[str, Any], resources: Mapping[str, int],
            load_reference: Callable[[Mapping[str, Any]], tuple[Any, Mapping[str, Any]]], model: Any, test: Any,
            contract: Mapping[str, Any]) -> dict[str, Any]:
    """The candidate against the production version (params["production"]: name, version, bundle digest)
    on the same held-out rows; `load_reference` verifies that version's bundle before loading its model."""
    reference = params["production"]
    if reference is None:
        return {"comparison": {"reference": None}}
    from threadpoolctl import threadpool_limits

    from keelml.data.contract import Contract
    from keelml.model.compare import compare_models

    production, production_contract = load_reference(reference)
    with threadpool_limits(limits=resources["threads"]):
        result = compare_models(model, production, test, Contract.model_validate(contract),
                                Contract.model_validate(production_contract), metric=params["metric"],
                                bins=params["slice_bins"], min_slice_rows=params["min_slice_rows"],
                                tolerance=params["agreement_tolerance"])
    return {"comparison": {"reference": dict(reference), **result}}


def gate(*, params: Mapping[str, Any], metrics: Mapping[str, Any], analysis: Mapping[str, Any] | None = None,
         tests: Mapping[str, Any] | None = None, privacy: Mapping[str, Any] | None = None,
         robustness: Mapping[str, Any] | None = None, comparison: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Pass or refuse the model: primary metric, fairness, model tests, security limits and the comparison
    with the production version (each with its reason)."""
    from keelml.model.gate import gate_checks, production_checks, verdict_of
    from keelml.security.gate import security_checks

    checks = [*gate_checks(params, metrics, analysis, tests), *security_checks(params, privacy, robustness),
              *production_checks(params, comparison)]
    return {"verdict": verdict_of(checks, min_score_set=params.get("min_score") is not None)}


def privacy(*, params: Mapping[str, Any], resources: Mapping[str, int], model: Any, train: Any, test: Any,
            contract: Mapping[str, Any], backend: Backend | None = None) -> dict[str, Any]:
    """Membership-inference audit (members vs held-out rows) and attribute inference per sensitive column."""
    from threadpoolctl import threadpool_limits

    from keelml.data.contract import Contract
    from keelml.security.membership import privacy_audit

    with threadpool_limits(limits=resources["threads"]):
        report = privacy_audit(model, train, test, Contract.model_validate(contract),
                               sample_size=params["sample_rows"], seed=params["seed"],
                               max_auc=params["max_membership_auc"],
                               flag_advantage=params["attribute_advantage_flag"],
                               executor=_executor(backend, 1, resources["threads"]))
    return {"report": report}


def robustness(*, params: Mapping[str, Any], resources: Mapping[str, int], model: Any, train: Any, test: Any,
               contract: Mapping[str, Any], backend: Backend | None = None) -> dict[str, Any]:
    """Prediction flip rate under contract-valid perturbations; optionally a black-box attack."""
    from threadpoolctl import threadpool_limits

    from keelml.data.contract import Contract
    from keelml.security.robustness import robustness_audit

    with threadpool_limits(limits=resources["threads"]):
        report = robustness_audit(model, train, test, Contract.model_validate(contract),
                                  noise_scale=params["noise_scale"], swap_fraction=params["swap_fraction"],
                                  sample_size=params["sample_rows"], seed=params["seed"],
                                  max_flip_rate=params["max_flip_rate"], attack=params["attack"],
                                  attack_rows=params["attack_rows"],
                                  executor=_executor(backend, 1, resources["threads"]))
    return {"report": report}


def _executor(backend: Backend | None, n_jobs: int, threads: int) -> Executor:
    """Where a step's tasks run: the run's backend (local by default) for n_jobs local processes."""
    return (backend or Backend()).executor(n_jobs=n_jobs, threads=threads)


def register(*, params: Mapping[str, Any], sign: Callable[..., dict[str, Any]], model: str, contract: str,
             metrics: str, cv: str, verdict: str, profile: str, onnx: str | None = None, engine: str | None = None,
             holdout: str | None = None, predictions: str | None = None) -> dict[str, Any]:
    """Assemble the signed bundle manifest (component digests, environment, lineage facts).

    Besides the model and its facts, the bundle names the training profile (the drift reference), the
    serving engine description and ONNX graph, and the held-out rows with the predictions recorded
    at evaluation (for infra validation).
    """
    import importlib.metadata as md

    def version_of(pkg: str) -> str:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return "not installed"

    components = {"model": model, "contract": contract, "metrics": metrics, "cv": cv, "verdict": verdict,
                  "profile": profile}
    optional = {"onnx": onnx, "engine": engine, "holdout": holdout, "predictions": predictions}
    components.update({k: v for k, v in optional.items() if v is not None})
    environment = {"python": platform.python_version(),
                   **{p: version_of(p) for p in ("keelml", "scikit-learn", "skops", "numpy", "polars",
                                                 "onnxruntime")}}
    info = {"data_digests": params["data_digests"], "environment": environment,
            **({"parameters": params["parameters"]} if "parameters" in params else {})}
    return {"bundle": sign(name=params["name"], components=components, codecs=params["codecs"], info=info)}
