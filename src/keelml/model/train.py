"""Training: seeded cross-validation of the full (preprocessing + estimator) pipeline, monitoring, a final fit."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from keelml.errors import DataError
from keelml.model.catalog import make_pipeline_for
from keelml.model.evaluate import primary_metric
from keelml.model.folds import encode_for_folds, make_folds
from keelml.model.monitor import monitor_training
from keelml.model.preprocess import resolve_preprocessing
from keelml.model.private import is_private, privacy_leaks_as_errors, privacy_record

if TYPE_CHECKING:
    import polars as pl
    from sklearn.pipeline import Pipeline

    from keelml.data.contract import Contract
    from keelml.spec import ModelSpec, PreprocessSpec

# report name -> (sklearn scorer name, sign that makes the reported value the plain metric)
CV_SCORING: dict[str, dict[str, tuple[str, float]]] = {
    "binary": {
        "roc_auc": ("roc_auc", 1.0), "accuracy": ("accuracy", 1.0), "log_loss": ("neg_log_loss", -1.0),
    },
    "multiclass": {"accuracy": ("accuracy", 1.0), "f1_macro": ("f1_macro", 1.0)},
    "regression": {"r2": ("r2", 1.0), "rmse": ("neg_root_mean_squared_error", -1.0)},
}


def train_model(train: pl.DataFrame, contract: Contract, spec: ModelSpec,
                preprocess: PreprocessSpec | None = None, *, params: Mapping[str, Any] | None = None,
                metric: str | None = None, monitor: bool = True) -> tuple[Pipeline, dict[str, Any]]:
    """Cross-validate the pipeline on the training rows, then fit it on all of them.

    `preprocess` is the spec's preprocess section (None: defaults); `params` replaces spec.params
    (tuning passes the best ones); `metric` is the metric learning curves and flags use (default:
    the task's). Returns the fitted pipeline and a JSON-serialisable report: family, params, folds
    and how they were made, per-metric fold scores (test and train; error metrics reported positive
    as log_loss / rmse), means, stds, timings, n_train, fit_gap (mean train minus mean test of the
    primary metric), the resolved preprocessing and, when `monitor`, the monitoring section
    (learning curve, per-iteration curve for boosting, over/under-fitting flags).
    """
    from sklearn.base import clone
    from sklearn.model_selection import cross_validate

    task = contract.task
    hyper = dict(spec.params if params is None else params)
    pipeline = make_pipeline_for(contract, spec.family, hyper, spec.seed, preprocess)
    # X for the final fit (the full pipeline); the folds may hold categorical columns already encoded
    unencoded = make_folds(train, contract, spec)
    fold_pipeline, folds = encode_for_folds(pipeline, unencoded)
    X, y, classes = unencoded.X, folds.y, folds.classes
    scoring = CV_SCORING[task]
    private = is_private(spec.family)
    # Private fits run in this process, where the PrivacyLeakWarning-as-error filter applies.
    n_jobs = spec.n_jobs if spec.n_jobs > 1 and not private else None
    started = time.perf_counter()
    try:
        with privacy_leaks_as_errors(spec.family) if private else contextlib.nullcontext():
            cv = cross_validate(
                fold_pipeline, folds.X, y, cv=folds.splits, scoring={name: s for name, (s, _) in scoring.items()},
                return_train_score=True, return_estimator=monitor and not private, error_score="raise",
                n_jobs=n_jobs,
            )
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
        "n_train": len(y),
        "n_features": len(contract.features),
        "classes": classes,
        "positive_class": classes[1] if task == "binary" and classes else None,
        "preprocess": resolve_preprocessing(preprocess, spec.family, hyper).describe(),
    }
    if private:
        report["privacy"] = privacy_record(model, spec.family, len(folds.splits))
    elif monitor:
        started = time.perf_counter()
        name = primary_metric(task, metric)
        known = (metrics[name]["train"], metrics[name]["test"]) if name in metrics else None
        report["monitoring"] = monitor_training(
            folds, fold_pipeline, cv["estimator"], metric=name, task=task, spec=spec.learning_curve,
            seed=spec.seed, n_jobs=spec.n_jobs, fold_scores=known)
        report["monitoring_seconds"] = time.perf_counter() - started
    return model, _jsonable(report)


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
