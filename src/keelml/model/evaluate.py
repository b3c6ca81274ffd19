"""Held-out evaluation: task metrics, a seeded bootstrap interval for the primary one, predictions."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from keelml.errors import DataError
from keelml.model.features import to_labelled_xy

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from keelml.data.contract import Contract
    from keelml.spec import EvaluateSpec

FloatArray = npt.NDArray[np.float64]
WeightedMetric = Callable[[FloatArray], FloatArray]

METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "pr_auc", "log_loss", "accuracy", "f1", "brier"),
    "multiclass": ("accuracy", "f1_macro", "log_loss", "roc_auc_ovr"),
    "regression": ("rmse", "mae", "r2"),
}
DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "r2"}
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae"})
_CHUNK_CELLS = 2_000_000  # bootstrap weights held in memory at once (rounds x rows)


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


def evaluate_model(
    model: Pipeline, test: pl.DataFrame, contract: Contract, spec: EvaluateSpec
) -> tuple[dict[str, Any], pl.DataFrame]:
    """Score the model on the held-out rows; return (metrics, predictions table)."""
    task = contract.task
    name = primary_metric(task, spec.metric)
    X, y = to_labelled_xy(test, contract, what="test")
    if len(y) == 0:
        raise DataError("the test data has no rows", expected="at least one held-out row",
                        fix="give a larger test set (split.test_size or data.test)")
    table = pl.DataFrame({"_row": pl.Series(np.arange(len(y)), dtype=pl.Int64)})
    metrics: dict[str, Any]
    weighted: WeightedMetric
    if task == "regression":
        pred = np.asarray(model.predict(X), dtype=np.float64)
        metrics, weighted = _regression(y.astype(np.float64), pred, name)
        table = table.with_columns(prediction=pl.Series(pred, dtype=pl.Float64))
        valid_rounds: Callable[[FloatArray], npt.NDArray[np.bool_]] | None = None
        balance: dict[str, float] | None = None
    else:
        classes = [str(c) for c in model.classes_]
        unknown = sorted(set(y.tolist()) - set(classes))
        if unknown:
            raise DataError(
                f"the test target has class(es) the model never saw: {', '.join(map(repr, unknown))}",
                expected="only the classes the model was trained on: " + ", ".join(classes),
                fix="retrain on data containing those classes, or drop those rows from the test data",
            )
        proba = np.asarray(model.predict_proba(X), dtype=np.float64)
        pred = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
        y_idx = np.searchsorted(np.asarray(classes), y)
        onehot = np.eye(len(classes))[y_idx]
        metrics, weighted = _classification(task, y, pred, proba, classes, name)
        table = table.with_columns(
            prediction=pl.Series([str(p) for p in pred], dtype=pl.String),
            **{f"proba_{c}": pl.Series(np.round(proba[:, i], 6), dtype=pl.Float64)
               for i, c in enumerate(classes)},
        )

        def valid_rounds(weights: FloatArray) -> npt.NDArray[np.bool_]:
            result: npt.NDArray[np.bool_] = ((weights @ onehot) > 0).sum(axis=1) >= 2
            return result

        balance = {c: float(np.mean(y == c)) for c in classes}
    low, high, used = _bootstrap(weighted, len(y), spec.bootstrap_rounds, spec.confidence, spec.seed,
                                 valid_rounds)
    metrics["primary"] = {
        "name": name,
        "value": metrics[name],
        "greater_is_better": name not in LOWER_IS_BETTER,
        "ci_low": low,
        "ci_high": high,
        "confidence": spec.confidence,
        "bootstrap_rounds": spec.bootstrap_rounds,
        "bootstrap_rounds_used": used,
    }
    metrics["n_test"] = len(y)
    metrics["class_balance"] = balance
    return metrics, table


def _regression(y: FloatArray, pred: FloatArray, name: str) -> tuple[dict[str, Any], WeightedMetric]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    metrics: dict[str, Any] = {
        "rmse": float(np.sqrt(mean_squared_error(y, pred))),
        "mae": float(mean_absolute_error(y, pred)),
        "r2": _finite(r2_score(y, pred)) if len(y) > 1 else None,
    }
    err = y - pred

    def rmse(w: FloatArray) -> FloatArray:
        return np.asarray(np.sqrt((w @ err**2) / w.sum(axis=1)))

    def mae(w: FloatArray) -> FloatArray:
        return np.asarray((w @ np.abs(err)) / w.sum(axis=1))

    def r2(w: FloatArray) -> FloatArray:
        total = w.sum(axis=1)
        mean = (w @ y) / total
        ss_tot = (w * (y[None, :] - mean[:, None]) ** 2).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.where(ss_tot > 0, 1.0 - (w @ err**2) / ss_tot, np.nan))

    return metrics, {"rmse": rmse, "mae": mae, "r2": r2}[name]


def _classification(
    task: str, y: npt.NDArray[Any], pred: npt.NDArray[Any], proba: FloatArray, classes: list[str], name: str
) -> tuple[dict[str, Any], WeightedMetric]:
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        confusion_matrix,
        f1_score,
        log_loss,
        roc_auc_score,
    )

    y = y.astype(object)
    correct = (y == pred).astype(np.float64)
    eps = np.finfo(np.float64).eps
    y_idx = np.searchsorted(np.asarray(classes), y.astype(str))
    row_loss = -np.log(np.clip(proba[np.arange(len(y)), y_idx], eps, 1 - eps))
    matrix = confusion_matrix(y, pred, labels=classes)
    metrics: dict[str, Any] = {
        "accuracy": float(accuracy_score(y, pred)),
        "log_loss": float(log_loss(y, proba, labels=classes)),
        "confusion_matrix": {"labels": classes, "matrix": matrix.astype(int).tolist()},
    }
    weighted: dict[str, WeightedMetric] = {
        "accuracy": lambda w: np.asarray((w @ correct) / w.sum(axis=1)),
        "log_loss": lambda w: np.asarray((w @ row_loss) / w.sum(axis=1)),
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
        sq = (p_pos - is_pos) ** 2
        weighted["roc_auc"] = lambda w: _weighted_auc(w, is_pos, p_pos)
        weighted["pr_auc"] = lambda w: _weighted_ap(w, is_pos, p_pos)
        weighted["f1"] = lambda w: _weighted_f1(w, is_pos, pred == positive)
        weighted["brier"] = lambda w: np.asarray((w @ sq) / w.sum(axis=1))
    else:
        metrics["f1_macro"] = float(f1_score(y, pred, average="macro", zero_division=0))
        metrics["roc_auc_ovr"] = _finite(_ovr_auc(np.ones((1, len(y))), y, proba, classes)[0])
        weighted["f1_macro"] = lambda w: _weighted_f1_macro(w, y, pred, classes)
        weighted["roc_auc_ovr"] = lambda w: _ovr_auc(w, y, proba, classes)
    return metrics, weighted[name]


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None


def _groups(score: FloatArray, descending: bool) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """A stable sort order of the scores and the start index of each group of tied scores."""
    order = np.argsort(-score if descending else score, kind="mergesort")
    ordered = score[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return order, starts


def _weighted_auc(w: FloatArray, is_pos: npt.NDArray[np.bool_], score: FloatArray) -> FloatArray:
    """ROC AUC for each row of resample weights (ties count one half), nan without both classes."""
    order, starts = _groups(score, descending=False)
    pos = np.add.reduceat(w[:, order] * is_pos[order], starts, axis=1)
    neg = np.add.reduceat(w[:, order] * ~is_pos[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    denom = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(denom > 0, (pos * (below + 0.5 * neg)).sum(axis=1) / denom, np.nan))


def _weighted_ap(w: FloatArray, is_pos: npt.NDArray[np.bool_], score: FloatArray) -> FloatArray:
    """Average precision (sklearn's step-wise definition) for each row of resample weights."""
    order, starts = _groups(score, descending=True)
    pos = np.add.reduceat(w[:, order] * is_pos[order], starts, axis=1)
    neg = np.add.reduceat(w[:, order] * ~is_pos[order], starts, axis=1)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    total = pos.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(total > 0, (pos * precision).sum(axis=1) / total, np.nan))


