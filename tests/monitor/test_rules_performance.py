"""Rules over drift, live performance, errors and latency; the log action; live metrics from feedback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from keelml.data.contract import Contract
from keelml.monitor.actions import ActionContext, compare, run_actions
from keelml.monitor.check import check_window
from keelml.monitor.performance import live_performance
from keelml.monitor.rules import evaluate_rules
from keelml.spec.monitor import DriftSpec, MonitorSpec, PerformanceSpec, RuleSpec

CONTRACT = Contract.model_validate({"target": "y", "task": "binary", "classes": ["no", "yes"], "columns": [
    {"name": "x", "type": "float"},
    {"name": "group", "type": "category", "categories": ["a", "b"], "sensitive": True},
    {"name": "y", "type": "category", "role": "target", "categories": ["no", "yes"]},
]})


def logged(n: int = 2000, seed: int = 4, quality: float = 2.0) -> pl.DataFrame:
    """A prediction log with feedback: score = probability of the predicted label, as the server logs it."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.4
    p_yes = 1 / (1 + np.exp(-(quality * (truth - 0.5) + rng.normal(0, 1, n))))
    prediction = np.where(p_yes >= 0.5, "yes", "no")
    return pl.DataFrame({
        "request_id": [f"r{i}" for i in range(n)], "ts": 1_699_963_200.0 + np.arange(n) * 60.0,
        "x": rng.normal(0, 1, n), "group": rng.choice(["a", "b"], n),
        "prediction": prediction, "score": np.where(prediction == "yes", p_yes, 1 - p_yes),
        "label": np.where(truth, "yes", "no"), "latency_ms": rng.gamma(2.0, 3.0, n), "error": rng.random(n) < 0.02,
    })


def test_live_metrics_equal_sklearn_with_intervals_over_time_and_groups() -> None:
    frame = logged()
    result = live_performance(frame, CONTRACT, PerformanceSpec(interval="12h", bootstrap_rounds=100))
    truth = frame["label"].to_numpy() == "yes"
    p_yes = np.where(frame["prediction"].to_numpy() == "yes", frame["score"].to_numpy(), 1 - frame["score"].to_numpy())
    assert result["available"] and result["metric"] == "roc_auc" and result["n_labelled"] == 2000
    assert result["primary"]["value"] == pytest.approx(roc_auc_score(truth, p_yes))
    assert result["metrics"]["accuracy"]["value"] == pytest.approx(accuracy_score(truth, p_yes >= 0.5))
    assert result["primary"]["ci_low"] < result["primary"]["value"] < result["primary"]["ci_high"]
    buckets = result["over_time"]
    assert sum(b["n"] for b in buckets) == 2000 and len(buckets) == 3  # 2000 minutes in 12-hour buckets
    [by_group] = result["groups"]
    assert by_group["column"] == "group" and {g["group"] for g in by_group["groups"]} == {"a", "b"}
    rows_a = frame["group"].to_numpy() == "a"
    group_a = next(g for g in by_group["groups"] if g["group"] == "a")
    assert group_a["value"] == pytest.approx(roc_auc_score(truth[rows_a], p_yes[rows_a]))
    assert result["fairness"]["columns"][0]["column"] == "group"


def test_live_metrics_without_probabilities_or_labels() -> None:
    frame = logged().drop("score")
    result = live_performance(frame, CONTRACT, PerformanceSpec(bootstrap_rounds=20), metric="accuracy")
    assert result["available"] and set(result["metrics"]) == {"accuracy", "f1"}
    assert not live_performance(frame, CONTRACT, PerformanceSpec(bootstrap_rounds=20))["available"]  # roc_auc
    assert live_performance(frame.drop("label"), CONTRACT, PerformanceSpec())["reason"].startswith("no feedback")


