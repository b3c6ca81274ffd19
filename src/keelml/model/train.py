"""Training: seeded cross-validation of the full (preprocessing + estimator) pipeline, monitoring, a final fit."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import get_scorer

from keelml.engine.executors import Executor, InProcess, ProcessPool
from keelml.errors import DataError
from keelml.model.catalog import make_pipeline_for
from keelml.model.folds import encode_for_folds, make_folds
from keelml.model.learning_curves import monitor_training
from keelml.model.metrics import primary_metric
from keelml.model.preprocess import resolve_preprocessing
from keelml.model.private import is_private, privacy_leaks_as_errors, privacy_record

if TYPE_CHECKING:
    import polars as pl
    from sklearn.pipeline import Pipeline

    from keelml.data.contract import Contract
    from keelml.model.folds import Folds
    from keelml.spec.model import ModelSpec, PreprocessSpec

# report name -> (sklearn scorer name, sign that makes the reported value the plain metric)
CV_SCORING: dict[str, dict[str, tuple[str, float]]] = {
    "binary": {
        "roc_auc": ("roc_auc", 1.0), "accuracy": ("accuracy", 1.0), "log_loss": ("neg_log_loss", -1.0),
    },
    "multiclass": {"accuracy": ("accuracy", 1.0), "f1_macro": ("f1_macro", 1.0)},
    "regression": {"r2": ("r2", 1.0), "rmse": ("neg_root_mean_squared_error", -1.0)},
}


TIMINGS = ("cv_seconds", "cv_fit_seconds_mean", "fit_seconds", "monitoring_seconds")


def split_timings(report: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the training report without its wall-clock timings, the timings).

    The same fit gives the same report on every run and in every store; only its timings differ, so
    the pipeline keeps them apart (the train step's `timings` output) from the facts a bundle signs.
    """
    return ({k: v for k, v in report.items() if k not in TIMINGS},
            {k: report[k] for k in TIMINGS if k in report})


def train_model(train: pl.DataFrame, contract: Contract, spec: ModelSpec,
                preprocess: PreprocessSpec | None = None, *, params: Mapping[str, Any] | None = None,
                metric: str | None = None, monitor: bool = True,
                executor: Executor | None = None) -> tuple[Pipeline, dict[str, Any]]:
    """Cross-validate the pipeline on the training rows, then fit it on all of them.

    `preprocess` is the spec's preprocess section (None: defaults); `params` replaces spec.params
    (tuning passes the best ones); `metric` is the metric learning curves and flags use (default:
    the task's). Returns the fitted pipeline and a JSON-serialisable report: family, params, folds
    and how they were made, per-metric fold scores (test and train; error metrics reported positive
    as log_loss / rmse), means, stds, timings, n_train, fit_gap (mean train minus mean test of the
    primary metric), the resolved preprocessing and, when `monitor`, the monitoring section
    (learning curve, per-iteration curve for boosting, over/under-fitting flags).

    The folds and learning-curve fits run on `executor` (default: this process, or model.n_jobs
    local processes); the figures are the same on every executor.
    """
    task = contract.task
    hyper = dict(spec.params if params is None else params)
    pipeline = make_pipeline_for(contract, spec.family, hyper, spec.seed, preprocess)
    # X for the final fit (the full pipeline); the folds may hold categorical columns already encoded
    unencoded = make_folds(train, contract, spec)
    fold_pipeline, folds = encode_for_folds(pipeline, unencoded)
    X, y = unencoded.X, folds.y
    scoring = CV_SCORING[task]
    private = is_private(spec.family)
    # Private fits run in this process, where the PrivacyLeakWarning-as-error filter applies.
    if private or executor is None:
        executor = InProcess() if private or spec.n_jobs <= 1 else ProcessPool(spec.n_jobs, spec.threads)
    keep = monitor and not private
    scorers = {name: s for name, (s, _) in scoring.items()}
    with executor.session((fold_pipeline, folds.X, y)) as pool:
        started = time.perf_counter()
        try:
            with privacy_leaks_as_errors(spec.family) if private else contextlib.nullcontext():
                cv = _collect(pool.map(cv_fold, [(fit, val, scorers, keep) for fit, val in folds.splits]))
                cv_seconds = time.perf_counter() - started
                started = time.perf_counter()
                model: Pipeline = clone(pipeline).fit(X, y)
        except (ValueError, TypeError) as exc:  # parameters that pass validation but not fitting
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(
                f"training {spec.family} failed: {first}",
                expected="hyperparameters that work together and with this data",
                fix=f"check model.params {hyper!r} against the scikit-learn documentation",
            ) from exc
        fit_seconds = time.perf_counter() - started
        report = _report(model, contract, spec, preprocess, hyper, folds, cv, cv_seconds, fit_seconds)
        if private:
            report["privacy"] = privacy_record(model, spec.family, len(folds.splits))
        elif monitor:
            started = time.perf_counter()
            metrics = report["cv"]
            name = primary_metric(task, metric)
            known = (metrics[name]["train"], metrics[name]["test"]) if name in metrics else None
            report["monitoring"] = monitor_training(
                folds, fold_pipeline, cv["estimator"], metric=name, task=task, spec=spec.learning_curve,
                seed=spec.seed, pool=pool, fold_scores=known)
            report["monitoring_seconds"] = time.perf_counter() - started
    return model, _jsonable(report)


