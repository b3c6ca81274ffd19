"""The privacy audit: membership inference and attribute inference on real fitted models."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.security.synthetic import fit, halves, make_data

from keelml.errors import SpecError
from keelml.pipeline.steps import evaluation as steps
from keelml.security.membership import attribute_inference, membership_audit, privacy_audit
from keelml.spec.pipeline import parse_spec


def test_membership_attack_detects_an_overfit_model() -> None:
    frame, contract = make_data(1000, label_noise=0.3)
    train, test = halves(frame)
    model = fit(train, contract, "random_forest", {"n_estimators": 40, "min_samples_leaf": 1})
    report = membership_audit(model, train, test, contract, sample_size=400, seed=0)
    assert report["auc"] > 0.7
    assert report["members"] == report["non_members"] == 400
    assert report["mean_loss_members"] < report["mean_loss_non_members"]
    assert 0.0 <= report["tpr_at_1pct_fpr"] <= 1.0 and report["advantage"] > 0.2


def test_membership_attack_finds_nothing_in_a_regularised_model() -> None:
    frame, contract = make_data(2000, label_noise=0.3)
    train, test = halves(frame)
    model = fit(train, contract, "logistic_regression", {"C": 0.1})
    report = membership_audit(model, train, test, contract, sample_size=1000, seed=0)
    assert abs(report["auc"] - 0.5) < 0.05  # the AUC's standard error is 0.013 here
    assert report["tpr_at_1pct_fpr"] < 0.1


def test_membership_audit_is_seeded_balanced_and_judged_against_the_limit() -> None:
    frame, contract = make_data(900, label_noise=0.3)
    train, test = frame.head(600), frame.tail(300)
    model = fit(train, contract, "random_forest", {"n_estimators": 20})
    first = membership_audit(model, train, test, contract, sample_size=1000, seed=3, max_auc=0.55)
    again = membership_audit(model, train, test, contract, sample_size=1000, seed=3, max_auc=0.55)
    assert first == again
    assert first["members"] == first["non_members"] == 300  # balanced: as many members as held-out rows
    assert first["passed"] is False and first["max_auc"] == 0.55


def test_membership_audit_on_regression_uses_the_residual() -> None:
    frame, contract = make_data(600, task="regression")
    train, test = halves(frame)
    model = fit(train, contract, "random_forest", {"n_estimators": 20})
    report = membership_audit(model, train, test, contract, sample_size=300, seed=0)
    assert "squared residual" in report["attack"] and report["auc"] > 0.6


def test_attribute_inference_flags_a_leaked_sensitive_column_and_not_an_independent_one() -> None:
    frame, contract = make_data(1600, group_effect=3.0)
    train, _ = halves(frame)
    model = fit(train, contract, "logistic_regression")
    columns = attribute_inference(model, train, contract, seed=0)["columns"]
    leaked, independent = columns["group"], columns["indep"]
    assert leaked["flagged"] and leaked["advantage"] > 0.15
    assert leaked["baseline_balanced_accuracy"] == pytest.approx(0.5)
    assert not independent["flagged"] and abs(independent["advantage"]) < 0.05


def test_privacy_audit_without_sensitive_columns_reports_none() -> None:
    frame, contract = make_data(400)
    for column in contract.columns:
        column.sensitive = False
    train, test = halves(frame)
    report = privacy_audit(fit(train, contract, "logistic_regression"), train, test, contract,
                           sample_size=100, seed=0)
    assert report["attribute_inference"]["columns"] == {} and report["membership"]["members"] == 100


def test_too_few_rows_skip_the_audit_and_a_set_limit_then_refuses() -> None:
    frame, contract = make_data(60)
    train, test = frame.head(54), frame.tail(6)
    report = privacy_audit(fit(train, contract, "logistic_regression"), train, test, contract,
                           sample_size=100, seed=0)
    assert report["membership"]["skipped"] == "too few rows to audit (6; at least 10 in each split needed)"
    metrics = {"primary": {"name": "roc_auc", "value": 0.9, "greater_is_better": True}}
    verdict = steps.gate(params={"max_membership_auc": 0.6}, metrics=metrics, privacy=report)["verdict"]
    assert not verdict["passed"]
    assert verdict["reason"] == ("membership_auc not measured (too few rows to audit (6; at least 10 in each "
                                 "split needed)) but a limit is set")


def _privacy(auc: float) -> dict:
    return {"membership": {"auc": auc}}


def test_gate_refuses_when_the_membership_auc_exceeds_the_limit() -> None:
    metrics = {"primary": {"name": "roc_auc", "value": 0.9, "greater_is_better": True}}
    params = {"min_score": 0.8, "max_membership_auc": 0.6, "max_flip_rate": None}
    refused = steps.gate(params=params, metrics=metrics, privacy=_privacy(0.72))["verdict"]
    passed = steps.gate(params=params, metrics=metrics, privacy=_privacy(0.52))["verdict"]
    assert not refused["passed"] and refused["reason"] == "membership_auc 0.7200 > allowed 0.6000"
    assert [c["metric"] for c in refused["checks"]] == ["roc_auc", "membership_auc"]
    assert passed["passed"] and passed["reason"].startswith("all 2 checks passed")
    assert passed["checks"][1]["reason"] == "membership_auc 0.5200 <= allowed 0.6000"
    alone = steps.gate(params={"min_score": None, "max_membership_auc": 0.6}, metrics=metrics,
                       privacy=_privacy(0.9))["verdict"]
    assert not alone["passed"]


def test_a_limit_without_its_audit_is_a_spec_error() -> None:
    text = "name: x\ndata: {train: {path: a.csv}, target: y}\nsecurity: {privacy: false, max_membership_auc: 0.6}\n"
    with pytest.raises(SpecError, match="max_membership_auc needs security.privacy: true"):
        parse_spec(text)


def test_pipeline_gate_refuses_a_leaky_model_and_the_report_shows_why(tmp_path: Path) -> None:
    from keelml.pipeline import run

    frame, _ = make_data(500, label_noise=0.3)
    frame.drop("indep").write_csv(tmp_path / "data.csv")
    (tmp_path / "pipeline.yaml").write_text(
        "name: leaky\ndata: {train: {path: data.csv}, target: target, sensitive_columns: [group]}\n"
        "model: {family: random_forest, params: {n_estimators: 20}, cv_folds: 2}\n"
        "evaluate: {bootstrap_rounds: 0}\nsplit: {test_size: 0.5}\n"
        "security: {max_membership_auc: 0.55, sample_rows: 200}\n")
    outcome = run(tmp_path / "pipeline.yaml")
    names = [s.name for s in outcome.steps]
    assert names.index("evaluate") < names.index("privacy") < names.index("gate")
    assert "robustness" in names
    assert outcome.verdict is not None and not outcome.verdict["passed"]
    assert outcome.verdict["reason"].startswith("membership_auc ")
    assert outcome.registration is not None and outcome.registration.status == "rejected"
    summary = outcome.as_json()["security"]
    assert summary["membership_auc"] > 0.55 and set(summary["attribute_advantage"]) == {"group"}
    page = outcome.report_path.read_text() if outcome.report_path else ""
    assert "<h2>Security</h2>" in page and "Membership inference" in page and "PII columns: none" in page
    assert "flip rate" in page
