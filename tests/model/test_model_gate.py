"""The gate's checks: primary metric, fairness differences and model tests, each with its reason."""

from __future__ import annotations

from keelml import steps

METRICS = {"primary": {"name": "roc_auc", "value": 0.91, "greater_is_better": True}}


def _fairness(dp: float | None, eo: float | None, note: str | None = None) -> dict:
    return {"fairness": {"columns": [{"column": "sex", "note": note, "differences": {
        "demographic_parity_difference": dp, "equalized_odds_difference": eo}}]}}


def _tests(*passed: bool) -> dict:
    return {"results": [{"kind": "golden", "name": f"case {i}", "passed": p, "value": "a", "limit": "b",
                         "detail": f"detail {i}"} for i, p in enumerate(passed)]}


def _gate(params: dict, analysis: dict | None = None, tests: dict | None = None) -> dict:
    verdict: dict = steps.gate(params=params, metrics=METRICS, analysis=analysis, tests=tests)["verdict"]
    return verdict


def test_every_check_is_listed_and_a_pass_sums_them_up() -> None:
    verdict = _gate({"min_score": 0.9, "max_fairness_difference": 0.2}, _fairness(0.15, 0.1), _tests(True))
    assert verdict["passed"]
    assert verdict["reason"] == "all 4 checks passed (roc_auc 0.9100 >= required 0.9000)"
    assert [(c["kind"], c["name"]) for c in verdict["checks"]] == [
        ("metric", "roc_auc"), ("fairness", "demographic_parity_difference by sex"),
        ("fairness", "equalized_odds_difference by sex"), ("model_test", "golden: case 0")]
    assert verdict["checks"][1]["value"] == 0.15 and verdict["checks"][1]["limit"] == 0.2


def test_fairness_over_the_limit_refuses_and_says_which() -> None:
    verdict = _gate({"min_score": None, "max_fairness_difference": 0.1}, _fairness(0.15, 0.05))
    assert not verdict["passed"]
    assert verdict["reason"] == "demographic_parity_difference by sex 0.1500 > allowed 0.1000"


def test_a_failed_model_test_refuses_even_without_thresholds() -> None:
    verdict = _gate({"min_score": None}, None, _tests(True, False))
    assert not verdict["passed"]
    assert verdict["reason"] == "model test case 1 failed: detail 1"
    assert _gate({"min_score": None}, None, _tests(True))["reason"] == "model test case 0 passed: detail 0"


def test_many_failures_are_summarised() -> None:
    verdict = _gate({"min_score": 0.95}, None, _tests(False, False, False, False))
    assert verdict["reason"].startswith("roc_auc 0.9100 < required 0.9500; model test case 0 failed")
    assert verdict["reason"].endswith("; and 2 more failed check(s)")


def test_fairness_limit_without_sensitive_columns_fails_and_unmeasurable_passes_with_a_note() -> None:
    verdict = _gate({"max_fairness_difference": 0.1}, {"fairness": {"columns": []}})
    assert not verdict["passed"] and "no sensitive column was evaluated" in verdict["reason"]
    verdict = _gate({"max_fairness_difference": 0.1}, _fairness(None, None, "fewer than 2 groups"))
    assert verdict["passed"] and all(c["value"] is None for c in verdict["checks"])
    assert "not measurable (fewer than 2 groups)" in verdict["checks"][0]["reason"]


def test_nothing_configured_passes_and_says_so() -> None:
    verdict = _gate({"min_score": None, "max_fairness_difference": None}, _fairness(0.5, 0.5), {"results": []})
    assert verdict == {"passed": True, "reason": "no gate configured (gate.min_score unset)", "checks": []}
