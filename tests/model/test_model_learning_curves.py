"""Monitoring training: learning curves, per-iteration scores, and the over/under-fitting flags."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from keelml.model.learning_curves import _subsample
from keelml.model.train import train_model
from keelml.spec.model import LearningCurveSpec, ModelSpec

NO_CURVE = LearningCurveSpec(sizes=[])


def _noisy(frame: pl.DataFrame, share: float, seed: int = 0) -> pl.DataFrame:
    """Flip the label of a share of rows: nothing can learn those, a memorising model still fits them."""
    flip = np.random.default_rng(seed).random(frame.height) < share
    labels = frame.get_column("target").to_numpy()
    flipped = np.where(labels == "yes", "no", "yes")
    return frame.with_columns(target=pl.Series(np.where(flip, flipped, labels)))


def test_a_memorising_model_is_flagged_overfitting(synthetic) -> None:
    frame, contract = synthetic("binary", n=300)
    spec = ModelSpec(family="random_forest", params={"n_estimators": 30, "min_samples_leaf": 1}, cv_folds=3,
                     learning_curve=NO_CURVE)
    _, report = train_model(_noisy(frame, 0.25), contract, spec)
    monitoring = report["monitoring"]
    assert monitoring["flags"]["overfitting"] and not monitoring["flags"]["underfitting"]
    assert monitoring["train"]["mean"] > 0.99 and monitoring["validation"]["mean"] < 0.85
    assert monitoring["skill"]["gap"] > monitoring["thresholds"]["overfit_gap"]
    assert any(note.startswith("overfitting") for note in monitoring["notes"])
    assert monitoring["baseline"]["validation"] == 0.5  # class shares rank nothing: ROC AUC 0.5


def test_a_model_that_learns_nothing_is_flagged_underfitting(synthetic) -> None:
    frame, contract = synthetic("regression", n=200)
    spec = ModelSpec(family="linear", params={"alpha": 1e7}, cv_folds=3, learning_curve=NO_CURVE)
    _, report = train_model(frame, contract, spec)
    monitoring = report["monitoring"]
    assert monitoring["metric"] == "r2"
    assert monitoring["flags"]["underfitting"] and not monitoring["flags"]["overfitting"]
    assert monitoring["skill"]["train"] < 0.2 and monitoring["skill"]["validation"] < 0.2
    assert any(note.startswith("underfitting") for note in monitoring["notes"])


def test_a_fitting_model_raises_no_flag_and_the_learning_curve_has_every_size(synthetic) -> None:
    frame, contract = synthetic("regression", n=240)
    spec = ModelSpec(family="linear", cv_folds=3, learning_curve=LearningCurveSpec(sizes=[0.25, 0.5, 1.0]))
    _, report = train_model(frame, contract, spec, metric="rmse")
    monitoring = report["monitoring"]
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    assert monitoring["flags"] == {"overfitting": False, "underfitting": False,
                                   "still_improving": monitoring["flags"]["still_improving"]}
    assert monitoring["metric"] == "rmse" and monitoring["greater_is_better"] is False
    curve = monitoring["learning_curve"]
    assert curve["sizes"] == [0.25, 0.5, 1.0]
    assert curve["n_train"][0] < curve["n_train"][1] < curve["n_train"][2] == 160
    assert curve["validation_mean"][-1] == monitoring["validation"]["mean"]  # full size = the CV folds
    assert all(v is not None and v > 0 for v in curve["validation_mean"])
    assert monitoring["iterations"] is None


def test_boosting_reports_the_validation_score_per_iteration(synthetic) -> None:
    frame, contract = synthetic("binary", n=240)
    spec = ModelSpec(family="hist_gradient_boosting", params={"max_iter": 30}, cv_folds=3, learning_curve=NO_CURVE)
    _, report = train_model(frame, contract, spec)
    curve = report["monitoring"]["iterations"]
    assert curve["source"] == "cv folds" and curve["metric"] == "roc_auc"  # scored on the validation rows
    assert curve["n_iter_per_fold"] == [30, 30, 30]
    assert curve["iteration"][0] == 1 and curve["iteration"][-1] == 30
    assert len(curve["validation_mean"]) == len(curve["train_mean"]) == len(curve["iteration"])
    assert curve["validation_mean"][-1] > curve["validation_mean"][0] - 0.05
    assert curve["best_iteration"] in curve["iteration"]
    assert curve["validation_mean"][-1] == pytest.approx(report["monitoring"]["validation"]["mean"])


def test_early_stopping_boosting_uses_its_recorded_loss(synthetic) -> None:
    frame, contract = synthetic("regression", n=240)
    spec = ModelSpec(family="hist_gradient_boosting", cv_folds=3, learning_curve=NO_CURVE,
                     params={"early_stopping": True, "max_iter": 200, "n_iter_no_change": 5})
    _, report = train_model(frame, contract, spec)
    curve = report["monitoring"]["iterations"]
    assert curve["source"] == "early-stopping holdout" and curve["metric"] == "rmse"
    assert curve["greater_is_better"] is False
    assert all(n < 200 for n in curve["n_iter_per_fold"])  # it stopped early
    assert curve["validation_mean"][-1] < curve["validation_mean"][0]  # the loss fell
    assert curve["best_iteration"] == min(zip(curve["validation_mean"], curve["iteration"], strict=True))[1]


def test_time_ordered_curves_keep_the_most_recent_rows() -> None:
    fit = np.arange(100)
    np.testing.assert_array_equal(_subsample(fit, 0.2, "time", seed=0), np.arange(80, 100))
    shuffled = _subsample(fit, 0.2, "stratified", seed=0)
    assert len(shuffled) == 20 and not np.array_equal(shuffled, np.arange(20))