def cv_fold(shared: tuple[Pipeline, Any, Any], fit_idx: Any, val_idx: Any, scoring: Mapping[str, str],
            keep: bool) -> dict[str, Any]:
    """One cross-validation fold (an executor task): fit a clone on the fold's rows, score both sides.

    `shared` is (pipeline, X, y); `scoring` maps report names to scikit-learn scorer names. The
    same scorers as `cross_validate`, so the figures are the same as before.
    """
    pipeline, X, y = shared
    started = time.perf_counter()
    fitted = clone(pipeline).fit(X.iloc[fit_idx], y[fit_idx])
    fit_time = time.perf_counter() - started
    scored: dict[str, Any] = {"fit_time": fit_time, "estimator": fitted if keep else None}
    for name, scorer in scoring.items():
        score = get_scorer(scorer)
        scored[f"test_{name}"] = float(score(fitted, X.iloc[val_idx], y[val_idx]))
        scored[f"train_{name}"] = float(score(fitted, X.iloc[fit_idx], y[fit_idx]))
    return scored


def _collect(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-fold results as cross_validate lays them out: one list per key, in fold order."""
    return {key: [fold[key] for fold in folds] for key in folds[0]}


def _report(model: Pipeline, contract: Contract, spec: ModelSpec, preprocess: PreprocessSpec | None,
            hyper: Mapping[str, Any], folds: Folds, cv: Mapping[str, Any], cv_seconds: float,
            fit_seconds: float) -> dict[str, Any]:
    task, classes, scoring = contract.task, folds.classes, CV_SCORING[contract.task]
    if classes is not None and [str(c) for c in model.classes_] != classes:
        raise DataError(  # guards the positive class being contract.classes[1]
            f"the model's class order {list(model.classes_)} differs from the contract's {classes}",
            expected="contract.classes listed in sorted order, each present in the training data",
            fix="sort the classes list in the contract (or re-infer the contract)",
        )
    primary = primary_metric(task, None)
    metrics: dict[str, dict[str, Any]] = {}
    for name, (_, sign) in scoring.items():
        test = [sign * float(v) for v in cv[f"test_{name}"]]
        fold_train = [sign * float(v) for v in cv[f"train_{name}"]]
        metrics[name] = {
            "test": test,
            "train": fold_train,
            "mean": float(np.mean(test)),
            "std": float(np.std(test)),
            "train_mean": float(np.mean(fold_train)),
            "train_std": float(np.std(fold_train)),
        }
    report: dict[str, Any] = {
        "family": spec.family,
        "task": task,
        "params": _jsonable(_used_params(model.named_steps["model"], hyper)),
        "seed": spec.seed,
        "folds": len(folds.splits),
        "requested_folds": spec.cv_folds,
        "splitter": folds.describe(),
        "primary_metric": primary,
        "cv": metrics,
        "fit_gap": metrics[primary]["train_mean"] - metrics[primary]["mean"],
        "cv_seconds": cv_seconds,
        "cv_fit_seconds_mean": float(np.mean(cv["fit_time"])),
        "fit_seconds": fit_seconds,
        "n_train": len(folds.y),
        "n_features": len(contract.features),
        "classes": classes,
        "positive_class": classes[1] if task == "binary" and classes else None,
        "preprocess": resolve_preprocessing(preprocess, spec.family, hyper).describe(),
    }
    return report


def _used_params(estimator: Any, requested: Mapping[str, Any]) -> dict[str, Any]:
    """The requested hyperparameters as the estimator actually holds them."""
    actual = estimator.get_params(deep=False)
    return {name: actual[name] for name in requested}


def _jsonable(value: Any) -> Any:
    """Plain JSON types only: numpy scalars unwrapped, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)