def _weighted_f1(w: FloatArray, truth: npt.NDArray[np.bool_], guess: npt.NDArray[np.bool_]) -> FloatArray:
    tp = w @ (truth & guess).astype(np.float64)
    fp = w @ (~truth & guess).astype(np.float64)
    fn = w @ (truth & ~guess).astype(np.float64)
    denom = 2 * tp + fp + fn
    return np.asarray(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0))


def _weighted_f1_macro(
    w: FloatArray, y: npt.NDArray[Any], pred: npt.NDArray[Any], classes: list[str]
) -> FloatArray:
    """Macro F1 over the classes present (in truth or prediction) in each resample, as sklearn does."""
    total = np.zeros(w.shape[0])
    count = np.zeros(w.shape[0])
    for c in classes:
        truth, guess = y == c, pred == c
        present = (w @ (truth | guess).astype(np.float64)) > 0
        total += np.where(present, _weighted_f1(w, truth, guess), 0.0)
        count += present
    return np.asarray(np.divide(total, count, out=np.full_like(total, np.nan), where=count > 0))


def _ovr_auc(w: FloatArray, y: npt.NDArray[Any], proba: FloatArray, classes: list[str]) -> FloatArray:
    """One-vs-rest macro ROC AUC over the classes that have positives and negatives."""
    per_class = np.stack([_weighted_auc(w, y == c, proba[:, i]) for i, c in enumerate(classes)], axis=1)
    defined = ~np.isnan(per_class)
    sums = np.where(defined, per_class, 0.0).sum(axis=1)
    counts = defined.sum(axis=1)
    return np.asarray(np.divide(sums, counts, out=np.full_like(sums, np.nan), where=counts > 0))


def _bootstrap(
    metric: WeightedMetric,
    n: int,
    rounds: int,
    confidence: float,
    seed: int,
    valid: Callable[[FloatArray], npt.NDArray[np.bool_]] | None,
) -> tuple[float | None, float | None, int]:
    """Percentile interval of the metric over seeded resamples of the rows.

    Index arrays are drawn with numpy in chunks of rounds (all rows at once) and turned into
    per-row counts, so each metric is computed for many resamples in one vectorised call.
    Resamples with a single class (classification) or an undefined metric are skipped.
    """
    if rounds <= 0:
        return None, None, 0
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // n)
    values: list[FloatArray] = []
    done = 0
    while done < rounds:
        size = min(chunk, rounds - done)
        idx = rng.integers(0, n, size=(size, n))
        flat = (idx + np.arange(size)[:, None] * n).ravel()
        weights = np.bincount(flat, minlength=size * n).reshape(size, n).astype(np.float64)
        scores = metric(weights)
        keep = np.isfinite(scores)
        if valid is not None:
            keep &= valid(weights)
        values.append(scores[keep])
        done += size
    kept = np.concatenate(values)
    if kept.size == 0:
        return None, None, 0
    alpha = 1.0 - confidence
    low, high = np.quantile(kept, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high), int(kept.size)
