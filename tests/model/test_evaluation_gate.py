"""The gate's checks: primary metric, fairness differences and model tests, each with its reason."""

from __future__ import annotations

from keelml.pipeline.steps import evaluation as steps

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
    assert verdict == {"passed": True, "reason": "no gate configured (gate.min_score unset)", "checks": [],
                       "judged": {}}  # called directly: no digests given


def _comparison(candidate: float, production: float, *, metric: str = "roc_auc", greater: bool = True,
                slices: list | None = None, agreement: float = 1.0) -> dict:
    return {"reference": {"name": "m", "version": 3, "bundle": "ab" * 32}, "comparable": True, "metric": metric,
            "greater_is_better": greater, "rows": 500, "candidate": candidate, "production": production,
            "min_slice_rows": 100, "slices": slices or [], "agreement": agreement, "agreement_tolerance": 0.0}


def _relative(params: dict, comparison: dict | None) -> dict:
    return dict(steps.gate(params={"min_score": None, **params}, metrics=METRICS, comparison=comparison)["verdict"])


def test_production_comparison_respects_the_metric_direction() -> None:
    worse_auc = _relative({"max_metric_drop": 0.01}, _comparison(0.88, 0.90))
    assert not worse_auc["passed"]
    assert worse_auc["reason"] == ("roc_auc 0.8800 vs production v3 0.9000 on the same 500 held-out rows: "
                                   "0.0200 worse (allowed drop 0.0100)")
    assert _relative({"max_metric_drop": 0.03}, _comparison(0.88, 0.90))["passed"]
    lower_loss = _relative({"max_metric_drop": 0.0}, _comparison(0.30, 0.35, metric="log_loss", greater=False))
    assert lower_loss["passed"] and "better or equal" in lower_loss["reason"]
    higher_loss = _relative({"max_metric_drop": 0.01}, _comparison(0.40, 0.35, metric="log_loss", greater=False))
    assert not higher_loss["passed"] and higher_loss["checks"][0]["limit"] == 0.36


def test_slices_and_agreement_against_production() -> None:
    slices = [{"column": "sex", "slice": "Female", "n": 300, "candidate": 0.80, "production": 0.90},
              {"column": "sex", "slice": "Male", "n": 200, "candidate": 0.91, "production": 0.90},
              {"column": "race", "slice": "Other", "n": 120, "candidate": None, "production": 0.7}]
    verdict = _relative({"max_slice_drop": 0.05, "min_agreement": 0.95},
                        _comparison(0.9, 0.9, slices=slices, agreement=0.93))
    assert not verdict["passed"]
    [by_slice, agreement] = verdict["checks"]
    assert by_slice["reason"] == ("roc_auc worse than production v3 by more than 0.0500 on 1 of 2 slices of >= 100 "
                                  "rows: sex = Female (300 rows) 0.8000 vs 0.9000")
    assert [s["slice"] for s in by_slice["worse_slices"]] == ["Female"]
    assert agreement["reason"].startswith("agreement with production v3 0.9300 < required 0.9500")


def test_no_or_incomparable_production_passes_with_a_note() -> None:
    assert _relative({"max_metric_drop": 0.0}, {"reference": None})["checks"][0]["reason"] == (
        "no production version to compare with")
    odd = {"reference": {"name": "m", "version": 2, "bundle": "cd" * 32}, "comparable": False,
           "reason": "the held-out rows lack production's feature column(s) 'age'"}
    verdict = _relative({"max_metric_drop": 0.0}, odd)
    assert verdict["passed"] and "not compared with production v2: the held-out rows lack" in verdict["reason"]
    assert _relative({}, _comparison(0.1, 0.9))["checks"] == []  # no relative limit: no comparison check
