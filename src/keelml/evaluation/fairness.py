"""Fairness on held-out rows for each sensitive column, computed with Fairlearn.

Groups smaller than the minimum slice size are listed but left out of the differences: a
difference driven by a handful of rows says more about noise than about the model.

Fairlearn and scikit-learn's metrics are imported inside the functions that compute with them:
`keel monitor` imports this module and loads them only when a window has sensitive columns to report on.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from keelml.evaluation.slices import group_labels
from keelml.model.metrics import FloatArray, IntArray, finite

if TYPE_CHECKING:
    import polars as pl

    from keelml.data.contract import Contract

# The differences each task is judged by (gate.max_fairness_difference applies to each).
GATED = {
    "binary": ("demographic_parity_difference", "equalized_odds_difference"),
    "multiclass": ("accuracy_difference",),
    "regression": ("mae_relative_difference",),
}


def sensitive_columns(contract: Contract, test: pl.DataFrame) -> list[str]:
    """The contract's sensitive columns that are present in the held-out data."""
    return [c.name for c in contract.columns if c.sensitive and c.name in test.columns]


def fairness_report(test: pl.DataFrame, contract: Contract, *, truth: npt.NDArray[Any],
                    prediction: npt.NDArray[Any], positive: str | None, min_rows: int,
                    bins: int) -> dict[str, Any]:
    """Per sensitive column: per-group rates (or errors) and the differences between groups."""
    columns = []
    for name in sensitive_columns(contract, test):
        codes, order = group_labels(test.get_column(name), contract.column(name), bins)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undefined rates (a group without positives) become null
            if contract.task == "binary":
                entry = _binary(truth == positive, prediction == positive, codes, order, min_rows)
            elif contract.task == "multiclass":
                entry = _multiclass(truth, prediction, codes, order, min_rows)
            else:
                entry = _regression(truth.astype(np.float64), prediction.astype(np.float64), codes, order,
                                    min_rows)
        columns.append({"column": name, **entry})
    return {"min_group_rows": min_rows, "gated": list(GATED[contract.task]), "columns": columns}


def _aggregate(codes: IntArray, truth: IntArray, guess: IntArray, k: int) -> tuple[IntArray, IntArray, IntArray,
                                                                                   FloatArray]:
    """Distinct (group, truth, prediction) combinations (classes as indices below k) and their counts.

    Fairlearn's per-group metrics take sample weights, so scoring the distinct combinations with
    their counts as weights gives exactly the per-row results at a fraction of the cost.
    """
    keys, counts = np.unique((codes * k + truth) * k + guess, return_counts=True)
    return keys // (k * k), (keys // k) % k, keys % k, counts.astype(np.float64)


def _by_group(metrics: dict[str, Any], y_true: npt.NDArray[Any], y_pred: npt.NDArray[Any],
              groups: npt.NDArray[Any], weights: FloatArray | None) -> Any:
    """Fairlearn's MetricFrame of the metrics per group (a pandas frame indexed by group name)."""
    from fairlearn.metrics import MetricFrame

    params = {k: {"sample_weight": weights} for k in metrics} if weights is not None else None
    return MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=groups,
                       sample_params=params).by_group


