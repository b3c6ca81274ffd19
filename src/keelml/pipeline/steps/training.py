"""Training steps: tune hyperparameters, fit the model, export the ONNX fast path.

What a step computes with (polars, scikit-learn, skops, and the keelml modules that load them) is
imported inside the step: a fully cached run decodes no table and fits nothing, so it must not pay for
importing them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from threadpoolctl import threadpool_limits

from keelml.data.contract import Contract
from keelml.engine.executors import Backend, Executor
from keelml.model.export import export_fast_path
from keelml.spec.model import ModelSpec, PreprocessSpec, TuneSpec


def tune(*, params: Mapping[str, Any], resources: Mapping[str, int], trial_log: Callable[..., None],
         trial_storage: str, train: Any, contract: Mapping[str, Any], train_id: str,
         contract_id: str, backend: Backend | None = None) -> dict[str, Any]:
    """Search hyperparameters with Optuna (study in the metadata database, every trial logged).

    The summary (`tuning`) holds no duration: the study's and each trial's are the `timings` output.

    Trial folds run on the backend's executor (local processes or Dask); it is not part of the key.
    """
    from keelml.model.tune import split_timings, study_name, tune_model

    model = ModelSpec.model_validate({**params["model"], "threads": resources["threads"]})
    settings = TuneSpec.model_validate(params["tune"])
    budget = ("trials", "timeout_s")  # a bigger budget continues the same study
    identity = {**{k: v for k, v in params.items() if k != "tune"},
                "tune": {k: v for k, v in params["tune"].items() if k not in budget},
                "train": train_id, "contract": contract_id}
    study = study_name(params["pipeline"], identity)
    with threadpool_limits(limits=model.threads):
        summary = tune_model(train, Contract.model_validate(contract), model, settings, metric=params["metric"],
                             storage_url=trial_storage, study=study,
                             log=lambda record: trial_log(record, study=study),
                             n_jobs=resources["n_jobs"], threads=model.threads,
                             executor=executor_for(backend, resources["n_jobs"], model.threads))
    tuning, timings = split_timings(summary)  # durations apart: the summary is the same on every run
    return {"tuning": tuning, "timings": timings}


def train(*, params: Mapping[str, Any], resources: Mapping[str, int], train: Any,
          contract: Mapping[str, Any], tuning: Mapping[str, Any] | None = None,
          backend: Backend | None = None) -> dict[str, Any]:
    """Fit the preprocessing + estimator pipeline on the training split, with k-fold CV and monitoring.

    With `tuning` (the tune step's summary) the best hyperparameters replace model.params and the
    summary is kept in the report under "tuning". The report (`cv`, a bundle component) holds no
    wall-clock figure: those are the `timings` output, which no bundle names.
    """
    from keelml.model.train import split_timings, train_model

    settings = {k: v for k, v in params.items() if k not in ("preprocess", "preprocess_sources")}
    metric = settings.pop("metric", None)
    spec = ModelSpec.model_validate({**settings, **resources})
    preprocess = PreprocessSpec.model_validate(params.get("preprocess", {}))
    with threadpool_limits(limits=spec.threads):
        model, report = train_model(train, Contract.model_validate(contract), spec, preprocess, metric=metric,
                                    params=tuning["best_params"] if tuning else None,
                                    executor=executor_for(backend, spec.n_jobs, spec.threads))
    report, timings = split_timings(report)  # timings apart: the same model gives the same report (and bundle)
    if tuning:
        report["tuning"] = dict(tuning)
    return {"model": model, "cv": report, "timings": timings}


def export(*, params: Mapping[str, Any], resources: Mapping[str, int], model: Any, test: Any,
           contract: Mapping[str, Any]) -> dict[str, Any]:
    """The serving fast path: an ONNX graph checked against scikit-learn on the held-out rows (or why not)."""
    from keelml.model.features import to_xy

    parsed = Contract.model_validate(contract)
    X, _ = to_xy(test, parsed)
    with threadpool_limits(limits=resources["threads"]):
        graph, engine = export_fast_path(model, X, parsed)
    return {"onnx": graph, "engine": {**engine, "onnx_extra_installed": params["onnx"]}}


def executor_for(backend: Backend | None, n_jobs: int, threads: int) -> Executor:
    """Where a step's tasks run: the run's backend (local by default) for n_jobs local processes."""
    return (backend or Backend()).executor(n_jobs=n_jobs, threads=threads)
