"""Drift per column between a reference and a current table: effect sizes first, tests under BH control.

The reference is a profile (``keelml.profile/1``, as shipped in every model bundle) or a raw frame,
which is profiled first. The current table is read in one vectorised pass: a single polars
``select`` counts every numeric column on the reference's histogram edges, its mean, its missing
values and its values outside the range; one group-by per categorical column counts its values; all
run together with ``collect_all``. Wasserstein and KS then come from the histogram counts and the
means (docs/monitoring.md gives the error of each), so a raw reference and its profile give the same
verdicts; with a raw reference frame, ``exact=True`` computes both exactly instead, as scipy does
(both samples sorted and merged; slower).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from keelml.data.profile import PROFILE_FORMAT, profile_frame
from keelml.errors import DataError
from keelml.monitor import stats
from keelml.spec.monitor import DISTRIBUTION_STATISTICS, DriftSpec

if TYPE_CHECKING:
    from keelml.data.contract import Contract

DRIFT_FORMAT = "keelml.drift/1"
RAW_REFERENCE_TOP = 1000
"""A raw reference frame is profiled listing up to this many values per category (so unseen is exact)."""
_NUMERIC = ("integer", "float")
_CATEGORICAL = ("category", "boolean")
_OTHER = "(other)"


@dataclass
class _Column:
    """One compared column: its reference profile entry and where its results go in the pass."""

    name: str
    kind: str  # "numeric" or "categorical"
    entry: Mapping[str, Any]
    key: str
    edges: list[float] = field(default_factory=list)
    value_range: tuple[float | None, float | None, str] = (None, None, "none")


def drift_report(reference: Mapping[str, Any] | pl.DataFrame, current: pl.DataFrame, *,
                 contract: Contract | None = None, settings: DriftSpec | None = None,
                 columns: Sequence[str] | None = None, exact: bool = False) -> dict[str, Any]:
    """Drift of every comparable column (features and ``prediction``) of ``current`` against ``reference``.

    ``exact`` computes Wasserstein and KS from both raw samples (as scipy does); it needs a frame.
    ``columns`` restricts the comparison. Returns a JSON-ready dict (format ``keelml.drift/1``) whose
    every statistic carries value, threshold, sample sizes and verdict.
    """
    settings = settings or DriftSpec()
    raw = reference if isinstance(reference, pl.DataFrame) else None
    profile = (profile_frame(raw, contract, top=RAW_REFERENCE_TOP) if raw is not None
               else check_profile(reference))  # type: ignore[arg-type]
    if exact and raw is None:
        raise ValueError("exact statistics need the raw reference frame, not only its profile")
    plan, skipped, missing = _plan(profile, current, contract, settings, columns)
    typed = current.select(_typed(c, current.schema[c.name]) for c in plan) if plan else pl.DataFrame()
    numeric = [c for c in plan if c.kind == "numeric"]
    categorical = [c for c in plan if c.kind == "categorical"]
    queries = [typed.lazy().select(_pass_exprs(plan) or [pl.lit(0).alias("none")])]
    queries += [typed.lazy().select(pl.col(c.key).alias("value")).drop_nulls().group_by("value").len("count")
                for c in categorical]
    results = pl.collect_all(queries)
    row = results[0].row(0, named=True)
    counts = {c.key: dict(zip(f["value"].to_list(), f["count"].to_list(), strict=True))
              for c, f in zip(categorical, results[1:], strict=True)}
    shape: dict[str, dict[str, Any]] = {}
    if exact and raw is not None:
        for col in numeric:
            reference_values = raw.select(_typed(col, raw.schema[col.name]))[col.key]
            shape[col.key] = _exact(_finite_sorted(reference_values), _finite_sorted(typed[col.key]))
    height = current.height
    entries = []
    for col in plan:
        if col.kind == "numeric":
            entries.append(_numeric(col, row, shape.get(col.key), _rows(col.entry), height, settings))
        else:
            entries.append(_categorical(col, row, counts[col.key], _rows(col.entry), height, settings))
    _judge(entries, height, settings)
    enough = height >= settings.min_rows
    entries += [{"column": name, "verdict": "missing" if enough else "insufficient", "statistics": {},
                 "reasons": ["column missing from the current data"] if enough else [], "notes": []}
                for name in missing]
    judged = [e for e in entries if e["verdict"] in ("drift", "ok", "missing")]
    drifted = [e["column"] for e in entries if e["verdict"] in ("drift", "missing")]
    return {
        "format": DRIFT_FORMAT,
        "reference": {"rows": profile["rows"], "contract_version": profile.get("contract_version"),
                      "source": "frame" if raw is not None else "profile"},
        "current": {"rows": height},
        "exact": exact,
        "settings": settings.model_dump(mode="json"),
        "columns": entries,
        "skipped": skipped,
        "evaluated": len(judged),
        "drifted": drifted,
        "share_drifted": len(drifted) / len(judged) if judged else 0.0,
    }


def check_profile(profile: Mapping[str, Any]) -> dict[str, Any]:
    """The profile, if it has the shape drift needs (it may come from a file); DataError otherwise."""
    def bad(why: str) -> DataError:
        return DataError(f"the drift reference is not a usable keelml profile: {why}",
                         expected=f"a JSON document with format {PROFILE_FORMAT!r}",
                         fix="give a profile written by `keel profile --json` or shipped in a model bundle")

    if not isinstance(profile, Mapping) or profile.get("format") != PROFILE_FORMAT:
        raise bad("wrong or missing format")
    columns = profile.get("columns")
    if not isinstance(columns, list) or not isinstance(profile.get("rows"), int):
        raise bad("no columns list or row count")
    for entry in columns:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise bad("a column without a name")
        if not isinstance(entry.get("count", 0), int) or not isinstance(entry.get("nulls", 0), int):
            raise bad(f"column {entry['name']!r}: counts are not integers")
        if entry.get("type") in _NUMERIC and entry.get("count"):
            histogram = entry.get("histogram") or {}
            edges, counts = histogram.get("edges"), histogram.get("counts")
            if (not isinstance(edges, list) or not isinstance(counts, list) or len(counts) != len(edges) + 1
                    or not all(isinstance(v, int | float) for v in [*edges, *counts])):
                raise bad(f"column {entry['name']!r}: no histogram with len(counts) == len(edges) + 1")
        if entry.get("type") in _CATEGORICAL:
            top, domain = entry.get("top", []), entry.get("domain")
            if not isinstance(top, list) or not all(isinstance(t, Mapping) and isinstance(t.get("value"), str)
                                                    and isinstance(t.get("count"), int) for t in top):
                raise bad(f"column {entry['name']!r}: top values are not {{value, count}} pairs")
            if domain is not None and not (isinstance(domain, Mapping)
                                           and all(isinstance(n, int) for n in domain.values())):
                raise bad(f"column {entry['name']!r}: domain counts are not integers")
    return dict(profile)


def _plan(profile: Mapping[str, Any], current: pl.DataFrame, contract: Contract | None, settings: DriftSpec,
          wanted: Sequence[str] | None) -> tuple[list[_Column], list[dict[str, str]], list[str]]:
    """The columns to compare, those skipped with the reason, and reference features absent from ``current``."""
    plan: list[_Column] = []
    skipped: list[dict[str, str]] = []
    missing: list[str] = []
    listed = {e["name"]: e for e in profile.get("columns", [])}
    if wanted is not None:
        skipped += [{"column": n, "reason": "not in the reference"} for n in wanted if n not in listed]
    for name, entry in listed.items():
        if (wanted is not None and name not in wanted) or name in settings.exclude:
            continue
        if entry.get("role") not in (None, "feature") and name != "prediction":
            continue
        if name not in current.columns:
            if name != "prediction":
                missing.append(name)
            continue
        kind = entry.get("type")
        key = f"c{len(plan)}"
        if kind in _NUMERIC:
            if not entry.get("count") or entry.get("mean") is None:
                skipped.append({"column": name, "reason": "the reference has no finite values"})
                continue
            plan.append(_Column(name, "numeric", entry, key, edges=list(entry["histogram"]["edges"]),
                                value_range=_range(name, entry, contract)))
        elif kind in _CATEGORICAL:
            plan.append(_Column(name, "categorical", entry, key))
        else:
            skipped.append({"column": name, "reason": f"type {kind}: free text and dates are not compared"})
    return plan, skipped, missing


def _rows(entry: Mapping[str, Any]) -> int:
    """Rows the reference column was profiled on (present and missing values)."""
    return int(entry.get("count", 0)) + int(entry.get("nulls", 0))


def _range(name: str, entry: Mapping[str, Any], contract: Contract | None) -> tuple[float | None, float | None, str]:
    """The allowed range: the contract's bounds when it has them, else the reference's min and max."""
    if contract is not None:
        try:
            col = contract.column(name)
        except KeyError:
            col = None
        if col is not None and (col.min is not None or col.max is not None):
            return col.min, col.max, "contract"
    return entry.get("min"), entry.get("max"), "reference"


def _typed(col: _Column, dtype: pl.DataType) -> pl.Expr:
    """The column as a float (numeric) or as text (categorical), like the profile reads it."""
    raw = pl.col(col.name)
    if col.kind == "numeric":
        value = raw.cast(pl.Float64, strict=False) if dtype.is_numeric() else (
            raw.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False))
    elif col.entry.get("type") == "boolean" and dtype != pl.Boolean:
        value = raw.cast(pl.String).str.strip_chars().str.to_lowercase()
    else:
        value = raw.cast(pl.String)
    return value.alias(col.key)


def _pass_exprs(plan: list[_Column]) -> list[pl.Expr]:
    """Every single-value statistic of the current data, for one select."""
    exprs: list[pl.Expr] = []
    for col in plan:
        v, k = pl.col(col.key), col.key
        if col.kind == "categorical":
            exprs.append(v.null_count().alias(f"{k}_missing"))
            continue
        valid = v.filter(v.is_not_nan())
        low, high, _ = col.value_range
        outside = pl.lit(False)
        if low is not None:
            outside = outside | (valid < low)
        if high is not None:
            outside = outside | (valid > high)
        exprs += [(v.null_count() + v.is_nan().sum()).alias(f"{k}_missing"),
                  valid.count().alias(f"{k}_valid"),
                  outside.sum().alias(f"{k}_outside"),
                  v.filter(v.is_finite()).mean().alias(f"{k}_mean")]
        exprs += [(v < edge).sum().alias(f"{k}_below{j}") for j, edge in enumerate(col.edges)]
    return exprs


def _finite_sorted(values: pl.Series) -> npt.NDArray[np.float64]:
    """The finite values of a float column, sorted (numpy's sort is the cheapest way to many quantiles)."""
    array = values.to_numpy()
    array = array[np.isfinite(array)]
    array.sort()
    return np.asarray(array, dtype=np.float64)


def _exact(reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64]) -> dict[str, float]:
    """Exact two-sample KS statistic and Wasserstein-1 distance of sorted samples (scipy's definitions)."""
    if reference.size == 0 or current.size == 0:
        return {"ks": math.nan, "wasserstein": math.nan}
    points = np.concatenate([reference, current])
    points.sort()
    gap = (np.searchsorted(reference, points[:-1], side="right") / reference.size
           - np.searchsorted(current, points[:-1], side="right") / current.size)
    return {"ks": float(np.max(np.abs(gap))) if gap.size else 0.0,
            "wasserstein": float(np.sum(np.abs(gap) * np.diff(points)))}


