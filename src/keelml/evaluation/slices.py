"""Slices of the held-out rows and error analysis: where the model does worse than on the whole.

A slice is one value of a categorical feature, or one quantile bin of a numeric one (values that
fill several quantiles, such as a mass of zeros, get a slice of their own). Missing values form
a `(missing)` slice. Metrics for every slice come from the weighted metric functions with 0/1
weights, so every slice of every column is scored in one vectorised call per metric.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from keelml.model.metrics import (
    CHUNK_CELLS,
    BoolArray,
    FloatArray,
    IntArray,
    WeightedMetric,
    finite,
    percentile_interval,
    resample_weights,
)

if TYPE_CHECKING:
    from keelml.data.contract import ColumnContract, Contract

MISSING = "(missing)"
OTHER = "(other)"
MAX_GROUPS = 50  # distinct values of a free-text column sliced on; the rest are "(other)"
SLICE_METRICS = {
    "binary": ("roc_auc", "accuracy", "log_loss", "brier"),
    "multiclass": ("accuracy", "f1_macro", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}


@dataclass(frozen=True)
class Slice:
    """The rows of one value (or bin) of one column."""

    column: str
    label: str
    mask: BoolArray


def _fmt(value: float) -> str:
    return str(np.format_float_positional(float(value), precision=4, trim="-"))


def group_labels(values: pl.Series, column: ColumnContract, bins: int) -> tuple[IntArray, list[str]]:
    """Each row's group as an index into the group names (values or bins), given in display order."""
    if column.type in ("integer", "float"):
        return _numeric_labels(values.cast(pl.Float64).fill_null(np.nan).to_numpy().astype(np.float64), bins)
    text = values.cast(pl.String)
    counts = text.drop_nulls().value_counts()
    pairs = zip(counts.get_column(text.name).to_list(), counts.get_column("count").to_list(), strict=True)
    by_count = [str(v) for v, _ in sorted(pairs, key=lambda p: (-p[1], p[0]))]
    if column.categories:
        seen = set(by_count)
        order = [c for c in column.categories if c in seen]
        order += [v for v in by_count if v not in set(order)]
    else:
        order = by_count
    if len(order) > MAX_GROUPS:
        kept = set(by_count[:MAX_GROUPS])
        order = [v for v in order if v in kept] + [OTHER]
    codes = text.replace_strict(order, list(range(len(order))), default=len(order) - 1,
                                return_dtype=pl.Int64).to_numpy().copy()
    missing = text.is_null().to_numpy()
    if missing.any():
        codes[missing] = len(order)
        order.append(MISSING)
    return codes.astype(np.int64), order


def _numeric_labels(x: FloatArray, bins: int) -> tuple[IntArray, list[str]]:
    present = ~np.isnan(x)
    values = x[present]
    names: list[str] = []
    starts: list[tuple[float, bool]] = []  # sort key of each name: (its low end, is a bin)
    local = np.zeros(values.size, dtype=np.int64)
    if values.size:
        quantiles = np.quantile(values, np.linspace(0, 1, bins + 1))
        edges, repeats = np.unique(quantiles, return_counts=True)
        points = edges[repeats > 1]  # a value holding at least a whole bin's worth of rows
        for p in points:
            local[values == p] = len(names)
            names.append(f"= {_fmt(p)}")
            starts.append((float(p), False))
        in_rest = ~np.isin(values, points)
        rest = values[in_rest]
        if rest.size:
            cuts = np.unique(np.quantile(rest, np.linspace(0, 1, max(2, bins + 1 - len(points)))))
            spans = ([f"[{_fmt(a)}, {_fmt(b)})" for a, b in itertools.pairwise(cuts[:-1])]
                     + [f"[{_fmt(cuts[-2])}, {_fmt(cuts[-1])}]"]) if len(cuts) > 1 else [f"= {_fmt(cuts[0])}"]
            position = np.clip(np.searchsorted(cuts, rest, side="right") - 1, 0, len(spans) - 1)
            local[in_rest] = len(names) + position
            names += spans
            starts += [(float(cuts[i]), True) for i in range(len(spans))]
    order = sorted(range(len(names)), key=lambda i: starts[i])
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    codes = np.full(len(x), len(names), dtype=np.int64)
    codes[present] = rank[local] if names else 0
    shown = [names[i] for i in order]
    if not present.all():
        shown.append(MISSING)
    return codes, shown


