"""The standard steps that are pure logic, called directly."""

from __future__ import annotations

from keelml.pipeline.steps import evaluation as steps


def _metrics(name: str, value: float, greater_is_better: bool) -> dict:
    return {"primary": {"name": name, "value": value, "greater_is_better": greater_is_better}}


def test_gate_for_scores() -> None:
    passed = steps.gate(params={"min_score": 0.85}, metrics=_metrics("roc_auc", 0.9, True))["verdict"]
    refused = steps.gate(params={"min_score": 0.95}, metrics=_metrics("roc_auc", 0.9, True))["verdict"]
    assert passed["passed"] and not refused["passed"]
    assert refused["reason"] == "roc_auc 0.9000 < required 0.9500"


def test_gate_for_losses_is_inverted() -> None:
    low_loss = steps.gate(params={"min_score": 0.3}, metrics=_metrics("log_loss", 0.25, False))["verdict"]
    high_loss = steps.gate(params={"min_score": 0.3}, metrics=_metrics("log_loss", 0.45, False))["verdict"]
    assert low_loss["passed"] and not high_loss["passed"]
    assert high_loss["reason"] == "log_loss 0.4500 > allowed 0.3000"


def test_no_gate_configured_passes_and_says_so() -> None:
    verdict = steps.gate(params={"min_score": None}, metrics=_metrics("r2", -1.0, True))["verdict"]
    assert verdict["passed"] and "no gate configured" in verdict["reason"]