def test_rules_fire_on_performance_errors_latency_and_drift_share() -> None:
    frame = logged(quality=0.2)  # a weak model: ROC AUC about 0.55
    performance = live_performance(frame, CONTRACT, PerformanceSpec(bootstrap_rounds=20))
    drift = {"columns": [{"column": "x", "verdict": "drift", "reasons": ["wasserstein 0.3 > 0.1"],
                          "statistics": {"psi": {"value": 0.25}}},
                         {"column": "group", "verdict": "ok", "reasons": [], "statistics": {"psi": {"value": 0.01}}}],
             "drifted": ["x"], "evaluated": 2, "share_drifted": 0.5}
    rules = [RuleSpec(kind="performance", threshold=0.7), RuleSpec(kind="performance", name="loss", metric="log_loss",
                                                                  threshold=5.0),
             RuleSpec(kind="error_rate", threshold=0.05), RuleSpec(kind="error_rate", name="strict", threshold=0.001),
             RuleSpec(kind="latency_p99", threshold=5.0), RuleSpec(kind="drift_share"),
             RuleSpec(kind="feature_drift", column="group"), RuleSpec(kind="feature_drift", name="psi",
                                                                      statistic="psi", threshold=0.2)]
    results = {r["rule"]: r for r in evaluate_rules(rules, drift=drift, performance=performance, frame=frame,
                                                      settings=DriftSpec(), min_labelled=100)}
    assert results["performance"]["status"] == "fired" and results["performance"]["value"] < 0.7
    assert results["loss"]["status"] == "ok"  # a loss fires above its threshold
    assert results["error_rate"]["status"] == "ok" and 0.005 < results["error_rate"]["value"] < 0.05
    assert results["strict"]["status"] == "fired"
    p99 = float(np.quantile(frame["latency_ms"].to_numpy(), 0.99))
    assert results["latency_p99"]["status"] == "fired" and results["latency_p99"]["value"] == pytest.approx(p99)
    assert results["drift_share"]["status"] == "fired" and results["drift_share"]["threshold"] == 0.3
    assert results["feature_drift:group"]["status"] == "ok"
    assert results["psi"]["status"] == "fired" and results["psi"]["columns"] == ["x"]
    quiet = evaluate_rules(rules[2:5], drift=drift, performance=performance, frame=frame.drop("error", "latency_ms"),
                           settings=DriftSpec(), min_labelled=100)
    assert [r["status"] for r in quiet] == ["not evaluated"] * 3


def test_check_window_and_log_action(tmp_path: Path) -> None:
    frame = logged()
    reference = logged(seed=9).drop("label", "prediction", "score", "latency_ms", "error", "request_id", "ts")
    from keelml.data.profile import profile_frame

    spec = MonitorSpec.model_validate({"rules": [{"kind": "feature_drift"}, {"kind": "performance", "threshold": 0.99,
                                                                          "actions": ["file"]}],
                                       "actions": [{"type": "log", "name": "file", "path": "alerts/out.jsonl"}],
                                       "performance": {"bootstrap_rounds": 20}})
    shifted = frame.with_columns(pl.col("x") + 1.0)
    report = check_window(shifted, reference=profile_frame(reference, CONTRACT), contract=CONTRACT, spec=spec)
    assert [r["status"] for r in report["rules"]] == ["fired", "fired"] and report["drift"]["drifted"] == ["x"]
    ctx = ActionContext(model="m", version=1, default_log=tmp_path / "default.jsonl", base_dir=tmp_path)
    outcomes = run_actions(spec.actions, report["fired"], {"rows": report["rows"]}, ctx)
    assert outcomes[0]["status"] == "done" and outcomes[0]["rules"] == ["feature_drift", "performance"]
    line: dict[str, Any] = json.loads((tmp_path / "alerts" / "out.jsonl").read_text())
    assert line["model"] == "m" and [a["rule"] for a in line["alerts"]] == ["feature_drift", "performance"]


def test_retrain_comparison_with_the_monitored_version() -> None:
    current = {"name": "roc_auc", "value": 0.90, "greater_is_better": True}
    assert compare({"name": "roc_auc", "value": 0.91, "greater_is_better": True}, current, 0.0)["passed"]
    assert not compare({"name": "roc_auc", "value": 0.88, "greater_is_better": True}, current, 0.01)["passed"]
    assert compare({"name": "roc_auc", "value": 0.895, "greater_is_better": True}, current, 0.01)["passed"]
    loss = {"name": "rmse", "value": 2.0, "greater_is_better": False}
    assert not compare({"name": "rmse", "value": 2.5, "greater_is_better": False}, loss, 0.1)["passed"]
    assert compare({"name": "rmse", "value": 2.5, "greater_is_better": False}, None, 0.0)["passed"]
