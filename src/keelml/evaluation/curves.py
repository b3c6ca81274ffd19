"""Curves of a binary classifier on held-out rows: ROC, precision-recall and calibration."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import precision_recall_curve, roc_curve

MAX_POINTS = 200  # points kept per curve: enough to draw, small enough to store
CALIBRATION_BINS = 10


def _thin(*columns: npt.NDArray[np.float64]) -> list[list[float]]:
    """At most MAX_POINTS evenly spaced points of each column (first and last kept), rounded."""
    n = len(columns[0])
    keep = np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(int)) if n else np.empty(0, int)
    return [np.round(c[keep], 5).tolist() for c in columns]


def binary_curves(is_pos: npt.NDArray[np.bool_], score: npt.NDArray[np.float64]) -> dict[str, Any]:
    """ROC and PR curves (thinned) and a 10-bin calibration table; curves need both classes."""
    result: dict[str, Any] = {"calibration": calibration_table(is_pos, score)}
    if not (is_pos.any() and (~is_pos).any()):
        result["roc"] = result["pr"] = None
        return result
    fpr, tpr, _ = roc_curve(is_pos, score)
    roc_x, roc_y = _thin(fpr, tpr)
    result["roc"] = {"fpr": roc_x, "tpr": roc_y}
    precision, recall, _ = precision_recall_curve(is_pos, score)
    pr_x, pr_y = _thin(recall[::-1], precision[::-1])
    result["pr"] = {"recall": pr_x, "precision": pr_y, "prevalence": float(is_pos.mean())}
    return result


def calibration_table(is_pos: npt.NDArray[np.bool_], score: npt.NDArray[np.float64],
                      bins: int = CALIBRATION_BINS) -> list[dict[str, Any]]:
    """Equal-width bins of the predicted probability: mean prediction, observed rate, count."""
    index = np.clip((score * bins).astype(int), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    predicted = np.bincount(index, weights=score, minlength=bins)
    observed = np.bincount(index, weights=is_pos.astype(np.float64), minlength=bins)
    table = []
    for b in range(bins):
        if counts[b]:
            table.append({"low": b / bins, "high": (b + 1) / bins, "count": int(counts[b]),
                          "mean_predicted": round(float(predicted[b] / counts[b]), 5),
                          "observed_rate": round(float(observed[b] / counts[b]), 5)})
    return table
