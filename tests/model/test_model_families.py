"""The catalog's families and estimators by import path: they train, persist safely and load."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from keelml.errors import DataError, IntegrityError, SpecError
from keelml.model.catalog import make_estimator, make_pipeline_for, trusted_types
from keelml.model.features import to_xy
from keelml.model.persist import check_loadable, dump_model, load_model
from keelml.model.train import train_model
from keelml.model.trust import TrustPolicy
from keelml.pipeline.services import codecs
from keelml.spec.model import LearningCurveSpec, ModelSpec, PreprocessSpec

CUSTOM = "tests.model.custom_estimators:ShrunkLinearRegressor"


def _round_trip(model, X, task: str, trusted: tuple[str, ...] = ()) -> None:
    loaded = load_model(dump_model(model), TrustPolicy(classes=trusted))
    if task == "regression":
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    else:
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_linear_family_is_logistic_or_ridge(synthetic, task: str) -> None:
    frame, contract = synthetic(task, n=120)
    X, y = to_xy(frame, contract)
    model = make_pipeline_for(contract, "linear", {}, seed=0).fit(X, y)
    expected = "Ridge" if task == "regression" else "LogisticRegression"
    assert type(model.named_steps["model"]).__name__ == expected
    _round_trip(model, X, task)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_lightgbm_trains_persists_and_loads(synthetic, task: str) -> None:
    pytest.importorskip("lightgbm")
    frame, contract = synthetic(task, n=150)
    X, y = to_xy(frame, contract)
    model = make_pipeline_for(contract, "lightgbm", {"n_estimators": 15}, seed=3).fit(X, y)
    estimator = model.named_steps["model"]
    assert estimator.random_state == 3 and estimator.n_jobs == 1
    _round_trip(model, X, task)


def test_lightgbm_missing_is_a_helpful_spec_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # `import lightgbm` now raises ImportError
    with pytest.raises(SpecError, match="needs the LightGBM package") as info:
        make_estimator("lightgbm", "binary", {}, seed=0)
    assert "keelml[lightgbm]" in (info.value.fix or "")
    assert "hist_gradient_boosting" in (info.value.fix or "")


def test_estimator_by_import_path_trusts_exactly_the_declared_class(synthetic) -> None:
    frame, contract = synthetic("regression", n=120)
    X, y = to_xy(frame, contract)
    model = make_pipeline_for(contract, CUSTOM, {"shrink": 0.1}, seed=7).fit(X, y)
    assert model.named_steps["model"].random_state == 7
    data = dump_model(model)
    with pytest.raises(IntegrityError, match="ShrunkLinearRegressor"):
        load_model(data)  # not trusted unless the spec declares it
    declared = trusted_types(CUSTOM)
    assert declared == ("tests.model.custom_estimators.ShrunkLinearRegressor",)
    check_loadable(data, TrustPolicy(classes=declared))
    _round_trip(model, X, "regression", declared)
    # the pipeline's model codec trusts the spec's family, and only that
    codec = codecs(TrustPolicy.from_spec(ModelSpec(family=CUSTOM), PreprocessSpec()))["model"]
    np.testing.assert_array_equal(codec.decode(codec.encode(model)).predict(X), model.predict(X))
    with pytest.raises(IntegrityError):
        codecs(TrustPolicy())["model"].decode(codec.encode(model))


def test_an_undeclared_type_inside_a_declared_estimator_is_refused_when_saving(synthetic) -> None:
    frame, contract = synthetic("regression", n=80)
    X, y = to_xy(frame, contract)
    family = "tests.model.custom_estimators:LeakyRegressor"
    model = make_pipeline_for(contract, family, {}, seed=0).fit(X, y)
    with pytest.raises(DataError, match="custom_estimators.Holder"):
        codecs(TrustPolicy.from_spec(ModelSpec(family=family), PreprocessSpec()))["model"].encode(model)


def test_sklearn_estimator_by_import_path_trains(synthetic) -> None:
    frame, contract = synthetic("multiclass", n=150)
    spec = ModelSpec(family="sklearn.ensemble:ExtraTreesClassifier", params={"n_estimators": 10}, cv_folds=3,
                     learning_curve=LearningCurveSpec(sizes=[]))
    model, report = train_model(frame, contract, spec)
    assert report["cv"]["accuracy"]["mean"] > 0.5
    assert report["monitoring"]["iterations"] is None  # no boosting iterations to follow
    _round_trip(model, to_xy(frame, contract)[0], "multiclass", trusted_types(spec.family))


def test_an_estimator_holding_untrusted_internals_is_refused_when_saving(synthetic) -> None:
    frame, contract = synthetic("binary", n=80)
    X, y = to_xy(frame, contract)
    family = "sklearn.neighbors:KNeighborsClassifier"
    model = make_pipeline_for(contract, family, {"algorithm": "kd_tree"}, seed=0).fit(X, y)
    with pytest.raises(DataError, match="KDTree"):  # only the declared class is trusted, not its internals
        codecs(TrustPolicy.from_spec(ModelSpec(family=family), PreprocessSpec()))["model"].encode(model)


def test_import_path_errors() -> None:
    with pytest.raises(SpecError, match="cannot import module 'no_such_module'"):
        make_estimator("no_such_module:Model", "binary", {}, seed=0)
    with pytest.raises(SpecError, match="has no class 'Nope'"):
        make_estimator("sklearn.svm:Nope", "binary", {}, seed=0)
    with pytest.raises(SpecError, match="not a scikit-learn-compatible estimator"):
        make_estimator("collections:OrderedDict", "binary", {}, seed=0)
    with pytest.raises(SpecError, match="is a regressor but the task is binary"):
        make_estimator("sklearn.svm:SVR", "binary", {}, seed=0)
    with pytest.raises(SpecError, match="is a classifier but the task is regression"):
        make_estimator("sklearn.svm:SVC", "regression", {}, seed=0)
    with pytest.raises(SpecError, match="predict_proba") as info:
        make_estimator("sklearn.svm:LinearSVC", "binary", {}, seed=0)
    assert "model.params" in (info.value.fix or "")
    with pytest.raises(DataError, match="unknown hyperparameter 'shrinkk'") as bad:
        make_estimator(CUSTOM, "regression", {"shrinkk": 1}, seed=0)
    assert "did you mean 'shrink'?" in (bad.value.fix or "")
