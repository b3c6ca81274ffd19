from __future__ import annotations

from pathlib import Path

from keelml.report.run_report import render_run_report

CONTRACT = {
    "target": "y", "task": "binary", "classes": ["a", "b"],
    "columns": [
        {"name": "<script>alert(1)</script>", "type": "category", "role": "feature", "nullable": True,
         "max_null_fraction": 0.1, "categories": ["x", "y"], "min": None, "max": None, "unique": False,
         "sensitive": True},
        {"name": "n", "type": "integer", "role": "feature", "nullable": False, "max_null_fraction": 0.0,
         "categories": None, "min": 0.0, "max": 120.0, "unique": False, "sensitive": False},
        {"name": "y", "type": "category", "role": "target", "nullable": False, "max_null_fraction": 0.0,
         "categories": ["a", "b"], "min": None, "max": None, "unique": False, "sensitive": False},
    ],
}
CV = {"family": "hist_gradient_boosting", "folds": 2, "n_train": 10, "fit_gap": 0.01, "primary_metric": "roc_auc",
      "cv": {"accuracy": {"test": [0.7, 0.8], "train": [0.9, 0.9], "mean": 0.75, "std": 0.05, "train_mean": 0.9},
             "roc_auc": {"test": [0.81, 0.83], "train": [0.95, 0.96], "mean": 0.82, "std": 0.01,
                         "train_mean": 0.955}}}
METRICS = {"roc_auc": 0.8, "accuracy": 0.7, "n_test": 5,
           "primary": {"name": "roc_auc", "value": 0.8, "ci_low": 0.7, "ci_high": 0.9, "confidence": 0.95}}


def render(**overrides: object) -> str:
    context = {"run_id": "run-1", "pipeline": "p", "contract": CONTRACT,
               "validation": {"train": {"rows_in": 12, "rows_valid": 10, "rows_quarantined": 2}},
               "cv": CV, "metrics": METRICS, "verdict": {"passed": False, "reason": "roc_auc 0.8 < 0.9"},
               "data_digests": {"train": "ab" * 32}, "registration": None}
    context.update(overrides)
    return render_run_report(**context)  # type: ignore[arg-type]


def test_untrusted_names_are_escaped() -> None:
    page = render()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_provenance_and_figures() -> None:
    page = render()
    assert "run-1" in page and "abababababab" in page
    assert "roc_auc per fold" in page  # the chart shows the primary metric
    assert "fold 2 · validation: 0.8300" in page
    assert "refused" in page and "roc_auc 0.8 &lt; 0.9" in page
    assert "[0, 120]" in page
    assert "12" in page and "quarantined" in page


def test_timings_come_from_the_steps_timings_outputs() -> None:
    assert "wall time" not in render()  # the training report (a bundle component) holds no timing
    page = render(timings={"train": {"cv_seconds": 1.5, "cv_fit_seconds_mean": 0.25, "fit_seconds": 0.75,
                                     "monitoring_seconds": 2.0}, "tune": {"seconds": 12.0, "trials": {}}})
    assert ("wall time: cross-validation 1.50 s, mean fit per fold 0.25 s, final fit 0.75 s, monitoring 2.00 s, "
            "tuning 12.00 s") in page


def test_registration_line() -> None:
    assert "version 3" in render(registration=("p", 3), verdict={"passed": True, "reason": "ok"})


def test_profile_table_is_shown_and_escaped() -> None:
    import polars as pl

    from keelml.data.profile import profile_frame

    frame = pl.DataFrame({"<b>age</b>": [20, 30, 40, None], "c": ["<i>x</i>", "y", "y", "y"]})
    page = render(profile=profile_frame(frame))
    assert "Training data profile" in page and "4 valid training rows" in page
    assert "<b>age</b>" not in page and "&lt;b&gt;age&lt;/b&gt;" in page
    assert "median 30" in page and "y 75.0%" in page and "&lt;i&gt;x&lt;/i&gt; 25.0%" in page
    assert "Training data profile" not in render()
