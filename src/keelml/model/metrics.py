"""Task metrics as plain values and as weighted functions, and the seeded vectorised bootstrap.

A weighted metric maps a matrix of row weights (one row per resample, one column per held-out
row) to one value per weight row. With 0/1 weights it is the metric on a subset of the rows, so
the same functions give bootstrap intervals, slice metrics and slice differences.

scikit-learn's metrics are imported inside the functions that compute point metrics: `keel monitor`
imports this module and loads scikit-learn only when the window has labelled rows to score.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from keelml.errors import DataError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
WeightedMetric = Callable[[FloatArray], FloatArray]

METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "pr_auc", "log_loss", "accuracy", "f1", "brier"),
    "multiclass": ("accuracy", "f1_macro", "log_loss", "roc_auc_ovr"),
    "regression": ("rmse", "mae", "r2"),
}
DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "r2"}
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae"})
CHUNK_CELLS = 2_000_000  # weights held in memory at once (weight rows x held-out rows)


def primary_metric(task: str, requested: str | None) -> str:
    """The metric the model is judged by: the requested one if valid for the task, else the default."""
    if task not in METRICS:
        raise DataError(f"unknown task {task!r}", expected="one of: " + ", ".join(METRICS),
                        fix="fix the task in the data contract")
    if requested is None:
        return DEFAULT_METRIC[task]
    if requested not in METRICS[task]:
        close = difflib.get_close_matches(requested, METRICS[task], n=1, cutoff=0.5)
        raise DataError(
            f"unknown metric {requested!r} for a {task} task",
            expected="one of: " + ", ".join(METRICS[task]),
            fix=(f"did you mean {close[0]!r}? " if close else "") + "set evaluate.metric to one of those",
        )
    return requested


def finite(value: Any) -> float | None:
    """A float, or None for nan and infinities (JSON has no nan)."""
    number = float(value)
    return number if np.isfinite(number) else None


def regression_metrics(y: FloatArray, pred: FloatArray) -> tuple[dict[str, Any], dict[str, WeightedMetric]]:
    """Point metrics (rmse, mae, r2) and their weighted forms."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    metrics: dict[str, Any] = {
        "rmse": float(np.sqrt(mean_squared_error(y, pred))),
        "mae": float(mean_absolute_error(y, pred)),
        "r2": finite(r2_score(y, pred)) if len(y) > 1 else None,
    }
    return metrics, weighted_regression(y, pred)


def weighted_regression(y: FloatArray, pred: FloatArray) -> dict[str, WeightedMetric]:
    """rmse, mae and r2 as weighted metrics."""
    err = y - pred

    def rmse(w: FloatArray) -> FloatArray:
        return _mean(w, err**2) ** 0.5

    def mae(w: FloatArray) -> FloatArray:
        return _mean(w, np.abs(err))

    def r2(w: FloatArray) -> FloatArray:
        total = w.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = (w @ y) / total
            ss_tot = (w * (y[None, :] - mean[:, None]) ** 2).sum(axis=1)
            return np.asarray(np.where(ss_tot > 0, 1.0 - (w @ err**2) / ss_tot, np.nan))

    return {"rmse": rmse, "mae": mae, "r2": r2}


