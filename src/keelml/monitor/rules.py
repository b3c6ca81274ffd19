"""Alert rules: each one reads the drift report, the live performance or a column of the log.

A rule is ``fired``, ``ok`` or ``not evaluated`` (what it reads is absent, or too few rows), always
with the value it saw, its threshold and a one-line detail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from keelml.model.metrics import LOWER_IS_BETTER
from keelml.spec.monitor import DriftSpec, RuleSpec

DEFAULT_DRIFT_SHARE = 0.3


def _result(rule: RuleSpec, status: str, value: Any, threshold: float | None, detail: str,
            **extra: Any) -> dict[str, Any]:
    return {"rule": rule.label, "kind": rule.kind, "status": status, "value": value, "threshold": threshold,
            "detail": detail, "actions": rule.actions, **extra}


def evaluate_rules(rules: Sequence[RuleSpec], *, drift: Mapping[str, Any], performance: Mapping[str, Any],
                   frame: pl.DataFrame, settings: DriftSpec, min_labelled: int) -> list[dict[str, Any]]:
    """The outcome of every rule, in the order of the spec."""
    out = []
    for rule in rules:
        if rule.kind == "feature_drift":
            out.append(_feature_drift(rule, drift, settings))
        elif rule.kind == "drift_share":
            out.append(_drift_share(rule, drift))
        elif rule.kind == "performance":
            out.append(_performance(rule, performance, min_labelled))
        elif rule.kind == "error_rate":
            out.append(_error_rate(rule, frame, settings.min_rows))
        else:
            out.append(_latency(rule, frame, settings.min_rows))
    return out


def _feature_drift(rule: RuleSpec, drift: Mapping[str, Any], settings: DriftSpec) -> dict[str, Any]:
    entries = [e for e in drift.get("columns", []) if rule.column is None or e["column"] == rule.column]
    if not entries:
        return _result(rule, "not evaluated", None, rule.threshold,
                       f"column {rule.column!r} was not compared" if rule.column else "no column was compared")
    judged = [e for e in entries if e["verdict"] != "insufficient"]
    if not judged:
        return _result(rule, "not evaluated", None, rule.threshold, "too few rows in the window")
    if rule.statistic is None:
        drifted = [e for e in judged if e["verdict"] in ("drift", "missing")]
        detail = "; ".join(f"{e['column']}: {', '.join(e['reasons'])}" for e in drifted) or "no column drifted"
        return _result(rule, "fired" if drifted else "ok", len(drifted), 0, detail,
                       columns=[e["column"] for e in drifted])
    threshold = rule.threshold if rule.threshold is not None else float(getattr(settings.thresholds,
                                                                                rule.statistic))
    values = [(e["column"], e["statistics"][rule.statistic]["value"]) for e in judged
              if e["statistics"].get(rule.statistic, {}).get("value") is not None]
    if not values:
        return _result(rule, "not evaluated", None, threshold, f"no column has {rule.statistic}")
    over = [(c, v) for c, v in values if v > threshold]
    worst = max(values, key=lambda cv: cv[1])
    detail = ", ".join(f"{c} {rule.statistic} {v:.4g}" for c, v in over) or f"largest: {worst[0]} {worst[1]:.4g}"
    return _result(rule, "fired" if over else "ok", worst[1], threshold, detail, columns=[c for c, _ in over])


def _drift_share(rule: RuleSpec, drift: Mapping[str, Any]) -> dict[str, Any]:
    threshold = rule.threshold if rule.threshold is not None else DEFAULT_DRIFT_SHARE
    if not drift.get("evaluated"):
        return _result(rule, "not evaluated", None, threshold, "no column could be judged (too few rows?)")
    share = float(drift["share_drifted"])
    detail = f"{len(drift['drifted'])} of {drift['evaluated']} columns drifted"
    return _result(rule, "fired" if share > threshold else "ok", share, threshold, detail)


def _performance(rule: RuleSpec, performance: Mapping[str, Any], min_labelled: int) -> dict[str, Any]:
    threshold = float(rule.threshold)  # type: ignore[arg-type]  # required for this kind by the spec
    if not performance.get("available"):
        return _result(rule, "not evaluated", None, threshold, str(performance.get("reason", "no labels")))
    name = rule.metric or performance["metric"]
    found = performance["metrics"].get(name)
    if found is None or found["value"] is None:
        return _result(rule, "not evaluated", None, threshold, f"{name} is not available from the log")
    if performance["n_labelled"] < min_labelled:
        return _result(rule, "not evaluated", found["value"], threshold,
                       f"{performance['n_labelled']} labelled rows, fewer than {min_labelled}")

    value = float(found["value"])
    worse = value > threshold if name in LOWER_IS_BETTER else value < threshold
    sign = (">" if worse else "<=") if name in LOWER_IS_BETTER else ("<" if worse else ">=")
    detail = (f"{name} {value:.4f} {sign} {threshold:g} on {performance['n_labelled']} labelled rows "
              f"(interval {_fmt(found['ci_low'])} to {_fmt(found['ci_high'])})")
    return _result(rule, "fired" if worse else "ok", value, threshold, detail, metric=name)


def _error_rate(rule: RuleSpec, frame: pl.DataFrame, min_rows: int) -> dict[str, Any]:
    threshold = float(rule.threshold)  # type: ignore[arg-type]
    if "error" not in frame.columns:
        return _result(rule, "not evaluated", None, threshold, "the log has no error column")
    if frame.height < min_rows:
        return _result(rule, "not evaluated", None, threshold, f"{frame.height} rows, fewer than {min_rows}")
    column = frame["error"]
    if column.dtype == pl.Boolean:
        failed = column.fill_null(False)
    elif column.dtype.is_numeric():
        failed = column.fill_null(0) != 0
    else:
        failed = column.cast(pl.String).fill_null("").str.strip_chars() != ""
    rate = float(failed.mean() or 0.0)  # type: ignore[arg-type]
    detail = f"{int(failed.sum())} of {frame.height} rows are errors"
    return _result(rule, "fired" if rate > threshold else "ok", rate, threshold, detail)


def _latency(rule: RuleSpec, frame: pl.DataFrame, min_rows: int) -> dict[str, Any]:
    threshold = float(rule.threshold)  # type: ignore[arg-type]
    if "latency_ms" not in frame.columns:
        return _result(rule, "not evaluated", None, threshold, "the log has no latency_ms column")
    # one latency per request: a request of many rows is logged once per row with the same latency
    requests = frame.unique(subset=["request_id"]) if "request_id" in frame.columns else frame
    latency = requests["latency_ms"].cast(pl.Float64).drop_nulls()
    if latency.len() < min_rows:
        return _result(rule, "not evaluated", None, threshold, f"{latency.len()} requests, fewer than {min_rows}")
    p99 = float(latency.quantile(0.99, "linear") or 0.0)
    detail = f"p99 {p99:.1f} ms over {latency.len()} requests"
    return _result(rule, "fired" if p99 > threshold else "ok", p99, threshold, detail)


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.4f}"