EVIL = "<img src=x onerror=alert(1)>"
ANALYSIS = {
    "slices": {"metric": "roc_auc", "metrics": ["roc_auc", "accuracy"], "min_rows": 50, "bins": 4,
               "overall": {"roc_auc": 0.8, "accuracy": 0.7},
               "rows": [{"column": EVIL, "slice": EVIL, "n": 80, "share": 0.4,
                         "metrics": {"roc_auc": 0.6, "accuracy": 0.5}},
                        {"column": "n", "slice": "[0, 10)", "n": 20, "share": 0.1}]},
    "error_analysis": {
        "worst_slices": [{"column": EVIL, "slice": EVIL, "n": 80, "metric": "roc_auc", "value": 0.6, "overall": 0.8,
                          "difference": -0.2, "ci_low": -0.3, "ci_high": -0.1, "significant": True}],
        "worst_examples": [{"row": 3, "loss": 2.5, "target": "b", "prediction": EVIL,
                            "features": {EVIL: EVIL, "n": None}}],
        "example_loss": "log loss of the true class"},
    "fairness": {"min_group_rows": 50, "gated": ["demographic_parity_difference"], "columns": [
        {"column": EVIL, "groups": [{"group": EVIL, "n": 60, "selection_rate": 0.2, "tpr": 0.5, "fpr": 0.1},
                                    {"group": "other", "n": 10, "selection_rate": 0.4, "tpr": None, "fpr": 0.0}],
         "excluded": ["other"], "differences": {"demographic_parity_difference": None}, "note": "too few groups"}]},
}
TESTS = {"results": [{"kind": "golden", "name": EVIL, "passed": False, "value": "a", "limit": "b",
                      "detail": f"predicted {EVIL}"}], "passed": False, "count": 1}


def test_every_value_from_the_data_is_escaped_in_the_analysis_sections() -> None:
    page = render(analysis=ANALYSIS, tests=TESTS,
                  verdict={"passed": False, "reason": EVIL, "checks": [
                      {"kind": "model_test", "name": EVIL, "value": EVIL, "limit": EVIL, "passed": False,
                       "reason": EVIL}]},
                  metrics={**METRICS, "confusion_matrix": {"labels": [EVIL, "b"], "matrix": [[3, 1], [0, 1]]}})
    assert "<img" not in page and "onerror=alert(1)>" not in page
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") >= 10
    assert "too small" in page and "too few groups" in page and "0 of 1 passed" in page
    assert "<span class='muted'>missing</span>" in page  # a null feature value in the worst examples


def test_sections_say_not_run_when_their_inputs_are_missing() -> None:
    page = render()
    for what in ("Hyperparameter tuning", "Learning curves", "Slice analysis", "Fairness analysis",
                 "Error analysis", "Model tests"):
        assert f"{what}: not run." in page
    for anchor in ("summary", "tuning", "learning-curves", "curves", "calibration", "slices", "fairness", "gate",
                   "lineage"):
        assert f"<section id='{anchor}'>" in page


def test_tuning_history_and_learning_curves_are_drawn_when_training_made_them() -> None:
    cv = {**CV, "tuning": {"direction": "maximize", "metric": "roc_auc", "trials": [
              {"number": 0, "value": 0.80, "params": {"max_iter": 50}, "duration_s": 1.5, "state": "complete"},
              {"number": 1, "value": 0.85, "params": {"max_iter": 100}, "duration_s": 2.0, "state": "complete"},
              {"number": 2, "value": None, "params": {"max_iter": 10}, "state": "pruned"}]},
          "learning_curve": {"train_sizes": [100, 200, 400], "train_mean": [0.99, 0.97, 0.95],
                             "validation_mean": [[0.7, 0.72], [0.8, 0.78], [0.84, 0.86]], "diagnosis": "overfitting"},
          "iterations": {"train": [0.7, 0.8, 0.9], "validation": [0.68, 0.75, 0.77]}}
    page = render(cv=cv)
    assert "3 trials (2 finished)" in page and "1 trial(s) pruned" in page
    assert "trial 1: 0.8500" in page and "max_iter=100" in page
    assert "learning curve" in page and "Diagnosis: <b>overfitting</b>" in page
    assert "score per iteration" in page
    assert "not run" not in page.split("id='learning-curves'")[1].split("</section>")[0]


def test_binary_curves_and_lineage() -> None:
    metrics = {**METRICS, "pr_auc": 0.7, "intervals": {"roc_auc": {"low": 0.7, "high": 0.9}},
               "curves": {"roc": {"fpr": [0, 0.5, 1], "tpr": [0, 0.8, 1]},
                          "pr": {"recall": [0, 1], "precision": [1, 0.5], "prevalence": 0.5},
                          "calibration": [{"low": 0.0, "high": 0.1, "count": 4, "mean_predicted": 0.05,
                                           "observed_rate": 0.0}]}}
    page = render(metrics=metrics, lineage={"code_version": "9.9.9", "spec_digest": "cd" * 32,
                                            "parameters": {"gate": {"min_score": 0.9}},
                                            "steps": [{"name": "train", "status": "cached", "cache_key": "ef" * 32}]})
    assert "ROC curve" in page and "Precision-recall curve" in page and "Calibration curve" in page
    assert "keelml <code>9.9.9</code>" in page and "cdcdcdcdcdcdcdcd" in page and "efefefefefefefef" in page
    assert "{&quot;min_score&quot;: 0.9}" in page


