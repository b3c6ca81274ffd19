from __future__ import annotations

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


def test_registration_line() -> None:
    assert "version 3" in render(registration=("p", 3), verdict={"passed": True, "reason": "ok"})
