"""Training: seeded cross-validation of the full (preprocessing + estimator) pipeline, then a final fit."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from keelml.errors import DataError
from keelml.model.catalog import make_pipeline_for
from keelml.model.evaluate import primary_metric
from keelml.model.features import to_labelled_xy
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
                preprocess: PreprocessSpec | None = None) -> tuple[Pipeline, dict[str, Any]]:
    """Cross-validate the pipeline on the training rows, then fit it on all of them.

    Returns the fitted pipeline and a JSON-serialisable report: family, params, folds, per-metric
    fold scores (test and train; error metrics reported positive as log_loss / rmse), means, stds,
    timings, n_train, fit_gap (mean train minus mean test of the primary metric) and the
    resolved preprocessing.
    """
    from sklearn.base import clone
    from sklearn.model_selection import KFold, StratifiedKFold, cross_validate

    task = contract.task
    X, y = to_labelled_xy(train, contract, what="training")
    pipeline = make_pipeline_for(contract, spec.family, spec.params, spec.seed, preprocess)
    classes: list[str] | None = None
    splitter: KFold | StratifiedKFold
    if task == "regression":
        folds = min(spec.cv_folds, len(y))
        if folds < 2:
            raise DataError(f"only {len(y)} training row(s)", expected="at least 2 rows to cross-validate",
                            fix="give more training data")
        splitter = KFold(n_splits=folds, shuffle=True, random_state=spec.seed)
    else:
        classes = _check_classes(y, contract)
        folds = min(spec.cv_folds, *(int(np.sum(y == c)) for c in classes))
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=spec.seed)
    scoring = CV_SCORING[task]
    private = is_private(spec.family)
    # Private fits run in this process, where the PrivacyLeakWarning-as-error filter applies.
    n_jobs = spec.n_jobs if spec.n_jobs > 1 and not private else None
    started = time.perf_counter()
    try:
        with privacy_leaks_as_errors(spec.family) if private else contextlib.nullcontext():
            cv = cross_validate(
                pipeline, X, y, cv=splitter, scoring={name: s for name, (s, _) in scoring.items()},
                return_train_score=True, error_score="raise", n_jobs=n_jobs,
            )
            cv_seconds = time.perf_counter() - started
            started = time.perf_counter()
            model: Pipeline = clone(pipeline).fit(X, y)
    except (ValueError, TypeError) as exc:  # parameters that pass validation but not fitting
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"training {spec.family} failed: {first}",
            expected="hyperparameters that work together and with this data",
            fix=f"check model.params {dict(spec.params)!r} against the scikit-learn documentation",
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
        "params": _jsonable(_used_params(model.named_steps["model"], spec.params)),
        "seed": spec.seed,
        "folds": folds,
        "requested_folds": spec.cv_folds,
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
        "preprocess": resolve_preprocessing(preprocess, spec.family, spec.params).describe(),
    }
    if private:
        report["privacy"] = privacy_record(model, spec.family, folds)
    return model, _jsonable(report)


def _check_classes(y: np.ndarray, contract: Contract) -> list[str]:
    """The contract's classes, after checking the target fits them and each has >= 2 rows."""
    seen = sorted({str(v) for v in y.tolist()})
    classes = [str(c) for c in contract.classes] if contract.classes else seen
    unknown = [c for c in seen if c not in classes]
    if unknown:
        raise DataError(
            f"the target has value(s) not in the contract's classes: {', '.join(map(repr, unknown))}",
            expected="target values among: " + ", ".join(classes),
            fix="fix the target values, or re-infer the contract",
        )
    if classes != sorted(classes):
        raise DataError(  # sklearn orders labels by sorting; the positive class is classes[1]
            f"the contract's classes {classes} are not in sorted order",
            expected=f"classes: {sorted(classes)}",
            fix="sort the classes list in the contract (or re-infer the contract)",
        )
    if contract.task == "binary" and len(classes) != 2:
        raise DataError(
            f"a binary task needs exactly 2 classes, the contract lists {len(classes)}: {classes}",
            expected="two target classes",
            fix="set task: multiclass, or fix the target column",
        )
    if len(classes) < 2:
        raise DataError(f"only one class ({classes}) to learn", expected="at least 2 target classes",
                        fix="check the target column")
    rare = {c: int(np.sum(y == c)) for c in classes if np.sum(y == c) < 2}
    if rare:
        shown = ", ".join(f"{c!r} ({n} row(s))" for c, n in rare.items())
        raise DataError(
            f"too few training rows for class(es) {shown} to cross-validate",
            expected="at least 2 training rows of every class",
            fix="collect more rows of those classes, or merge/drop them before training",
        )
    return classes


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
