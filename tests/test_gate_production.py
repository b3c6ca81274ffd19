"""The gate against the production version: a worse candidate is registered as rejected with the
reasons and never moves production; an equal one passes; the comparison is keyed on production."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.helpers import keel_here, small_adult_project

from keelml.errors import KeelError
from keelml.pipeline import run
from keelml.registry.project import open_project
from keelml.spec.pipeline import load_spec

NAME = "adult-income"
GATE = ("min_score: 0.60\n  max_metric_drop: 0.01\n  max_slice_drop: 0.05\n  min_slice_rows: 150\n"
        "  min_agreement: 0.8")
WORSE = "family: hist_gradient_boosting\n  params: {max_iter: 2, max_depth: 1, max_features: 0.2}"


def _specs(tmp_path: Path) -> tuple[Path, Path]:
    """A small Adult project (no model tests, no audits: the gate compares with production only),
    and the same with a deliberately crippled model."""
    good = small_adult_project(tmp_path / "p", train_rows=3000, test_rows=1500, cv_folds=2, bootstrap_rounds=20,
                               extra="security: {privacy: false, robustness: false}\n")
    text = re.sub(r"\ntests:\n(?:  .*\n|\n)*", "\n", good.read_text())
    text = text.replace("min_score: 0.80", GATE)
    text = re.sub(r"  learning_curve:\n    sizes: .*\n", "  learning_curve: {sizes: []}\n", text)
    good.write_text(text)
    worse = good.parent / "worse.yaml"
    worse.write_text(text.replace("family: hist_gradient_boosting", WORSE))
    return good, worse


def test_worse_candidate_is_rejected_and_production_is_unchanged(tmp_path: Path) -> None:
    good, worse = _specs(tmp_path)
    first = run(good)
    assert first.verdict is not None and first.verdict["passed"], first.verdict
    assert first.registration is not None and first.registration.status == "staging"
    assert any(c["reason"] == "no production version to compare with" for c in first.verdict["checks"])
    project = open_project(load_spec(good))
    registry = project.registry
    try:
        registry.promote(NAME, first.registration.version, reason="the good model")

        refused = run(worse)
        assert refused.verdict is not None and not refused.verdict["passed"]
        reason = refused.verdict["reason"]
        produced = next(c for c in refused.verdict["checks"] if c["name"] == "roc_auc vs production v1")
        assert not produced["passed"] and produced["drop"] > 0.01
        assert f"roc_auc {produced['value']:.4f} vs production v1 {produced['production']:.4f}" in reason
        assert produced["production"] == pytest.approx(first.metrics["primary"]["value"])  # same rows and model
        assert produced["limit"] == pytest.approx(produced["production"] - 0.01)
        assert refused.registration is not None and refused.registration.status == "rejected"
        rejected = refused.registration.version
        assert rejected == 2 and any("roc_auc" in r for r in refused.registration.reasons)
        assert registry.aliases(NAME) == {"production": 1}
        row = next(r for r in registry.versions(NAME) if r["version"] == rejected)
        assert row["status"] == "rejected" and any("vs production v1" in r for r in row["reasons"])
        assert registry.resolve(NAME) == 1  # "latest" skips a rejected version
        with pytest.raises(KeelError, match="rejected by the gate"):
            registry.promote(NAME, rejected, alias="staging", reason="try anyway")
        with pytest.raises(KeelError, match="rejected by the gate"):
            registry.load_model(NAME, rejected)
        assert registry.verify(NAME, rejected, rejected_ok=True)["status"] == "rejected"

        cli = keel_here("run", str(worse))  # cached now; still exit 4 with the reasons
        assert cli.returncode == 4, cli.stderr
        assert "gate refused the model: roc_auc" in cli.stderr and "vs production v1" in cli.stderr
        assert f"v{rejected} with status rejected" in cli.stderr
        listing = keel_here("models", "list", "-f", str(good))
        assert listing.returncode == 0 and "rejected" in listing.stdout and "vs production v1" in listing.stdout
        promote = keel_here("models", "promote", NAME, str(rejected), "--reason", "x", "-f", str(good))
        assert promote.returncode == 2 and "was rejected by the gate" in promote.stderr
        assert registry.aliases(NAME) == {"production": 1}

        equal = run(good)  # the same model again: only the comparison (production is now v1) re-runs
        status = {s.name: s.status for s in equal.steps}
        assert status["train"] == "cached" and status["compare"] == "ran" and status["gate"] == "ran"
        assert equal.verdict is not None and equal.verdict["passed"], equal.verdict
        agreement = next(c for c in equal.verdict["checks"] if c["name"] == "agreement with production v1")
        assert agreement["value"] == 1.0
        assert equal.registration is not None and equal.registration.status == "staging"
        assert registry.aliases(NAME) == {"production": 1}

        registry.promote(NAME, equal.registration.version, reason="same model, newer verdict")
        again = run(good)  # production moved: the cached comparison is not reused
        assert {s.name: s.status for s in again.steps}["compare"] == "ran"
    finally:
        project.close()


def test_auto_promotion_moves_production_after_infra_validation(tmp_path: Path) -> None:
    good, _ = _specs(tmp_path)
    good.write_text(good.read_text().replace("min_score: 0.60", "min_score: 0.60\n  promote: auto"))
    outcome = run(good)
    assert outcome.registration is not None and outcome.registration.status == "staging"
    assert any("to production (gate.promote: auto, infra validation passed)" in n for n in outcome.notes)
    project = open_project(load_spec(good))
    try:
        assert project.registry.aliases(NAME) == {"production": outcome.registration.version}
        [change] = project.registry.alias_history(NAME)
        assert change["reason"].startswith("gate.promote: auto (run ")
    finally:
        project.close()