def _stat(value: float | None, threshold: float, n_ref: int, n_cur: int, **extra: Any) -> dict[str, Any]:
    verdict = "n/a" if value is None else ("drift" if value > threshold else "ok")
    return {"value": value, "threshold": threshold, "rule": "value > threshold", "verdict": verdict,
            "n_reference": n_ref, "n_current": n_cur, **extra}


def _numeric(col: _Column, row: Mapping[str, Any], exact: Mapping[str, float] | None, ref_rows: int, height: int,
             settings: DriftSpec) -> dict[str, Any]:
    entry, k, limits = col.entry, col.key, settings.thresholds
    ref_counts = [int(c) for c in entry["histogram"]["counts"]]
    n_ref = sum(ref_counts)
    n_cur = int(row[f"{k}_valid"])
    below = [int(row[f"{k}_below{j}"]) for j in range(len(col.edges))]
    cur_counts = [b - a for a, b in zip([0, *below], [*below, n_cur], strict=True)]
    std = entry.get("std")
    scale = float(std) if std else 1.0
    notes = [] if std else ["the reference is constant: Wasserstein is not divided by its std"]
    mean = row[f"{k}_mean"]
    w_value: float | None
    ks_value: float | None
    if exact is not None:
        ks_value, w_value, method = exact["ks"], exact["wasserstein"], "exact"
    else:
        ks_value = stats.ks_from_bins(ref_counts, cur_counts)
        w_value, method = _wasserstein(entry, col.edges, ref_counts, cur_counts, mean), "histogram and means"
    if not n_cur:
        ks_value = w_value = None
    ks_value = float(ks_value) if ks_value is not None and math.isfinite(ks_value) else None
    low, high, source = col.value_range
    outside = int(row[f"{k}_outside"])
    ref_missing = (int(entry.get("nulls", 0)) + int(entry.get("nan", 0))) / ref_rows if ref_rows else 0.0
    cur_missing = int(row[f"{k}_missing"]) / height if height else 0.0
    return {
        "column": col.name, "kind": "numeric", "type": entry.get("type"), "n_reference": n_ref, "n_current": n_cur,
        "reference_mean": entry.get("mean"), "current_mean": float(mean) if mean is not None else None,
        "statistics": {
            "wasserstein": _stat(None if w_value is None or not math.isfinite(w_value) else w_value / scale,
                                 limits.wasserstein, n_ref, n_cur, method=method, scale=scale),
            "psi": _stat(stats.psi(ref_counts, cur_counts) if n_cur else None, limits.psi, n_ref, n_cur,
                         bins=len(ref_counts)),
            "ks": _stat(ks_value, limits.ks, n_ref, n_cur,
                        method="exact" if exact is not None else "histogram edges",
                        p_value=stats.ks_pvalue(ks_value, n_ref, n_cur) if ks_value is not None else None),
            "out_of_range": _stat(outside / n_cur if n_cur else None, limits.out_of_range, n_ref, n_cur,
                                  count=outside, range=[low, high], range_source=source),
            "nulls": _stat(max(0.0, cur_missing - ref_missing), limits.nulls, ref_rows, height,
                           reference_share=ref_missing, current_share=cur_missing),
        },
        "test": "ks", "notes": notes,
    }


