"""Live performance: task metrics on the logged predictions that received a feedback label.

The metrics, their weighted (bootstrap) forms and the fairness report are the ones held-out
evaluation uses (keelml.model.metrics, keelml.evaluation.fairness), so a production number and the
number in the training report mean the same thing. Over the window as a whole, per time bucket and
per group of each sensitive column, each with a seeded bootstrap interval.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from keelml.evaluation.fairness import fairness_report, sensitive_columns
from keelml.evaluation.slices import group_labels
from keelml.model.metrics import (
    LOWER_IS_BETTER,
    METRICS,
    WeightedMetric,
    bootstrap_intervals,
    both_classes,
    classification_metrics,
    primary_metric,
    regression_metrics,
    weighted_classification,
    weighted_regression,
)
from keelml.spec.monitor import PerformanceSpec, parse_window

if TYPE_CHECKING:
    from keelml.data.contract import Contract

PROBABILITY_METRICS = frozenset({"log_loss", "roc_auc", "pr_auc", "brier", "roc_auc_ovr"})


@dataclass
class _Scored:
    """Labelled rows as arrays, their point metrics, and the weighted (bootstrap) metric functions."""

    task: str
    truth: npt.NDArray[Any]
    prediction: npt.NDArray[Any]
    proba: npt.NDArray[np.float64] | None
    classes: list[str]
    point: dict[str, Any]
    available: list[str]

    @property
    def positive(self) -> str | None:
        return self.classes[1] if self.task == "binary" else None

    def weighted_on(self, rows: npt.NDArray[np.bool_]) -> dict[str, WeightedMetric]:
        if self.proba is None:
            found = weighted_regression(self.truth[rows], self.prediction[rows])
        else:
            found = weighted_classification(self.task, self.truth[rows], self.prediction[rows], self.proba[rows],
                                            self.classes)
        return {k: v for k, v in found.items() if k in self.available}

    def valid_on(self, rows: npt.NDArray[np.bool_]) -> Any:
        if self.proba is None:
            return None
        truth = self.truth[rows]
        return both_classes((truth[:, None] == np.asarray(self.classes, dtype=object)[None, :]).astype(np.float64))


def live_performance(frame: pl.DataFrame, contract: Contract, spec: PerformanceSpec,
                     metric: str | None = None) -> dict[str, Any]:
    """Metrics of the labelled rows of ``frame`` (columns ``label``, ``prediction``, optional score/ts).

    ``metric`` (else ``spec.metric``, else the task's primary metric) is the one reported over time
    and per group. Without probabilities in the log (``proba_<class>`` columns, or ``score`` for a
    binary task) the probability metrics (ROC AUC, log loss, ...) are not available.
    """
    if "label" not in frame.columns or "prediction" not in frame.columns:
        return {"available": False, "reason": "no feedback labels in the window (no label column)"}
    task = contract.task
    labelled = frame.filter(pl.col("label").is_not_null() & pl.col("prediction").is_not_null())
    notes: list[str] = []
    classes = sorted(str(c) for c in contract.classes or [])
    if task != "regression":
        known = pl.col("label").cast(pl.String).is_in(classes)
        dropped = labelled.height - labelled.filter(known).height
        if dropped:
            notes.append(f"{dropped} labelled rows have a class the contract does not list; left out")
        labelled = labelled.filter(known)
    else:
        numbers = [pl.col(c).cast(pl.Float64, strict=False).is_finite() for c in ("label", "prediction")]
        dropped = labelled.height - labelled.filter(*numbers).height
        if dropped:
            notes.append(f"{dropped} rows whose label or prediction is not a number; left out")
        labelled = labelled.filter(*numbers)
    if labelled.height == 0:
        return {"available": False, "reason": "no labelled predictions in the window", "notes": notes}
    scored = _score(labelled, task, classes, notes)
    name = primary_metric(task, metric or spec.metric)
    if name not in scored.available:
        return {"available": False, "notes": notes,
                "reason": f"{name} needs predicted probabilities, which the log does not have"}
    every = np.ones(labelled.height, dtype=bool)
    intervals = bootstrap_intervals(scored.weighted_on(every), labelled.height, spec.bootstrap_rounds,
                                    spec.confidence, spec.seed, scored.valid_on(every))
    overall = {k: {"value": _finite(scored.point.get(k)), "ci_low": intervals[k][0], "ci_high": intervals[k][1]}
               for k in scored.available}
    return {
        "available": True, "task": task, "metric": name, "greater_is_better": name not in LOWER_IS_BETTER,
        "n_labelled": labelled.height, "n_rows": frame.height, "confidence": spec.confidence,
        "primary": {"name": name, **overall[name]}, "metrics": overall,
        "over_time": _over_time(labelled, scored, name, spec),
        "groups": _by_group(labelled, scored, contract, name, spec),
        "fairness": _fairness(labelled, scored, contract, spec),
        "notes": notes,
    }


def _score(labelled: pl.DataFrame, task: str, classes: list[str], notes: list[str]) -> _Scored:
    if task == "regression":
        truth = labelled["label"].cast(pl.Float64, strict=False).to_numpy().astype(np.float64)
        pred = labelled["prediction"].cast(pl.Float64, strict=False).to_numpy().astype(np.float64)
        point, _ = regression_metrics(truth, pred)
        return _Scored(task, truth, pred, None, [], point, list(METRICS[task]))
    truth = np.asarray(labelled["label"].cast(pl.String).to_list(), dtype=object)
    pred = np.asarray(labelled["prediction"].cast(pl.String).to_list(), dtype=object)
    proba = _probabilities(labelled, task, classes, pred)
    available = list(METRICS[task])
    if proba is None:
        notes.append("no predicted probabilities in the log: only label metrics (accuracy, F1)")
        proba = (pred[:, None] == np.asarray(classes, dtype=object)[None, :]).astype(np.float64)
        available = [m for m in available if m not in PROBABILITY_METRICS]
    point, _ = classification_metrics(task, truth, pred, proba, classes)
    return _Scored(task, truth, pred, proba, classes, point, available)


def _probabilities(labelled: pl.DataFrame, task: str, classes: list[str],
                   pred: npt.NDArray[Any]) -> npt.NDArray[np.float64] | None:
    """Class probabilities: ``proba_<class>`` columns, or (binary) the predicted label's ``score``."""
    columns = [f"proba_{c}" for c in classes]
    if all(c in labelled.columns for c in columns):
        return labelled.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy().astype(np.float64)
    if task == "binary" and "score" in labelled.columns:
        score = labelled["score"].cast(pl.Float64).fill_null(0.5).to_numpy().astype(np.float64)
        positive = np.where(pred == classes[1], score, 1.0 - score)
        return np.column_stack([1.0 - positive, positive])
    return None


def _interval(scored: _Scored, rows: npt.NDArray[np.bool_], name: str, spec: PerformanceSpec) -> dict[str, Any]:
    """The metric and its bootstrap interval on a subset of the rows."""
    metric = scored.weighted_on(rows)[name]
    n = int(rows.sum())
    low, high, _ = bootstrap_intervals({name: metric}, n, spec.bootstrap_rounds, spec.confidence, spec.seed,
                                       scored.valid_on(rows))[name]
    return {"n": n, "value": _finite(metric(np.ones((1, n)))[0]), "ci_low": low, "ci_high": high}


def _over_time(labelled: pl.DataFrame, scored: _Scored, name: str, spec: PerformanceSpec) -> list[dict[str, Any]]:
    if "ts" not in labelled.columns:
        return []
    width = parse_window(spec.interval)
    seconds = width.total_seconds() if isinstance(width, dt.timedelta) else 86400.0
    ts = labelled["ts"].cast(pl.Float64).to_numpy()
    bucket = np.floor(ts / seconds)
    out = []
    for start in np.unique(bucket[np.isfinite(bucket)]):
        rows = bucket == start
        entry: dict[str, Any] = {"start": _iso(start * seconds), "end": _iso((start + 1) * seconds)}
        if rows.sum() < spec.min_group_rows:
            out.append({**entry, "n": int(rows.sum()), "value": None, "note": "too few labelled rows"})
        else:
            out.append({**entry, **_interval(scored, rows, name, spec)})
    return out


def _by_group(labelled: pl.DataFrame, scored: _Scored, contract: Contract, name: str,
              spec: PerformanceSpec) -> list[dict[str, Any]]:
    out = []
    for column in contract.columns:
        if not column.sensitive or column.name not in labelled.columns:
            continue
        codes, order = group_labels(labelled[column.name], column, 4)
        groups = []
        for i, label in enumerate(order):
            rows = codes == i
            if not rows.any():
                continue
            if rows.sum() < spec.min_group_rows:
                groups.append({"group": label, "n": int(rows.sum()), "value": None, "note": "too few labelled rows"})
            else:
                groups.append({"group": label, **_interval(scored, rows, name, spec)})
        out.append({"column": column.name, "groups": groups})
    return out


def _fairness(labelled: pl.DataFrame, scored: _Scored, contract: Contract, spec: PerformanceSpec) -> dict[str, Any]:
    if not sensitive_columns(contract, labelled):
        return {}
    return fairness_report(labelled, contract, truth=scored.truth, prediction=scored.prediction,
                           positive=scored.positive, min_rows=spec.min_group_rows, bins=4)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(float(seconds), dt.UTC).isoformat(timespec="seconds")