def define_slices(test: pl.DataFrame, contract: Contract, bins: int) -> list[Slice]:
    """One slice per value (categorical) or bin (numeric) of every feature column in the data."""
    slices: list[Slice] = []
    for column in contract.features:
        if column.name not in test.columns:
            continue
        codes, names = group_labels(test.get_column(column.name), column, bins)
        slices.extend(Slice(column.name, label, codes == i) for i, label in enumerate(names))
    return slices


def slice_metrics(slices: list[Slice], weighted: Mapping[str, WeightedMetric], names: list[str],
                  min_rows: int) -> list[dict[str, Any]]:
    """Size and metrics of every slice with at least min_rows rows (smaller ones: size only)."""
    rows: list[dict[str, Any]] = []
    big = [s for s in slices if int(s.mask.sum()) >= min_rows]
    values: dict[str, list[float | None]] = {name: [] for name in names}
    if big:
        per_chunk = max(1, CHUNK_CELLS // len(big[0].mask))
        for start in range(0, len(big), per_chunk):
            weights = np.stack([s.mask for s in big[start:start + per_chunk]]).astype(np.float64)
            for name in names:
                values[name].extend(finite(v) for v in weighted[name](weights))
    position = {id(s): i for i, s in enumerate(big)}
    total = len(slices[0].mask) if slices else 0
    for s in slices:
        n = int(s.mask.sum())
        row: dict[str, Any] = {"column": s.column, "slice": s.label, "n": n,
                               "share": round(n / total, 5) if total else 0.0}
        if id(s) in position:
            row["metrics"] = {name: values[name][position[id(s)]] for name in names}
        rows.append(row)
    return rows


def worst_slices(slices: list[Slice], rows: list[dict[str, Any]], metric: str, overall: float | None,
                 weighted: WeightedMetric, on_subset: Callable[[BoolArray], WeightedMetric], *,
                 greater_is_better: bool, top: int, rounds: int, confidence: float, seed: int) -> list[dict[str, Any]]:
    """The slices where the metric is furthest worse than on all rows, with a bootstrap interval
    of the difference (slice minus all rows, both from the same resamples).

    `on_subset(mask)` is the metric over the masked rows only (cheaper than zero weights).
    """
    if overall is None:
        return []
    sign = 1.0 if greater_is_better else -1.0
    scored = [(sign * (r["metrics"][metric] - overall), s, r) for s, r in zip(slices, rows, strict=True)
              if r.get("metrics") and r["metrics"].get(metric) is not None]
    worst = sorted((item for item in scored if item[0] < 0), key=lambda item: item[0])[:top]
    diffs: list[list[FloatArray]] = [[] for _ in worst]
    if rounds > 0 and worst:
        n = len(worst[0][1].mask)
        parts = [(s.mask, on_subset(s.mask)) for _, s, _ in worst]
        for weights in resample_weights(n, rounds, seed):
            everything = weighted(weights)
            for i, (mask, metric_of_slice) in enumerate(parts):
                diffs[i].append(metric_of_slice(weights[:, mask]) - everything)
    result = []
    for (_, s, r), found in zip(worst, diffs, strict=True):
        low, high, used = percentile_interval(found, confidence)
        value = r["metrics"][metric]
        beyond = low is not None and high is not None and (high < 0 if greater_is_better else low > 0)
        result.append({"column": s.column, "slice": s.label, "n": r["n"], "metric": metric, "value": value,
                       "overall": overall, "difference": value - overall, "ci_low": low, "ci_high": high,
                       "bootstrap_rounds_used": used,
                       "significant": beyond})
    return result


def worst_examples(test: pl.DataFrame, contract: Contract, loss: FloatArray, truth: npt.NDArray[Any],
                   prediction: npt.NDArray[Any], top: int) -> list[dict[str, Any]]:
    """The held-out rows with the highest loss; only the contract's feature columns are shown."""
    if top <= 0 or len(loss) == 0:
        return []
    order = np.argsort(-loss, kind="mergesort")[:top]
    names = [c.name for c in contract.features if c.name in test.columns]
    features = test.select(names)
    examples = []
    for i in order.tolist():
        values = {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                  for k, v in features.row(i, named=True).items()}
        examples.append({"row": int(i), "loss": round(float(loss[i]), 6), "target": _plain(truth[i]),
                         "prediction": _plain(prediction[i]), "features": values})
    return examples


def _plain(value: Any) -> Any:
    """numpy scalars as plain Python values (JSON)."""
    return value.item() if isinstance(value, np.generic) else value