def _groups(order: list[str], codes: IntArray, by_group: Any, extra: dict[str, FloatArray],
            min_rows: int) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Rows per group in display order, the groups kept for differences and the excluded ones."""
    sizes = np.bincount(codes, minlength=len(order))
    groups: list[dict[str, Any]] = []
    for i, label in enumerate(order):
        if sizes[i]:
            values = {str(k): finite(v) for k, v in by_group.loc[label].items()}
            groups.append({"group": label, "n": int(sizes[i]), **values,
                           **{k: finite(v[i]) for k, v in extra.items()}})
    kept = [order[i] for i in range(len(order)) if sizes[i] >= min_rows]
    return groups, kept, [order[i] for i in range(len(order)) if 0 < sizes[i] < min_rows]


def _per_group_mean(codes: IntArray, values: FloatArray, size: int) -> FloatArray:
    counts = np.bincount(codes, minlength=size)
    sums = np.bincount(codes, weights=values, minlength=size)
    means: FloatArray = np.divide(sums, counts, out=np.full(size, np.nan), where=counts > 0)
    return means


def _note(kept: list[str], min_rows: int) -> str | None:
    return None if len(kept) >= 2 else f"fewer than 2 groups with at least {min_rows} rows: differences not measurable"


def _spread(groups: list[dict[str, Any]], kept: list[str], key: str) -> float | None:
    """Largest minus smallest value of a metric over the kept groups (None if fewer than two)."""
    values = [float(g[key]) for g in groups if g["group"] in kept and g[key] is not None]
    return max(values) - min(values) if len(kept) >= 2 and len(values) >= 2 else None


def _binary(y_true: npt.NDArray[np.bool_], y_pred: npt.NDArray[np.bool_], codes: IntArray, order: list[str],
            min_rows: int) -> dict[str, Any]:
    from fairlearn.metrics import false_positive_rate, selection_rate, true_positive_rate

    group, t, p, weights = _aggregate(codes, y_true.astype(np.int64), y_pred.astype(np.int64), 2)
    by_group = _by_group({"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
                         t, p, np.asarray(order, dtype=object)[group], weights)
    extra = {"accuracy": _per_group_mean(codes, (y_true == y_pred).astype(np.float64), len(order)),
             "positive_rate": _per_group_mean(codes, y_true.astype(np.float64), len(order))}
    groups, kept, excluded = _groups(order, codes, by_group, extra, min_rows)
    # Fairlearn's definitions (between groups, worst case) over the groups large enough to count
    tpr, fpr = _spread(groups, kept, "tpr"), _spread(groups, kept, "fpr")
    differences = {"demographic_parity_difference": _spread(groups, kept, "selection_rate"),
                   "equalized_odds_difference": None if tpr is None or fpr is None else max(tpr, fpr)}
    return {"groups": groups, "excluded": excluded, "differences": differences, "note": _note(kept, min_rows)}


def _multiclass(truth: npt.NDArray[Any], prediction: npt.NDArray[Any], codes: IntArray, order: list[str],
                min_rows: int) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score

    classes, index = np.unique(np.concatenate([truth.astype(str), prediction.astype(str)]), return_inverse=True)
    n = len(truth)
    group, t, p, weights = _aggregate(codes, index[:n], index[n:], len(classes))
    by_group = _by_group({"accuracy": accuracy_score}, t, p, np.asarray(order, dtype=object)[group], weights)
    groups, kept, excluded = _groups(order, codes, by_group, {}, min_rows)
    return {"groups": groups, "excluded": excluded,
            "differences": {"accuracy_difference": _spread(groups, kept, "accuracy")}, "note": _note(kept, min_rows)}


def _regression(truth: FloatArray, prediction: FloatArray, codes: IntArray, order: list[str],
                min_rows: int) -> dict[str, Any]:
    from sklearn.metrics import mean_absolute_error

    by_group = _by_group({"mae": mean_absolute_error}, truth, prediction, np.asarray(order, dtype=object)[codes], None)
    extra = {"mean_prediction": _per_group_mean(codes, prediction, len(order))}
    groups, kept, excluded = _groups(order, codes, by_group, extra, min_rows)
    difference = _spread(groups, kept, "mae")
    rows = np.isin(np.asarray(order, dtype=object)[codes], kept)
    overall = float(np.mean(np.abs(truth[rows] - prediction[rows]))) if rows.any() else 0.0
    relative = difference / overall if difference is not None and overall > 0 else None
    return {"groups": groups, "excluded": excluded, "mae_difference": difference,
            "differences": {"mae_relative_difference": relative}, "note": _note(kept, min_rows)}
