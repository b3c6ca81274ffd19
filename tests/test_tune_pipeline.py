"""The tune step in a real pipeline run: trials in the store, caching, a bigger budget resumes the study."""

from __future__ import annotations

import json
import re

from tests.helpers import small_adult_project

from keelml.pipeline import run
from keelml.registry.project import open_project
from keelml.spec.pipeline import load_spec

TUNE = """
tune:
  trials: {trials}
  cv_folds: 2
  space:
    C: {{low: 0.001, high: 10.0, log: true}}
"""


def _project(tmp_path, trials: int):
    spec = small_adult_project(tmp_path, train_rows=1500, test_rows=500, cv_folds=2, bootstrap_rounds=20,
                               extra=TUNE.format(trials=trials))
    text = re.sub(r"  learning_curve:\n    sizes: .*\n", "", spec.read_text())
    text = text.replace("family: hist_gradient_boosting",
                        "family: logistic_regression\n  learning_curve: {sizes: [0.5, 1.0]}")
    spec.write_text(text)
    return spec


def test_tuning_in_a_run_is_recorded_cached_and_resumable(tmp_path) -> None:
    spec = _project(tmp_path, trials=3)
    first = run(spec)
    status = {s.name: s.status for s in first.steps}
    assert list(status)[4:7] == ["split", "tune", "train"] and set(status.values()) == {"ran"}
    project = open_project(load_spec(spec))
    try:
        trials = project.metadata.list_trials(run_id=first.run_id)
        cv = json.loads(project.artifacts.get(next(s for s in first.steps if s.name == "train").outputs["cv"]))
    finally:
        project.close()
    assert len(trials) == 3 and {t["state"] for t in trials} <= {"complete", "pruned"}
    tuning = cv["tuning"]
    assert tuning["trials"]["complete"] + tuning["trials"]["pruned"] == 3
    assert cv["params"] == {"C": tuning["best_params"]["C"]}  # the final model uses the best trial
    assert tuning["folds"]["folds"] == 2 and cv["folds"] == 2
    assert cv["monitoring"]["learning_curve"]["sizes"] == [0.5, 1.0]
    assert first.metrics is not None and first.metrics["roc_auc"] > 0.8
    assert any(note.startswith(f"tuning: best roc_auc {tuning['best_value']:.4f}") for note in first.notes)

    again = run(spec)
    assert {s.status for s in again.steps} == {"cached"}

    more = run(_project(tmp_path, trials=5))  # a bigger budget continues the same study
    status = {s.name: s.status for s in more.steps}
    assert status["tune"] == "ran" and status["split"] == "cached"
    project = open_project(load_spec(spec))
    try:
        assert len(project.metadata.list_trials(run_id=more.run_id)) == 2
        studies = {t["study"] for t in project.metadata.list_trials()}
        cv = json.loads(project.artifacts.get(next(s for s in more.steps if s.name == "train").outputs["cv"]))
    finally:
        project.close()
    assert len(studies) == 1 and cv["tuning"]["resumed_from"] == 3 and len(cv["tuning"]["history"]) == 5
