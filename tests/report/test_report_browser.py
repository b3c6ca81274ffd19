"""A real run's report (small Adult project) in Debian's Chromium, the fairness gate, and `keel report`."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from tests.helpers import keel, small_adult_project

from keelml.pipeline import RunOutcome, run

SECTIONS = ("summary", "data-quality", "tuning", "learning-curves", "cross-validation", "metrics", "curves",
            "calibration", "confusion-matrix", "slices", "fairness", "error-analysis", "model-tests", "gate",
            "contract", "lineage")


@pytest.fixture(scope="module")
def adult_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunOutcome]:
    spec = small_adult_project(tmp_path_factory.mktemp("adult-report"), train_rows=2500, test_rows=1200,
                               cv_folds=2, bootstrap_rounds=30)
    outcome = run(spec)
    assert outcome.verdict is not None and outcome.verdict["passed"], outcome.verdict
    return spec, outcome


def test_the_example_spec_runs_its_model_tests_and_fairness(adult_run: tuple[Path, RunOutcome]) -> None:
    _, outcome = adult_run
    assert [s.name for s in outcome.steps][-5:] == ["privacy", "robustness", "gate", "bundle", "register"]
    checks = {c["name"]: c for c in (outcome.verdict or {})["checks"]}
    assert {"roc_auc", "golden: young part-time worker", "golden: married executive with capital gains",
            "invariance: invariance of fnlwgt", "directional: education-num increasing"} == set(checks)
    assert all(c["passed"] for c in checks.values())
    page = (outcome.report_path or Path()).read_text()
    assert "Fairness by sex" in page and "Fairness by race" in page


def test_report_renders_in_chromium_without_errors(adult_run: tuple[Path, RunOutcome], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("KEEL_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: `apt-get install -y chromium` (.ci/run installs it)")
    _, outcome = adult_run
    assert outcome.report_path is not None
    problems: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "assert") else None)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(outcome.report_path.resolve().as_uri(), wait_until="load")
            for anchor in SECTIONS:
                assert page.locator(f"section#{anchor} h2").count() == 1, anchor
            assert page.locator("#fairness-sex").count() == 1 and page.locator("#fairness-race").count() == 1
            broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || !i.naturalWidth).length")
            assert broken == 0
            widths = page.evaluate("Array.from(document.querySelectorAll('svg')).map("
                                   "s => s.getBoundingClientRect().width)")
            assert len(widths) >= 8 and min(widths) > 100  # ROC, PR, calibration, folds, slices, fairness...
            assert page.locator("section#gate").inner_text().count("passed") >= 2
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert all(url.startswith(("file://", "data:")) for url in requests), requests  # works offline
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_a_fairness_limit_refuses_the_same_model(adult_run: tuple[Path, RunOutcome], tmp_path: Path) -> None:
    spec, first = adult_run
    copy = tmp_path / "strict"
    shutil.copytree(spec.parent, copy)
    text = (copy / "pipeline.yaml").read_text()
    strict = text.replace("min_score: 0.80", "min_score: 0.80\n  max_fairness_difference: 0.02")
    (copy / "pipeline.yaml").write_text(strict)
    outcome = run(copy / "pipeline.yaml")
    status = {s.name: s.status for s in outcome.steps}
    assert status["gate"] == "ran" and status["evaluate"] == "cached" and status["train"] == "cached"
    assert outcome.verdict is not None and not outcome.verdict["passed"]
    reason = outcome.verdict["reason"]
    assert "demographic_parity_difference by" in reason and "> allowed 0.0200" in reason
    # refused: registered as rejected (v2), never promotable; version 1 stays the only accepted one
    assert outcome.registration is not None and outcome.registration.status == "rejected"
    assert any("gate refused the model" in note for note in outcome.notes)
    page = (outcome.report_path or Path()).read_text()
    assert "refused" in page and "max_fairness_difference" in page
    assert first.registration is not None and first.registration.version == 1


def test_keel_report_prints_the_path_and_opens_it(adult_run: tuple[Path, RunOutcome], tmp_path: Path) -> None:
    spec, outcome = adult_run
    latest = keel("report", "latest", "-f", str(spec))
    assert latest.returncode == 0, latest.stderr
    assert latest.stdout.strip() == str(outcome.report_path)
    by_prefix = keel("report", outcome.run_id[:17], "-f", str(spec))
    assert by_prefix.stdout.strip() == str(outcome.report_path)
    missing = keel("report", "no-such-run", "-f", str(spec))
    assert missing.returncode == 2 and "no run matches 'no-such-run'" in missing.stderr
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys\nopen({str(opened)!r}, 'w').write(sys.argv[1])\n")
    env = {**os.environ, "BROWSER": f"{sys.executable} {browser} %s"}
    result = keel("report", "latest", "-f", str(spec), "--open", env=env)
    assert result.returncode == 0, result.stderr
    assert opened.read_text() == (outcome.report_path or Path()).resolve().as_uri()