def _wasserstein(entry: Mapping[str, Any], edges: list[float], ref_counts: list[int], cur_counts: list[int],
                 mean: float | None) -> float:
    """The larger of the histogram Wasserstein distance and the shift of the mean (a lower bound of W1)."""
    quantiles = entry.get("quantiles") or {}
    low, high = quantiles.get("0.01"), quantiles.get("0.99")
    binned = stats.binned_wasserstein(edges, ref_counts, cur_counts, edges[0] if low is None else low,
                                      edges[-1] if high is None else high) if edges else 0.0
    shift = abs(float(mean) - float(entry["mean"])) if mean is not None and entry.get("mean") is not None else 0.0
    return max(binned, shift)


def _categorical(col: _Column, row: Mapping[str, Any], found: Mapping[str, int], ref_rows: int, height: int,
                 settings: DriftSpec) -> dict[str, Any]:
    entry, limits = col.entry, settings.thresholds
    domain = entry.get("domain")
    if domain is not None:
        listed, ref_listed = list(domain), [int(n) for n in domain.values()]
        ref_other, basis = int(entry.get("outside_domain", 0)), "contract categories"
    else:
        top = entry.get("top") or []
        listed, ref_listed = [t["value"] for t in top], [int(t["count"]) for t in top]
        ref_other = int(entry.get("other", 0))
        basis = "reference values" if ref_other == 0 else f"the reference's {len(listed)} most frequent values"
    n_ref = sum(ref_listed) + ref_other
    n_cur = int(sum(found.values()))
    cur_listed = [int(found.get(v, 0)) for v in listed]
    cur_other = n_cur - sum(cur_listed)
    ref_counts, cur_counts = [*ref_listed, ref_other], [*cur_listed, cur_other]
    statistic, dof, p_value = stats.chi2_test(ref_counts, cur_counts)
    ref_missing = int(entry.get("nulls", 0)) / ref_rows if ref_rows else 0.0
    cur_missing = int(row[f"{col.key}_missing"]) / height if height else 0.0
    unseen = sorted(((v, n) for v, n in found.items() if v not in set(listed)), key=lambda x: -x[1])[:5]
    return {
        "column": col.name, "kind": "categorical", "type": entry.get("type"), "n_reference": n_ref,
        "n_current": n_cur,
        "statistics": {
            "jensen_shannon": _stat(stats.jensen_shannon(ref_counts, cur_counts) if n_cur else None,
                                    limits.jensen_shannon, n_ref, n_cur, categories=len(listed)),
            "psi": _stat(stats.psi(ref_counts, cur_counts) if n_cur else None, limits.psi, n_ref, n_cur,
                         bins=len(ref_counts)),
            "chi2": {"value": statistic, "dof": dof, "p_value": p_value if n_cur else None,
                     "threshold": settings.fdr, "rule": "p_adjusted <= threshold", "verdict": "n/a",
                     "n_reference": n_ref, "n_current": n_cur},
            "unseen": _stat(cur_other / n_cur if n_cur else None, limits.unseen, n_ref, n_cur, count=cur_other,
                            basis=basis, exact=domain is not None or ref_other == 0,
                            examples=[{"value": v, "count": int(n)} for v, n in unseen]),
            "nulls": _stat(max(0.0, cur_missing - ref_missing), limits.nulls, ref_rows, height,
                           reference_share=ref_missing, current_share=cur_missing),
        },
        "test": "chi2", "notes": [],
    }


