"""One metric, computed from a model's predictions: used by tuning, learning curves and iteration curves.

Scores are plain metric values (losses positive); `greater_is_better` says which way is better and
`skill` puts any metric on one scale: 0 = the baseline (a dummy model), 1 = perfect.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

from keelml.model.metrics import LOWER_IS_BETTER, primary_metric

# the value a perfect model reaches
PERFECT = {"roc_auc": 1.0, "pr_auc": 1.0, "accuracy": 1.0, "f1": 1.0, "f1_macro": 1.0, "roc_auc_ovr": 1.0,
           "r2": 1.0, "log_loss": 0.0, "brier": 0.0, "rmse": 0.0, "mae": 0.0}


def greater_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def check_metric(task: str, metric: str | None) -> str:
    """The metric to use for a task: `metric` if valid (else a DataError with a hint), or the task default."""
    return primary_metric(task, metric)


def predictions(estimator: Any, X: Any, task: str) -> npt.NDArray[Any]:
    """What the metric needs: class probabilities (classification) or predicted values (regression)."""
    if task == "regression":
        return np.asarray(estimator.predict(X), dtype=np.float64)
    return np.asarray(estimator.predict_proba(X), dtype=np.float64)


def metric_value(metric: str, task: str, classes: list[str] | None, y: npt.NDArray[Any],
                 output: npt.NDArray[Any]) -> float:
    """The metric for true values `y` and model output (probabilities in `classes` order, or values).

    Plain numpy (called thousands of times by iteration curves); nan where the metric is undefined
    (e.g. ROC AUC on a single class). Agrees with scikit-learn's metric functions.
    """
    if task == "regression":
        pred = np.asarray(output, dtype=np.float64)
        truth = np.asarray(y, dtype=np.float64)
        err = truth - pred
        if metric == "rmse":
            return float(np.sqrt(np.mean(err**2)))
        if metric == "mae":
            return float(np.mean(np.abs(err)))
        ss_tot = float(np.sum((truth - truth.mean()) ** 2))
        return 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else float("nan")
    assert classes is not None
    proba = np.asarray(output, dtype=np.float64)
    truth = np.asarray(y).astype(str)
    index = np.searchsorted(np.asarray(classes), truth)
    pred = proba.argmax(axis=1)
    if metric == "accuracy":
        return float(np.mean(index == pred))
    if metric == "log_loss":
        rows = proba / proba.sum(axis=1, keepdims=True)
        return float(-np.mean(np.log(np.clip(rows[np.arange(len(truth)), index], 1e-15, 1.0))))
    if metric == "f1_macro":
        present = [k for k in range(len(classes)) if np.any(index == k) or np.any(pred == k)]
        return float(np.mean([_f1(index == k, pred == k) for k in present])) if present else 0.0
    if metric == "roc_auc_ovr":
        aucs = [_auc(index == k, proba[:, k]) for k in range(len(classes))]
        defined = [a for a in aucs if np.isfinite(a)]
        return float(np.mean(defined)) if defined else float("nan")
    is_pos = index == 1
    if metric == "f1":
        return _f1(is_pos, pred == 1)
    if metric == "brier":
        return float(np.mean((proba[:, 1] - is_pos) ** 2))
    if metric == "pr_auc":
        return _average_precision(is_pos, proba[:, 1])
    return _auc(is_pos, proba[:, 1])


def _f1(truth: npt.NDArray[np.bool_], guess: npt.NDArray[np.bool_]) -> float:
    tp = float(np.sum(truth & guess))
    denom = 2 * tp + float(np.sum(~truth & guess)) + float(np.sum(truth & ~guess))
    return 2 * tp / denom if denom > 0 else 0.0


def _auc(is_pos: npt.NDArray[np.bool_], score: npt.NDArray[np.float64]) -> float:
    """ROC AUC by the rank-sum statistic (ties count one half)."""
    n_pos = int(is_pos.sum())
    n_neg = len(is_pos) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[is_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_precision(is_pos: npt.NDArray[np.bool_], score: npt.NDArray[np.float64]) -> float:
    """Average precision as scikit-learn defines it (step-wise, tied scores form one threshold)."""
    n_pos = int(is_pos.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    ordered, hits = score[order], is_pos[order].astype(np.float64)
    last = np.r_[np.flatnonzero(ordered[1:] != ordered[:-1]), len(ordered) - 1]
    tp = np.cumsum(hits)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall_step = np.diff(np.r_[0.0, tp]) / n_pos
    return float(np.sum(recall_step * precision))


def baseline_output(task: str, classes: list[str] | None, y_fit: npt.NDArray[Any], n: int) -> npt.NDArray[Any]:
    """A dummy model's output for n rows: the training class shares, or the training mean."""
    if task == "regression":
        return np.full(n, float(np.mean(np.asarray(y_fit, dtype=np.float64))))
    assert classes is not None
    truth = np.asarray(y_fit).astype(str)
    shares = np.asarray([np.mean(truth == c) for c in classes], dtype=np.float64)
    return np.tile(shares, (n, 1))


def skill(metric: str, value: float | None, baseline: float | None) -> float | None:
    """(value - baseline) / (perfect - baseline): 0 = no better than the dummy model, 1 = perfect."""
    if value is None or baseline is None or not np.isfinite(value) or not np.isfinite(baseline):
        return None
    room = PERFECT[metric] - baseline
    if abs(room) < 1e-12:
        return None
    return float((value - baseline) / room)
