"""The public API (`keelml.run`, `load_spec`, `open_registry`, `score`) on two small real projects."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

import keelml
from keelml.errors import IntegrityError, KeyMaterialError, NotFoundError, SpecError
from keelml.model.persist import load_model
from keelml.pipeline import RunOutcome
from keelml.registry import Registry
from keelml.registry.project import Project
from keelml.spec.pipeline import LoadedSpec

CUSTOM = "tests.model.custom_estimators:ShrunkLinearRegressor"  # not trusted unless a spec declares it


def _rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    return pd.DataFrame({"id": [f"r{seed}-{i}" for i in range(n)], "x": np.round(x, 5),
                         "k": rng.integers(0, 5, size=n), "colour": colour,
                         "label": np.where(x + rng.normal(scale=0.5, size=n) > 0, "yes", "no"),
                         "y": np.round(2.0 * x + (colour == "red") + rng.normal(scale=0.1, size=n), 5)})


def _project(directory: Path, *, name: str, target: str, drop: str, family: str) -> Path:
    directory.mkdir(parents=True)
    for file, (n, seed) in {"train.csv": (300, 1), "test.csv": (150, 2)}.items():
        _rows(n, seed).drop(columns=[drop]).to_csv(directory / file, index=False)
    (directory / "pipeline.yaml").write_text(
        f"name: {name}\ndata:\n  target: {target}\n  train:\n    path: train.csv\n  test:\n    path: test.csv\n"
        f"model:\n  family: {family}\n  cv_folds: 2\n  learning_curve:\n    sizes: []\n"
        "evaluate:\n  bootstrap_rounds: 10\nsecurity:\n  privacy: false\n  robustness: false\n")
    return directory / "pipeline.yaml"


@dataclass
class Made:
    spec: Path
    outcome: RunOutcome


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Made:
    spec = _project(tmp_path_factory.mktemp("api") / "cls", name="api-cls", target="label", drop="y",
                    family="logistic_regression")
    return Made(spec, keelml.run(spec))


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Made:
    spec = _project(tmp_path_factory.mktemp("api") / "custom", name="api-custom", target="y", drop="label",
                    family=CUSTOM)
    return Made(spec, keelml.run(spec))


def test_import_keelml_loads_nothing_heavy() -> None:
    code = ("import sys, keelml; heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('keelml', 'polars', 'pandas', 'numpy', 'sklearn', 'sqlalchemy', 'pydantic', 'typing')); print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['keelml']"
    assert set(keelml.__all__) == {"__version__", "load_spec", "open_registry", "read_predictions", "run", "score"}
    assert {"load_spec", "open_registry", "run", "score"} <= set(dir(keelml))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        keelml.nothing  # noqa: B018


def test_run_is_the_pipeline_run_and_registers(classifier: Made) -> None:
    from keelml.pipeline import run

    assert keelml.run is run
    outcome = classifier.outcome
    names = [s.name for s in outcome.steps]
    assert names[-3:] == ["gate", "bundle", "register"]
    assert outcome.registration is not None and outcome.registration.version == 1
    assert outcome.registration.status == "staging"
    again = keelml.run(classifier.spec)
    assert {s.status for s in again.steps} == {"cached"}


def test_load_spec(classifier: Made) -> None:
    loaded = keelml.load_spec(classifier.spec)
    assert isinstance(loaded, LoadedSpec) and loaded.spec.name == "api-cls"
    assert keelml.load_spec(classifier.spec.parent).digest == loaded.digest  # a directory holding pipeline.yaml
    with pytest.raises(SpecError, match="spec file not found"):
        keelml.load_spec(classifier.spec.parent / "missing.yaml")


def test_open_registry_from_a_spec_or_a_store_directory(classifier: Made) -> None:
    for where in (classifier.spec, keelml.load_spec(classifier.spec), classifier.spec.parent / ".keel"):
        with keelml.open_registry(where) as project:
            assert isinstance(project, Project) and isinstance(project.registry, Registry)
            assert [r["version"] for r in project.registry.versions("api-cls")] == [1]
            assert project.registry.verify("api-cls", "latest")["status"] == "staging"
    project = keelml.open_registry(classifier.spec)
    try:
        assert project.registry.resolve("api-cls") == 1
    finally:
        project.close()


def test_open_registry_refuses_what_is_not_a_project(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="neither a pipeline spec nor a keelml store"):
        keelml.open_registry(tmp_path)
    spec = _project(tmp_path / "new", name="api-new", target="label", drop="y", family="logistic_regression")
    with pytest.raises(KeyMaterialError, match="keys are missing"):
        keelml.open_registry(spec)  # never creates a store
    assert not (spec.parent / ".keel").exists()


def test_score_pandas_and_polars_with_rejects(classifier: Made) -> None:
    frame = _rows(20, 9).drop(columns=["y"])
    frame.loc[3, "colour"] = "purple"  # a category the contract never saw
    scores = keelml.score(classifier.spec, frame)
    assert (scores.name, scores.version, scores.engine in ("onnx", "sklearn")) == ("api-cls", 1, True)
    assert isinstance(scores.predictions, pd.DataFrame) and isinstance(scores.rejects, pd.DataFrame)
    assert scores.rows_scored == 19 and scores.rows_rejected == 1
    assert scores.rejects["_row"].tolist() == [3] and "colour" in scores.rejects["_reason"][0]
    assert {"_row", "id", "prediction", "proba_no", "proba_yes"} <= set(scores.predictions.columns)
    assert 3 not in scores.predictions["_row"].tolist()
    assert set(scores.predictions["prediction"]) <= {"yes", "no"}
    probabilities = scores.predictions[["proba_no", "proba_yes"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=2e-3)
    np.testing.assert_array_equal(probabilities, np.round(probabilities, 3))  # rounded to serve.precision
    same = keelml.score(keelml.load_spec(classifier.spec), pl.from_pandas(frame), model="api-cls", version=1)
    assert isinstance(same.predictions, pl.DataFrame)
    assert same.predictions.to_pandas().equals(scores.predictions)


def test_score_refuses_what_it_cannot_score(classifier: Made) -> None:
    with pytest.raises(NotFoundError, match="no model named 'other'"):
        keelml.score(classifier.spec, _rows(3, 1), model="other")
    with pytest.raises(NotFoundError, match="no version 7"):
        keelml.score(classifier.spec, _rows(3, 1), version=7)
    with pytest.raises(NotFoundError, match="no alias 'production'"):
        keelml.score(classifier.spec, _rows(3, 1), version="production")
    with pytest.raises(SpecError, match="the frame to score is a builtins.list"):
        keelml.score(classifier.spec, [{"x": 1.0}])
    everything_bad = _rows(4, 3).assign(colour="purple")
    scores = keelml.score(classifier.spec, everything_bad)
    assert scores.rows_scored == 0 and scores.rows_rejected == 4 and list(scores.predictions.columns) == ["_row"]


def test_a_declared_custom_estimator_registers_scores_and_loads(custom: Made) -> None:
    """`model.family: module:Class` end to end: the spec's trust policy is recorded in the signed bundle,
    so the store alone (no spec) loads it too; without that record the class is refused."""
    assert custom.outcome.registration is not None and custom.outcome.registration.status == "staging"
    frame = _rows(10, 5).drop(columns=["label"])
    scores = keelml.score(custom.spec, frame)
    assert scores.engine == "sklearn" and scores.rows_scored == 10
    np.testing.assert_allclose(scores.predictions["prediction"], frame["y"], atol=0.5)
    with keelml.open_registry(custom.spec.parent / ".keel") as project:
        loaded = project.registry.load_model("api-custom")
        assert loaded.manifest["info"]["trust"]["classes"] == [CUSTOM.replace(":", ".")]
        assert type(loaded.model.named_steps["model"]).__name__ == "ShrunkLinearRegressor"
        unrecorded = {**loaded.manifest, "info": {**loaded.manifest["info"], "trust": None}}
        model_bytes = project.artifacts.get(loaded.manifest["components"]["model"]["sha256"])
        with pytest.raises(IntegrityError, match="ShrunkLinearRegressor"):
            load_model(model_bytes, project.registry.policy_for(unrecorded))