def _judge(entries: list[dict[str, Any]], height: int, settings: DriftSpec) -> None:
    """Benjamini-Hochberg over the columns' tests, then each column's verdict with its reasons."""
    tested = [e for e in entries if e["statistics"][e["test"]].get("p_value") is not None]
    adjusted = stats.benjamini_hochberg([e["statistics"][e["test"]]["p_value"] for e in tested])
    for entry, q in zip(tested, adjusted, strict=True):
        test = entry["statistics"][entry["test"]]
        test["p_adjusted"] = q
        entry["significant"] = q <= settings.fdr
        if entry["test"] == "chi2":
            test["verdict"] = "drift" if entry["significant"] else "ok"
    for entry in entries:
        entry.setdefault("significant", None)
        reasons: list[str] = []
        for name in settings.decide_on:
            result = entry["statistics"].get(name)
            if result is None or result["verdict"] != "drift":
                continue
            text = f"{name} {result['value']:.4g} > {result['threshold']:g}"
            if name in DISTRIBUTION_STATISTICS:
                if entry["n_current"] < settings.min_rows:
                    continue
                if settings.require_significance and not entry["significant"]:
                    entry["notes"].append(f"{text}, but not significant (BH-adjusted p "
                                          f"{entry['statistics'][entry['test']].get('p_adjusted', 1.0):.3g})")
                    continue
            reasons.append(text)
        entry["reasons"] = reasons
        if height < settings.min_rows:
            entry["verdict"] = "insufficient"
            entry["notes"].append(f"{height} rows in the window, fewer than min_rows {settings.min_rows}")
        else:
            entry["verdict"] = "drift" if reasons else "ok"
