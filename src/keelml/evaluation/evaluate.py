"""Held-out evaluation: task metrics with bootstrap intervals, curves, slices, error analysis, fairness."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from keelml.errors import DataError
from keelml.evaluation.curves import binary_curves
from keelml.evaluation.fairness import fairness_report
from keelml.evaluation.slices import SLICE_METRICS, define_slices, slice_metrics, worst_examples, worst_slices
from keelml.model.features import to_labelled_xy
from keelml.model.metrics import (
    LOWER_IS_BETTER,
    METRICS,
    BoolArray,
    FloatArray,
    WeightedMetric,
    bootstrap_intervals,
    both_classes,
    classification_metrics,
    per_row_log_loss,
    primary_metric,
    regression_metrics,
    weighted_classification,
    weighted_regression,
)

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from keelml.data.contract import Contract
    from keelml.spec.evaluate import EvaluateSpec

__all__ = ["Scored", "analyse", "evaluate_model", "primary_metric", "score_model"]


class Scored:
    """A model's answers on the held-out rows, and the weighted metric functions over them."""

    def __init__(self, task: str, truth: npt.NDArray[Any], prediction: npt.NDArray[Any], loss: FloatArray,
                 metrics: dict[str, Any], weighted: dict[str, WeightedMetric],
                 proba: FloatArray | None = None, classes: list[str] | None = None) -> None:
        self.task = task
        self.truth = truth
        self.prediction = prediction
        self.loss = loss  # per row: -log p(true class), or the absolute error
        self.metrics = metrics
        self.weighted = weighted
        self.proba = proba
        self.classes = classes

    @property
    def positive(self) -> str | None:
        return self.classes[1] if self.task == "binary" and self.classes else None

    def weighted_on(self, rows: BoolArray) -> dict[str, WeightedMetric]:
        """The weighted metrics over a subset of the rows (weight matrices then have its columns)."""
        if self.proba is None or self.classes is None:
            return weighted_regression(self.truth[rows], self.prediction[rows])
        return weighted_classification(self.task, self.truth[rows], self.prediction[rows], self.proba[rows],
                                       self.classes)


def score_model(model: Pipeline, test: pl.DataFrame, contract: Contract) -> Scored:
    """Predict the held-out rows and compute the task's point metrics."""
    task = contract.task
    X, y = to_labelled_xy(test, contract, what="test")
    if len(y) == 0:
        raise DataError("the test data has no rows", expected="at least one held-out row",
                        fix="give a larger test set (split.test_size or data.test)")
    if task == "regression":
        truth = y.astype(np.float64)
        pred = np.asarray(model.predict(X), dtype=np.float64)
        metrics, weighted = regression_metrics(truth, pred)
        return Scored(task, truth, pred, np.abs(truth - pred), metrics, weighted)
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
    metrics, weighted = classification_metrics(task, y, pred, proba, classes)
    return Scored(task, y.astype(object), pred, per_row_log_loss(y, proba, classes), metrics, weighted,
                  proba, classes)


def evaluate_model(
    model: Pipeline, test: pl.DataFrame, contract: Contract, spec: EvaluateSpec
) -> tuple[dict[str, Any], pl.DataFrame]:
    """Score the model on the held-out rows; return (metrics, predictions table)."""
    metrics, _, table = evaluate_all(model, test, contract, spec, analysis=False)
    return metrics, table


def evaluate_all(model: Pipeline, test: pl.DataFrame, contract: Contract, spec: EvaluateSpec, *,
                 analysis: bool = True) -> tuple[dict[str, Any], dict[str, Any] | None, pl.DataFrame]:
    """Metrics (with intervals and curves), the analysis (slices, errors, fairness) and predictions."""
    name = primary_metric(contract.task, spec.metric)
    scored = score_model(model, test, contract)
    metrics = dict(scored.metrics)
    n = len(scored.truth)
    valid = None
    if scored.classes is not None:
        onehot = np.eye(len(scored.classes))[np.searchsorted(np.asarray(scored.classes), scored.truth.astype(str))]
        valid = both_classes(onehot)
    names = list(METRICS[contract.task])
    intervals = bootstrap_intervals({k: scored.weighted[k] for k in names}, n, spec.bootstrap_rounds,
                                    spec.confidence, spec.seed, valid)
    low, high, used = intervals[name]
    metrics["primary"] = {
        "name": name, "value": metrics[name], "greater_is_better": name not in LOWER_IS_BETTER,
        "ci_low": low, "ci_high": high, "confidence": spec.confidence,
        "bootstrap_rounds": spec.bootstrap_rounds, "bootstrap_rounds_used": used,
    }
    metrics["intervals"] = {k: {"low": lo, "high": hi, "rounds_used": u} for k, (lo, hi, u) in intervals.items()}
    metrics["n_test"] = n
    metrics["class_balance"] = ({c: float(np.mean(scored.truth == c)) for c in scored.classes}
                                if scored.classes is not None else None)
    if scored.task == "binary" and scored.proba is not None:
        metrics["curves"] = binary_curves(scored.truth == scored.positive, scored.proba[:, 1])
    result = analyse(scored, test, contract, spec, name) if analysis else None
    return metrics, result, _predictions(scored)


def _predictions(scored: Scored) -> pl.DataFrame:
    table = pl.DataFrame({"_row": pl.Series(np.arange(len(scored.truth)), dtype=pl.Int64)})
    if scored.proba is None or scored.classes is None:
        return table.with_columns(prediction=pl.Series(scored.prediction, dtype=pl.Float64))
    return table.with_columns(
        prediction=pl.Series([str(p) for p in scored.prediction], dtype=pl.String),
        **{f"proba_{c}": pl.Series(np.round(scored.proba[:, i], 6), dtype=pl.Float64)
           for i, c in enumerate(scored.classes)},
    )


def analyse(scored: Scored, test: pl.DataFrame, contract: Contract, spec: EvaluateSpec,
            name: str) -> dict[str, Any]:
    """Slices of every feature, the worst slices and rows (error analysis), and fairness."""
    slices = define_slices(test, contract, spec.slice_bins)
    names = list(dict.fromkeys([name, *SLICE_METRICS[contract.task]]))
    rows = slice_metrics(slices, scored.weighted, names, spec.min_slice_rows)
    greater = name not in LOWER_IS_BETTER
    worst = worst_slices(slices, rows, name, scored.metrics[name], scored.weighted[name],
                         lambda mask: scored.weighted_on(mask)[name], greater_is_better=greater,
                         top=spec.worst_slices, rounds=spec.bootstrap_rounds, confidence=spec.confidence,
                         seed=spec.seed)
    examples = worst_examples(test, contract, scored.loss, scored.truth, scored.prediction, spec.worst_examples)
    fairness = fairness_report(test, contract, truth=scored.truth, prediction=scored.prediction,
                               positive=scored.positive, min_rows=spec.min_slice_rows, bins=spec.slice_bins)
    loss = "absolute error" if contract.task == "regression" else "log loss of the true class"
    return {
        "slices": {"metric": name, "metrics": names, "min_rows": spec.min_slice_rows, "bins": spec.slice_bins,
                   "overall": {k: scored.metrics.get(k) for k in names}, "rows": rows},
        "error_analysis": {"worst_slices": worst, "worst_examples": examples, "example_loss": loss},
        "fairness": fairness,
    }
