"""Monitoring training: learning curves, per-iteration validation scores, over- and under-fitting flags.

Everything is measured on the cross-validation folds: the fold models trained on all of a fold's
training rows give the full-size point and the per-iteration curve (boosting models); models
trained on fractions of those rows give the rest of the learning curve. A dummy model (class
shares or the mean) gives the baseline that skill is measured from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sklearn.base import clone

from keelml.engine.executors import InProcess, Pool, run_all
from keelml.model.scoring import baseline_output, greater_is_better, metric_value, predictions, skill

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from keelml.model.folds import Folds
    from keelml.spec.model import LearningCurveSpec

MAX_CHECKPOINTS = 40  # iterations scored per fold for the per-iteration curve
MAX_CURVE_ROWS = 4000  # validation rows, and training rows, scored per fold for that curve (seeded sample)


def monitor_training(folds: Folds, pipeline: Pipeline, fold_models: Sequence[Pipeline], *, metric: str,
                     task: str, spec: LearningCurveSpec, seed: int, pool: Pool | None = None,
                     fold_scores: tuple[list[float], list[float]] | None = None) -> dict[str, Any]:
    """The `monitoring` part of the training report (JSON-ready).

    `fold_scores` are the fold models' (train, validation) scores in `metric` when cross-validation
    already computed them; otherwise the fold models predict again. The learning-curve fits run on
    `pool`, an executor session whose shared data is (pipeline, folds.X, folds.y) (default: here).
    """
    classes = folds.classes
    full_train: list[float] = []
    full_val: list[float] = []
    base_train: list[float] = []
    base_val: list[float] = []
    for (fit_idx, val_idx), model in zip(folds.splits, fold_models, strict=True):
        y_fit, y_val = folds.y[fit_idx], folds.y[val_idx]
        if fold_scores is None:
            full_train.append(metric_value(metric, task, classes, y_fit,
                                           predictions(model, folds.X.iloc[fit_idx], task)))
            full_val.append(metric_value(metric, task, classes, y_val,
                                         predictions(model, folds.X.iloc[val_idx], task)))
        base_train.append(metric_value(metric, task, classes, y_fit, baseline_output(task, classes, y_fit, len(y_fit))))
        base_val.append(metric_value(metric, task, classes, y_val, baseline_output(task, classes, y_fit, len(y_val))))
    if fold_scores is not None:
        full_train, full_val = list(fold_scores[0]), list(fold_scores[1])
    train_mean, val_mean = _mean(full_train), _mean(full_val)
    baseline = {"train": _mean(base_train), "validation": _mean(base_val)}
    # skill relative to the dummy on the same rows: validation against the validation baseline
    skills = {"train": skill(metric, train_mean, baseline["train"]),
              "validation": skill(metric, val_mean, baseline["validation"])}
    curve = _learning_curve(folds, pipeline, full_train, full_val, metric=metric, task=task,
                            sizes=spec.sizes, seed=seed, pool=pool) if spec.sizes else None
    iterations = _iteration_curve(folds, fold_models, metric=metric, task=task)
    flags, notes = _flags(metric, train_mean, val_mean, skills, spec, curve)
    report: dict[str, Any] = _clean({
        "metric": metric,
        "greater_is_better": greater_is_better(metric),
        "train": {"folds": full_train, "mean": train_mean},
        "validation": {"folds": full_val, "mean": val_mean},
        "baseline": {"model": "class shares" if classes else "mean of the target", **baseline},
        "skill": {**skills, "gap": None if None in skills.values()
                  else float(skills["train"] - skills["validation"])},  # type: ignore[operator]
        "flags": flags,
        "thresholds": {"overfit_gap": spec.overfit_gap, "underfit_skill": spec.underfit_skill},
        "notes": notes,
        "learning_curve": curve,
        "iterations": iterations,
    })
    return report


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _subsample(fit_idx: npt.NDArray[np.intp], fraction: float, kind: str, seed: int) -> npt.NDArray[np.intp]:
    m = max(2, round(len(fit_idx) * fraction))
    if kind == "time":
        return fit_idx[-m:]  # the most recent rows before the validation block
    return np.sort(np.random.default_rng(seed).permutation(fit_idx)[:m])


def learning_point(shared: tuple[Pipeline, Any, npt.NDArray[Any]], fit_idx: npt.NDArray[np.intp],
                   val_idx: npt.NDArray[np.intp], metric: str, task: str,
                   classes: list[str] | None) -> tuple[float, float]:
    """One learning-curve fit (an executor task): (train, validation) score of a clone fitted on fit_idx.

    `shared` is (pipeline, X, y).
    """
    pipeline, X, y = shared
    if classes is not None and len(set(np.asarray(y[fit_idx]).astype(str).tolist())) < len(classes):
        return float("nan"), float("nan")  # too few rows to hold every class
    model = clone(pipeline).fit(X.iloc[fit_idx], y[fit_idx])
    return (metric_value(metric, task, classes, y[fit_idx], predictions(model, X.iloc[fit_idx], task)),
            metric_value(metric, task, classes, y[val_idx], predictions(model, X.iloc[val_idx], task)))


def _learning_curve(folds: Folds, pipeline: Pipeline, full_train: list[float], full_val: list[float], *,
                    metric: str, task: str, sizes: Sequence[float], seed: int,
                    pool: Pool | None) -> dict[str, Any]:
    partial = [s for s in sizes if s < 1.0]
    jobs = [(s, i, _subsample(fit_idx, s, folds.kind, seed + i), val_idx)
            for s in partial for i, (fit_idx, val_idx) in enumerate(folds.splits)]
    tasks = [(sub, val_idx, metric, task, folds.classes) for _, _, sub, val_idx in jobs]
    if pool is None:
        results = run_all(InProcess(), learning_point, tasks, shared=(pipeline, folds.X, folds.y))
    else:
        results = pool.map(learning_point, tasks)
    points: list[dict[str, Any]] = []
    for size in partial:
        mine = [(r, len(j[2])) for j, r in zip(jobs, results, strict=True) if j[0] == size]
        points.append(_point(size, [r[0] for r, _ in mine], [r[1] for r, _ in mine], [n for _, n in mine]))
    if 1.0 in sizes:
        points.append(_point(1.0, full_train, full_val, [len(f) for f, _ in folds.splits]))
    return {
        "sizes": [p["size"] for p in points],
        "n_train": [p["n_train"] for p in points],
        "train_mean": [p["train_mean"] for p in points],
        "train_std": [p["train_std"] for p in points],
        "validation_mean": [p["validation_mean"] for p in points],
        "validation_std": [p["validation_std"] for p in points],
    }


def _point(size: float, train: list[float], val: list[float], rows: list[int]) -> dict[str, Any]:
    finite_t = [v for v in train if np.isfinite(v)]
    finite_v = [v for v in val if np.isfinite(v)]
    return {"size": size, "n_train": round(float(np.mean(rows))),
            "train_mean": _mean(finite_t), "train_std": float(np.std(finite_t)) if finite_t else None,
            "validation_mean": _mean(finite_v), "validation_std": float(np.std(finite_v)) if finite_v else None}


def staged_outputs(model: Pipeline, X: Any, task: str) -> tuple[list[int], list[npt.NDArray[Any]]] | None:
    """The model's output after each of up to MAX_CHECKPOINTS boosting iterations, or None.

    Works for estimators with staged_predict(_proba) (histogram and classic gradient boosting,
    AdaBoost) and for LightGBM (predictions limited to the first n trees).
    """
    estimator = model.steps[-1][1]
    transformed = model[:-1].transform(X) if len(model.steps) > 1 else X
    method = "predict" if task == "regression" else "predict_proba"
    booster = getattr(estimator, "booster_", None)
    if booster is not None and hasattr(booster, "current_iteration"):
        total = int(booster.current_iteration())
        marks = _checkpoints(total)
        return marks, [np.asarray(getattr(estimator, method)(transformed, num_iteration=k), dtype=np.float64)
                       for k in marks]
    staged = getattr(estimator, f"staged_{method}", None)
    if staged is None:
        return None
    outputs = [np.asarray(o, dtype=np.float64) for o in staged(transformed)]
    marks = _checkpoints(len(outputs))
    return marks, [outputs[k - 1] for k in marks]


def _checkpoints(total: int) -> list[int]:
    if total <= 0:
        return []
    return sorted({round(float(v)) for v in np.linspace(1, total, min(total, MAX_CHECKPOINTS))})


def _iteration_curve(folds: Folds, fold_models: Sequence[Pipeline], *, metric: str,
                     task: str) -> dict[str, Any] | None:
    """Mean train and validation score after each boosting iteration, over the folds.

    Histogram gradient boosting that early-stopped records its loss per iteration on its own
    held-out share of the fold's training rows while fitting (free): that curve is used, as log
    loss or RMSE. Other boosting models are scored in `metric` on a sample of each fold's
    validation and training rows after up to MAX_CHECKPOINTS iterations.
    """
    native = [_recorded_loss(model.steps[-1][1], task) for model in fold_models]
    if all(n is not None for n in native):
        name, source = ("rmse" if task == "regression" else "log_loss"), "early-stopping holdout"
        per_fold_val = [n[0] for n in native if n is not None]
        per_fold_train = [n[1] for n in native if n is not None]
    else:
        name, source = metric, "cv folds"
        per_fold_val, per_fold_train = [], []
        for i, ((fit_idx, val_idx), model) in enumerate(zip(folds.splits, fold_models, strict=True)):
            held, rows = _sample(val_idx, seed=i), _sample(fit_idx, seed=i)
            val = staged_outputs(model, folds.X.iloc[held], task)
            train = staged_outputs(model, folds.X.iloc[rows], task)
            if val is None or train is None:
                return None
            per_fold_val.append({k: metric_value(metric, task, folds.classes, folds.y[held], o)
                                 for k, o in zip(*val, strict=True)})
            per_fold_train.append({k: metric_value(metric, task, folds.classes, folds.y[rows], o)
                                   for k, o in zip(*train, strict=True)})
    n_iter = [max(d) if d else 0 for d in per_fold_val]
    marks = _checkpoints(max(n_iter))
    val_mean = [_mean([_at(d, k) for d in per_fold_val]) for k in marks]
    train_mean = [_mean([_at(d, k) for d in per_fold_train]) for k in marks]
    finite = [(k, v) for k, v in zip(marks, val_mean, strict=True) if v is not None]
    best = (max if greater_is_better(name) else min)(finite, key=lambda kv: kv[1])[0] if finite else None
    return {"metric": name, "greater_is_better": greater_is_better(name), "source": source, "iteration": marks,
            "validation_mean": val_mean, "train_mean": train_mean, "n_iter_per_fold": n_iter,
            "best_iteration": best}


def _recorded_loss(estimator: Any, task: str) -> tuple[dict[int, float], dict[int, float]] | None:
    """(validation, train) loss per iteration that early-stopping histogram boosting kept, or None."""
    val = getattr(estimator, "validation_score_", None)
    train = getattr(estimator, "train_score_", None)
    if val is None or train is None or len(val) < 2 or getattr(estimator, "scoring", "loss") != "loss":
        return None

    def loss(score: float) -> float:  # the scores are minus the loss; regression's is half the MSE
        return float(np.sqrt(max(0.0, -2.0 * score))) if task == "regression" else float(-score)

    return ({k: loss(v) for k, v in enumerate(val) if k > 0}, {k: loss(v) for k, v in enumerate(train) if k > 0})


def _sample(idx: npt.NDArray[np.intp], seed: int) -> npt.NDArray[np.intp]:
    if len(idx) <= MAX_CURVE_ROWS:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, MAX_CURVE_ROWS, replace=False))


def _at(curve: dict[int, float], k: int) -> float:
    """The fold's score after k iterations; a model that stopped earlier keeps its last score."""
    done = [i for i in curve if i <= k]
    return curve[max(done)] if done else float("nan")