RARE = "Rare-Canary-41"


def _rare_context() -> dict[str, object]:
    """A category seen 5 times ('often'), 4 times ('some') and once (RARE), and a profile counting them."""
    contract = {**CONTRACT, "columns": [*CONTRACT["columns"][1:], {
        "name": "c", "type": "category", "role": "feature", "nullable": True, "max_null_fraction": 0.1,
        "categories": ["often", "some", RARE], "min": None, "max": None, "unique": False, "sensitive": True}]}
    top = [{"value": "often", "count": 5}, {"value": "some", "count": 4}, {"value": RARE, "count": 1}]
    profile = {"rows": 10, "columns": [{"name": "c", "type": "category", "null_fraction": 0.0, "distinct": 3,
                                        "count": 10, "top": top, "domain": {"often": 5, "some": 4, RARE: 1}}]}
    analysis = {
        "slices": {"metric": "roc_auc", "metrics": ["roc_auc"], "min_rows": 1, "bins": 4, "overall": {"roc_auc": 0.8},
                   "rows": [{"column": "c", "slice": s, "n": 3, "share": 0.3, "metrics": {"roc_auc": 0.5}}
                            for s in ("often", "some", RARE, "(missing)")]},
        "error_analysis": {"worst_slices": [{"column": "c", "slice": RARE, "n": 1, "metric": "roc_auc", "value": 0.1,
                                             "overall": 0.8, "difference": -0.7, "ci_low": -0.9, "ci_high": -0.5,
                                             "significant": True}],
                           "worst_examples": [{"row": 1, "loss": 3.0, "target": "a", "prediction": "b",
                                               "features": {"c": RARE, "n": 7}}]},
        "fairness": {"min_group_rows": 1, "columns": [{"column": "c", "groups": [
            {"group": "often", "n": 5, "selection_rate": 0.2}, {"group": RARE, "n": 1, "selection_rate": 1.0}],
            "excluded": [RARE], "differences": {}}]},
    }
    return {"run_id": "run-1", "pipeline": "p", "contract": contract, "validation": {}, "cv": CV,
            "metrics": METRICS, "verdict": None, "data_digests": {"train": "ab" * 32}, "registration": None,
            "profile": profile, "analysis": analysis}


def test_categories_seen_fewer_than_min_category_count_times_are_withheld(tmp_path: Path) -> None:
    import yaml

    from keelml.report.run_report import write_run_report

    page = write_run_report(tmp_path / "r", **_rare_context()).read_text()  # type: ignore[arg-type]
    document = (tmp_path / "r" / "contract.yaml").read_text()
    assert RARE not in page and RARE not in document and "some" not in document.split("columns:")[1]
    assert next(c for c in yaml.safe_load(document)["columns"] if c["name"] == "c")["categories"] == ["often"]
    assert "c: 2 of its 3 categories withheld" in document and "report.min_category_count" in document
    from keelml.data.contract import Contract

    full = Contract.model_validate(_rare_context()["contract"]).version
    assert f"(contract version {full})" in document and f"contract <code>{full}</code>" in page
    assert "2 categories seen fewer than 5 times" in page and "3 categories (2 withheld)" in page
    assert "1 slices of rare categories withheld" not in page and "2 slices of rare categories withheld" in page
    assert "(withheld: rare)" in page and "1 groups of rare categories withheld" in page
    assert "often" in page and "(missing)" in page
    shown = write_run_report(tmp_path / "all", min_category_count=0, **_rare_context()).read_text()  # type: ignore[arg-type]
    assert RARE in shown and RARE in (tmp_path / "all" / "contract.yaml").read_text()
    assert "withheld" not in (tmp_path / "all" / "contract.yaml").read_text()
    blind = {**_rare_context(), "profile": None}  # no profile: the counts are unknown, every category withheld
    write_run_report(tmp_path / "blind", **blind)  # type: ignore[arg-type]
    assert "categories: []" in (tmp_path / "blind" / "contract.yaml").read_text()
