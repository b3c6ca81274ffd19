"""One monitoring run: drift, live performance and the alert rules over a window of predictions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from keelml.monitor.drift import drift_report
from keelml.monitor.performance import live_performance
from keelml.monitor.rules import evaluate_rules
from keelml.spec.monitor import MonitorSpec

if TYPE_CHECKING:
    import polars as pl

    from keelml.data.contract import Contract

MONITOR_FORMAT = "keelml.monitor/1"


def check_window(frame: pl.DataFrame, *, reference: Mapping[str, Any], contract: Contract, spec: MonitorSpec,
                 metric: str | None = None) -> dict[str, Any]:
    """Drift of ``frame`` against ``reference``, its live metrics, and every rule's outcome.

    ``metric`` is the primary metric to report (default: monitor.performance.metric, else the
    task's). The result's ``fired`` lists the rules that fired: a non-empty list means alert.
    """
    drift = drift_report(reference, frame, contract=contract, settings=spec.drift)
    performance = live_performance(frame, contract, spec.performance, metric)
    rules = evaluate_rules(spec.rules, drift=drift, performance=performance, frame=frame, settings=spec.drift,
                           min_labelled=spec.performance.min_rows)
    versions = (sorted({int(v) for v in frame["model_version"].drop_nulls().to_list()})
                if "model_version" in frame.columns else [])
    return {
        "format": MONITOR_FORMAT,
        "rows": frame.height,
        "model_versions_in_window": versions,
        "drift": drift,
        "performance": performance,
        "rules": rules,
        "fired": [r for r in rules if r["status"] == "fired"],
    }


def summary_of(report: Mapping[str, Any]) -> dict[str, Any]:
    """The short form sent with alerts: window size, drifted columns, the live primary metric."""
    drift = report["drift"]
    performance = report["performance"]
    return {
        "rows": report["rows"],
        "drifted_columns": drift["drifted"],
        "share_drifted": drift["share_drifted"],
        "primary_metric": performance.get("primary") if performance.get("available") else None,
    }