def classification_metrics(
    task: str, y: npt.NDArray[Any], pred: npt.NDArray[Any], proba: FloatArray, classes: list[str]
) -> tuple[dict[str, Any], dict[str, WeightedMetric]]:
    """Point metrics of the task (plus the confusion matrix) and their weighted forms."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        confusion_matrix,
        f1_score,
        log_loss,
        roc_auc_score,
    )

    y = y.astype(object)
    matrix = confusion_matrix(y, pred, labels=classes)
    metrics: dict[str, Any] = {
        "accuracy": float(accuracy_score(y, pred)),
        "log_loss": float(log_loss(y, proba, labels=classes)),
        "confusion_matrix": {"labels": classes, "matrix": matrix.astype(int).tolist()},
    }
    if task == "binary":
        positive = classes[1]
        is_pos = y == positive
        p_pos = proba[:, 1]
        both = bool(is_pos.any() and (~is_pos).any())
        metrics["roc_auc"] = float(roc_auc_score(is_pos, p_pos)) if both else None
        metrics["pr_auc"] = float(average_precision_score(is_pos, p_pos)) if both else None
        metrics["f1"] = float(f1_score(y, pred, pos_label=positive, zero_division=0))
        metrics["brier"] = float(np.mean((p_pos - is_pos) ** 2))
        metrics["positive_class"] = positive
    else:
        metrics["f1_macro"] = float(f1_score(y, pred, average="macro", zero_division=0))
        metrics["roc_auc_ovr"] = finite(ovr_auc(np.ones((1, len(y))), y, proba, classes)[0])
    return metrics, weighted_classification(task, y, pred, proba, classes)


def weighted_classification(task: str, y: npt.NDArray[Any], pred: npt.NDArray[Any], proba: FloatArray,
                            classes: list[str]) -> dict[str, WeightedMetric]:
    """The task's classification metrics as weighted metrics."""
    y = y.astype(object)
    correct = (y == pred).astype(np.float64)
    row_loss = per_row_log_loss(y, proba, classes)
    weighted: dict[str, WeightedMetric] = {
        "accuracy": lambda w: _mean(w, correct),
        "log_loss": lambda w: _mean(w, row_loss),
    }
    if task == "binary":
        positive = classes[1]
        is_pos = y == positive
        p_pos = proba[:, 1]
        sq = (p_pos - is_pos) ** 2
        weighted["roc_auc"] = lambda w: weighted_auc(w, is_pos, p_pos)
        weighted["pr_auc"] = lambda w: weighted_ap(w, is_pos, p_pos)
        weighted["f1"] = lambda w: weighted_f1(w, is_pos, pred == positive)
        weighted["brier"] = lambda w: _mean(w, sq)
    else:
        weighted["f1_macro"] = lambda w: weighted_f1_macro(w, y, pred, classes)
        weighted["roc_auc_ovr"] = lambda w: ovr_auc(w, y, proba, classes)
    return weighted


def per_row_log_loss(y: npt.NDArray[Any], proba: FloatArray, classes: list[str]) -> FloatArray:
    """-log of the probability given to each row's true class (clipped away from 0 and 1)."""
    eps = np.finfo(np.float64).eps
    y_idx = np.searchsorted(np.asarray(classes), np.asarray(y).astype(str))
    return np.asarray(-np.log(np.clip(proba[np.arange(len(y_idx)), y_idx], eps, 1 - eps)))


def _mean(w: FloatArray, values: FloatArray) -> FloatArray:
    total = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(total > 0, (w @ values) / total, np.nan))


def _groups(score: FloatArray, descending: bool) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """A stable sort order of the scores and the start index of each group of tied scores."""
    order = np.argsort(-score if descending else score, kind="mergesort")
    ordered = score[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return order, starts


def weighted_auc(w: FloatArray, is_pos: BoolArray, score: FloatArray) -> FloatArray:
    """ROC AUC for each row of weights (ties count one half), nan without both classes."""
    order, starts = _groups(score, descending=False)
    ordered = w[:, order]
    pos = np.add.reduceat(ordered * is_pos[order], starts, axis=1)
    neg = np.add.reduceat(ordered, starts, axis=1) - pos
    below = np.cumsum(neg, axis=1) - neg
    denom = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(denom > 0, (pos * (below + 0.5 * neg)).sum(axis=1) / denom, np.nan))


def weighted_ap(w: FloatArray, is_pos: BoolArray, score: FloatArray) -> FloatArray:
    """Average precision (sklearn's step-wise definition) for each row of weights."""
    order, starts = _groups(score, descending=True)
    ordered = w[:, order]
    pos = np.add.reduceat(ordered * is_pos[order], starts, axis=1)
    neg = np.add.reduceat(ordered, starts, axis=1) - pos
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    total = pos.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(total > 0, (pos * precision).sum(axis=1) / total, np.nan))


