"""The estimator catalog: families, seeds and helpful hyperparameter errors."""

from __future__ import annotations

import pytest
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge

from keelml.errors import DataError
from keelml.model.catalog import make_estimator, make_pipeline_for


def test_families_and_seed() -> None:
    hgb = make_estimator("hist_gradient_boosting", "regression", {"max_iter": 7}, seed=11)
    assert isinstance(hgb, HistGradientBoostingRegressor)
    assert hgb.get_params()["random_state"] == 11 and hgb.get_params()["max_iter"] == 7
    logistic = make_estimator("logistic_regression", "multiclass", {}, seed=3)
    assert isinstance(logistic, LogisticRegression) and logistic.max_iter == 1000
    assert logistic.random_state == 3
    ridge = make_estimator("logistic_regression", "regression", {"alpha": 2.0}, seed=3)
    assert isinstance(ridge, Ridge) and ridge.alpha == 2.0
    forest = make_estimator("random_forest", "binary", {"n_estimators": 5}, seed=5)
    assert isinstance(forest, RandomForestClassifier)
    assert forest.n_jobs == 1 and forest.random_state == 5 and forest.n_estimators == 5


def test_unknown_hyperparameter_suggests_the_right_one() -> None:
    with pytest.raises(DataError) as info:
        make_estimator("hist_gradient_boosting", "binary", {"learning_rat": 0.1}, seed=0)
    err = info.value
    assert "'learning_rat'" in err.what
    assert err.expected is not None and "learning_rate" in err.expected and "max_iter" in err.expected
    assert err.fix is not None and "did you mean 'learning_rate'?" in err.fix


def test_unknown_hyperparameter_without_close_match() -> None:
    with pytest.raises(DataError) as info:
        make_estimator("random_forest", "regression", {"zzzzzz": 1}, seed=0)
    assert "did you mean" not in (info.value.fix or "")
    assert "n_estimators" in (info.value.expected or "")


def test_invalid_value_and_unknown_family() -> None:
    with pytest.raises(DataError, match="invalid hyperparameter value"):
        make_estimator("random_forest", "binary", {"n_estimators": -3}, seed=0)
    with pytest.raises(DataError, match="unknown model family") as info:
        make_estimator("random_forrest", "binary", {}, seed=0)
    assert "did you mean 'random_forest'?" in (info.value.fix or "")
    with pytest.raises(DataError, match="scoring"):
        make_estimator("hist_gradient_boosting", "binary", {"scoring": "roc_auc"}, seed=0)


def test_pipeline_shape(synthetic) -> None:
    _, contract = synthetic("multiclass")
    pipeline = make_pipeline_for(contract, "logistic_regression", {"C": 0.5}, seed=1)
    assert [name for name, _ in pipeline.steps] == ["features", "model"]
    assert pipeline.named_steps["model"].C == 0.5
