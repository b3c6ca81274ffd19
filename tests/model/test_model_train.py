"""Cross-validated training and its report; a quick check on real Adult data."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from keelml.errors import DataError
from keelml.evaluation.evaluate import evaluate_model
from keelml.model.features import to_xy
from keelml.model.train import train_model
from keelml.spec.evaluate import EvaluateSpec
from keelml.spec.model import LearningCurveSpec, ModelSpec


def test_binary_report_structure(synthetic) -> None:
    frame, contract = synthetic("binary")
    spec = ModelSpec(family="logistic_regression", params={"C": 0.5}, cv_folds=4, seed=3)
    model, report = train_model(frame, contract, spec)
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    assert report["family"] == "logistic_regression" and report["task"] == "binary"
    assert report["params"] == {"C": 0.5} and report["seed"] == 3
    assert report["folds"] == 4 and report["n_train"] == frame.height
    assert report["primary_metric"] == "roc_auc" and report["positive_class"] == "yes"
    assert set(report["cv"]) == {"roc_auc", "accuracy", "log_loss"}
    for name, scores in report["cv"].items():
        assert len(scores["test"]) == 4 and len(scores["train"]) == 4
        assert scores["mean"] == pytest.approx(np.mean(scores["test"]))
        assert scores["std"] == pytest.approx(np.std(scores["test"]))
        assert scores["train_mean"] == pytest.approx(np.mean(scores["train"]))
        if name != "log_loss":
            assert all(0.5 < s <= 1.0 for s in scores["test"])  # the data is learnable
    assert all(s > 0 for s in report["cv"]["log_loss"]["test"])  # reported as a positive loss
    roc = report["cv"]["roc_auc"]
    assert report["fit_gap"] == pytest.approx(roc["train_mean"] - roc["mean"])
    assert report["fit_seconds"] > 0 and report["cv_seconds"] > 0 and report["cv_fit_seconds_mean"] > 0
    assert list(model.classes_) == ["no", "yes"]


def test_training_is_deterministic(synthetic) -> None:
    frame, contract = synthetic("multiclass")
    spec = ModelSpec(family="random_forest", params={"n_estimators": 10}, cv_folds=3, seed=5)
    first_model, first = train_model(frame, contract, spec)
    second_model, second = train_model(frame, contract, spec)
    assert first["cv"] == second["cv"]
    X, _ = to_xy(frame, contract)
    np.testing.assert_array_equal(first_model.predict_proba(X), second_model.predict_proba(X))
    assert set(first["cv"]) == {"accuracy", "f1_macro"} and first["primary_metric"] == "accuracy"


def test_regression_report(synthetic) -> None:
    frame, contract = synthetic("regression")
    model, report = train_model(frame, contract, ModelSpec(family="logistic_regression", cv_folds=3))
    assert set(report["cv"]) == {"r2", "rmse"} and report["primary_metric"] == "r2"
    assert report["cv"]["r2"]["mean"] > 0.5
    assert all(v > 0 for v in report["cv"]["rmse"]["test"])
    assert report["classes"] is None and report["positive_class"] is None
    assert model.predict(to_xy(frame, contract)[0]).shape == (frame.height,)


def test_folds_shrink_to_the_smallest_class(synthetic) -> None:
    frame, contract = synthetic("binary", n=120)
    rare = pl.concat([frame.filter(pl.col("target") == "no"),
                      frame.filter(pl.col("target") == "yes").head(3)])
    _, report = train_model(rare, contract, ModelSpec(family="logistic_regression", cv_folds=5))
    assert report["folds"] == 3 and report["requested_folds"] == 5
    assert len(report["cv"]["accuracy"]["test"]) == 3


def test_too_few_rows_of_a_class_is_a_data_error(synthetic) -> None:
    frame, contract = synthetic("binary", n=120)
    lonely = pl.concat([frame.filter(pl.col("target") == "no"),
                        frame.filter(pl.col("target") == "yes").head(1)])
    with pytest.raises(DataError, match="'yes' \\(1 row"):
        train_model(lonely, contract, ModelSpec(family="logistic_regression"))
    with pytest.raises(DataError, match="not in the contract's classes"):
        train_model(frame.with_columns(target=pl.lit("maybe")), contract, ModelSpec())
    with pytest.raises(DataError, match="no target column"):
        train_model(frame.drop("target"), contract, ModelSpec())


def test_positive_class_is_the_second_sorted_label(synthetic) -> None:
    frame, contract = synthetic("binary")
    model, report = train_model(frame, contract, ModelSpec(family="logistic_regression", cv_folds=3))
    X, y = to_xy(frame, contract)
    p_yes = model.predict_proba(X)[:, 1]
    assert roc_auc_score(y == "yes", p_yes) > 0.8  # column 1 is the probability of "yes"
    assert report["positive_class"] == contract.classes[1] == "yes"


def test_unsorted_contract_classes_are_refused(synthetic) -> None:
    frame, contract = synthetic("binary")
    flipped = contract.model_copy(update={"classes": ["yes", "no"]})
    with pytest.raises(DataError, match="sorted"):
        train_model(frame, flipped, ModelSpec(family="logistic_regression", cv_folds=2))


def test_adult_hist_gradient_boosting(adult) -> None:
    frame, contract = adult
    train, holdout = frame.head(5000), frame.slice(5000, 1000)
    spec = ModelSpec(family="hist_gradient_boosting", params={"max_iter": 100}, cv_folds=3, seed=0,
                     learning_curve=LearningCurveSpec(sizes=[]))
    model, report = train_model(train, contract, spec)
    assert report["n_train"] == 5000 and report["cv"]["roc_auc"]["mean"] > 0.85
    metrics, table = evaluate_model(model, holdout, contract, EvaluateSpec(bootstrap_rounds=100))
    assert metrics["roc_auc"] > 0.85
    assert metrics["primary"]["ci_low"] < metrics["roc_auc"] < metrics["primary"]["ci_high"]
    assert metrics["positive_class"] == ">50K"
    assert table.height == 1000 and table.columns[-2:] == ["proba_<=50K", "proba_>50K"]
    # a served row with JSON nulls predicts like the same row with NaN
    row = holdout.head(1).to_dicts()[0]
    row.update(workclass=None, occupation=None, age=None)
    X_none = pl.DataFrame([row]).select([c.name for c in contract.features]).to_pandas()
    X_nan = X_none.astype(object).where(X_none.notna(), np.nan)
    np.testing.assert_array_equal(model.predict_proba(X_none), model.predict_proba(X_nan))