def weighted_f1(w: FloatArray, truth: BoolArray, guess: BoolArray) -> FloatArray:
    tp = w @ (truth & guess).astype(np.float64)
    fp = w @ (~truth & guess).astype(np.float64)
    fn = w @ (truth & ~guess).astype(np.float64)
    denom = 2 * tp + fp + fn
    return np.asarray(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0))


def weighted_f1_macro(w: FloatArray, y: npt.NDArray[Any], pred: npt.NDArray[Any], classes: list[str]) -> FloatArray:
    """Macro F1 over the classes present (in truth or prediction) in each weight row, as sklearn does."""
    total = np.zeros(w.shape[0])
    count = np.zeros(w.shape[0])
    for c in classes:
        truth, guess = y == c, pred == c
        present = (w @ (truth | guess).astype(np.float64)) > 0
        total += np.where(present, weighted_f1(w, truth, guess), 0.0)
        count += present
    return np.asarray(np.divide(total, count, out=np.full_like(total, np.nan), where=count > 0))


def ovr_auc(w: FloatArray, y: npt.NDArray[Any], proba: FloatArray, classes: list[str]) -> FloatArray:
    """One-vs-rest macro ROC AUC over the classes that have positives and negatives."""
    per_class = np.stack([weighted_auc(w, y == c, proba[:, i]) for i, c in enumerate(classes)], axis=1)
    defined = ~np.isnan(per_class)
    sums = np.where(defined, per_class, 0.0).sum(axis=1)
    counts = defined.sum(axis=1)
    return np.asarray(np.divide(sums, counts, out=np.full_like(sums, np.nan), where=counts > 0))


def resample_weights(n: int, rounds: int, seed: int) -> Iterator[FloatArray]:
    """Seeded bootstrap resamples of n rows as per-row counts, in chunks of whole resamples.

    Index arrays are drawn with numpy (all rows of a chunk at once) and turned into counts, so a
    metric is computed for many resamples in one vectorised call.
    """
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_CELLS // max(n, 1))
    done = 0
    while done < rounds:
        size = min(chunk, rounds - done)
        idx = rng.integers(0, n, size=(size, n))
        flat = (idx + np.arange(size)[:, None] * n).ravel()
        yield np.bincount(flat, minlength=size * n).reshape(size, n).astype(np.float64)
        done += size


def percentile_interval(values: list[FloatArray], confidence: float) -> tuple[float | None, float | None, int]:
    """(low, high, resamples used) of the finite values; (None, None, 0) when there are none."""
    kept = np.concatenate(values) if values else np.empty(0)
    kept = kept[np.isfinite(kept)]
    if kept.size == 0:
        return None, None, 0
    alpha = 1.0 - confidence
    low, high = np.quantile(kept, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high), int(kept.size)


def bootstrap_intervals(
    metrics: dict[str, WeightedMetric],
    n: int,
    rounds: int,
    confidence: float,
    seed: int,
    valid: Callable[[FloatArray], BoolArray] | None = None,
) -> dict[str, tuple[float | None, float | None, int]]:
    """Percentile interval of each metric over the same seeded resamples of the rows.

    Resamples that `valid` rejects (a single class, for classification) or where a metric is
    undefined are skipped for that metric.
    """
    if rounds <= 0:
        return {name: (None, None, 0) for name in metrics}
    values: dict[str, list[FloatArray]] = {name: [] for name in metrics}
    for weights in resample_weights(n, rounds, seed):
        keep = valid(weights) if valid is not None else np.ones(len(weights), dtype=bool)
        for name, metric in metrics.items():
            values[name].append(metric(weights)[keep])
    return {name: percentile_interval(found, confidence) for name, found in values.items()}


def both_classes(onehot: FloatArray) -> Callable[[FloatArray], BoolArray]:
    """Validity of weight rows for classification: at least two classes carry weight."""

    def valid(weights: FloatArray) -> BoolArray:
        result: BoolArray = ((weights @ onehot) > 0).sum(axis=1) >= 2
        return result

    return valid