def _flags(metric: str, train: float | None, val: float | None, skills: dict[str, float | None],
           spec: LearningCurveSpec, curve: dict[str, Any] | None) -> tuple[dict[str, bool], list[str]]:
    notes: list[str] = []
    s_train, s_val = skills["train"], skills["validation"]
    over = s_train is not None and s_val is not None and s_train - s_val > spec.overfit_gap
    under = s_train is not None and s_val is not None and s_train < spec.underfit_skill \
        and s_val < spec.underfit_skill
    if over:
        notes.append(f"overfitting: {metric} {train:.4f} on training rows vs {val:.4f} on validation rows "
                     f"(skill gap {s_train - s_val:.2f} > {spec.overfit_gap}); more data, stronger "  # type: ignore[operator]
                     "regularisation or a simpler model should help")
    if under:
        notes.append(f"underfitting: skill {s_train:.2f} (train) and {s_val:.2f} (validation) are both below "
                     f"{spec.underfit_skill}: barely better than predicting the class shares or the mean; "
                     "a more flexible model or better features should help")
    improving = False
    if curve and len(curve["validation_mean"]) >= 2:
        last, before = curve["validation_mean"][-1], curve["validation_mean"][-2]
        if last is not None and before is not None:
            delta = (last - before) if greater_is_better(metric) else (before - last)
            std = curve["validation_std"][-1] or 0.0
            improving = delta > max(std, 1e-9)
            if improving:
                notes.append("the validation score still rises with more training rows: more data would likely help")
    return {"overfitting": bool(over), "underfitting": bool(under), "still_improving": bool(improving)}, notes


def _clean(value: Any) -> Any:
    """Plain JSON: numpy scalars unwrapped, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    return value
