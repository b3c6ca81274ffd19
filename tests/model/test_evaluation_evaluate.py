"""Held-out metrics, the vectorised bootstrap and the predictions table."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score, f1_score, log_loss, r2_score, roc_auc_score

from keelml.data.contract import ColumnContract, Contract
from keelml.errors import DataError
from keelml.evaluation.evaluate import evaluate_model, primary_metric
from keelml.model import metrics as ev
from keelml.model.catalog import make_pipeline_for
from keelml.model.features import to_xy
from keelml.spec.evaluate import EvaluateSpec


class FixedModel:
    """Stands in for a fitted classifier: returns given probabilities row by row."""

    def __init__(self, classes: list[str], proba: np.ndarray) -> None:
        self.classes_ = np.asarray(classes)
        self.proba = np.asarray(proba, dtype=float)

    def predict_proba(self, X) -> np.ndarray:
        return self.proba[: len(X)]


class FixedRegressor:
    def __init__(self, pred: list[float]) -> None:
        self.pred = np.asarray(pred)

    def predict(self, X) -> np.ndarray:
        return self.pred[: len(X)]


def _frame(target: list, task: str, classes: list[str] | None) -> tuple[pl.DataFrame, Contract]:
    frame = pl.DataFrame({"f": [float(i) for i in range(len(target))], "y": target})
    contract = Contract(target="y", task=task, classes=classes, columns=[
        ColumnContract(name="f", type="float"),
        ColumnContract(name="y", type="float" if task == "regression" else "category", role="target"),
    ])
    return frame, contract


def test_primary_metric_defaults_and_errors() -> None:
    assert primary_metric("binary", None) == "roc_auc"
    assert primary_metric("multiclass", None) == "accuracy"
    assert primary_metric("regression", None) == "r2"
    assert primary_metric("binary", "brier") == "brier"
    with pytest.raises(DataError) as info:
        primary_metric("binary", "roc-auc")
    assert "roc_auc" in (info.value.expected or "") and "pr_auc" in (info.value.expected or "")
    assert "did you mean 'roc_auc'?" in (info.value.fix or "")
    with pytest.raises(DataError, match="'f1_macro' for a regression"):
        primary_metric("regression", "f1_macro")


def test_binary_metrics_on_a_known_case() -> None:
    frame, contract = _frame(["a", "a", "b", "b"], "binary", ["a", "b"])
    p_b = np.array([0.1, 0.4, 0.35, 0.8])
    model = FixedModel(["a", "b"], np.c_[1 - p_b, p_b])
    metrics, table = evaluate_model(model, frame, contract, EvaluateSpec(bootstrap_rounds=0))  # type: ignore[arg-type]
    assert metrics["roc_auc"] == pytest.approx(0.75)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert metrics["brier"] == pytest.approx(np.mean((p_b - [0, 0, 1, 1]) ** 2))
    assert metrics["pr_auc"] == pytest.approx(average_precision_score([0, 0, 1, 1], p_b))
    assert metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.35, 0.8])))
    assert metrics["confusion_matrix"] == {"labels": ["a", "b"], "matrix": [[2, 0], [1, 1]]}
    assert metrics["positive_class"] == "b"
    assert metrics["n_test"] == 4 and metrics["class_balance"] == {"a": 0.5, "b": 0.5}
    assert metrics["primary"]["name"] == "roc_auc" and metrics["primary"]["value"] == metrics["roc_auc"]
    assert metrics["primary"]["ci_low"] is None  # no bootstrap requested
    assert table.columns == ["_row", "prediction", "proba_a", "proba_b"]
    assert table["_row"].to_list() == [0, 1, 2, 3]
    assert table["prediction"].to_list() == ["a", "a", "a", "b"]
    assert table["proba_b"].to_list() == [0.1, 0.4, 0.35, 0.8]


def test_perfect_model_scores_one(synthetic) -> None:
    frame, contract = _frame(["a"] * 20 + ["b"] * 20, "binary", ["a", "b"])
    X, y = to_xy(frame, contract)
    model = make_pipeline_for(contract, "logistic_regression", {"C": 100.0}, seed=0).fit(X, y)
    metrics, _ = evaluate_model(model, frame, contract, EvaluateSpec(bootstrap_rounds=50))
    assert metrics["roc_auc"] == 1.0 and metrics["pr_auc"] == 1.0 and metrics["accuracy"] == 1.0
    assert metrics["primary"]["ci_low"] == 1.0 and metrics["primary"]["ci_high"] == 1.0


def test_predictions_are_rounded_and_sum_to_one(synthetic) -> None:
    frame, contract = synthetic("multiclass")
    X, y = to_xy(frame, contract)
    model = make_pipeline_for(contract, "random_forest", {"n_estimators": 15}, seed=0).fit(X, y)
    metrics, table = evaluate_model(model, frame, contract, EvaluateSpec(bootstrap_rounds=30))
    assert table.columns == ["_row", "prediction", "proba_high", "proba_low", "proba_mid"]
    proba = table.select(pl.selectors.starts_with("proba_")).to_numpy()
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(proba, np.round(proba, 6))
    assert set(metrics) >= {"accuracy", "f1_macro", "log_loss", "roc_auc_ovr", "confusion_matrix", "primary"}
    assert metrics["roc_auc_ovr"] == pytest.approx(
        roc_auc_score(y, model.predict_proba(X), multi_class="ovr", labels=["high", "low", "mid"]))
    assert sum(metrics["class_balance"].values()) == pytest.approx(1.0)
    assert np.array(metrics["confusion_matrix"]["matrix"]).sum() == len(y)


def test_bootstrap_interval_contains_estimate_and_is_seeded(synthetic) -> None:
    frame, contract = synthetic("binary", n=400, seed=1)
    train, test = frame.head(250), frame.tail(150)
    X, y = to_xy(train, contract)
    model = make_pipeline_for(contract, "logistic_regression", {}, seed=0).fit(X, y)
    spec = EvaluateSpec(bootstrap_rounds=300, confidence=0.9, seed=7)
    metrics, _ = evaluate_model(model, test, contract, spec)
    primary = metrics["primary"]
    assert primary["ci_low"] < primary["value"] < primary["ci_high"]
    assert primary["ci_high"] - primary["ci_low"] < 0.3
    assert primary["confidence"] == 0.9 and primary["bootstrap_rounds"] == 300
    assert 290 <= primary["bootstrap_rounds_used"] <= 300
    again, _ = evaluate_model(model, test, contract, spec)
    assert again["primary"] == primary
    other, _ = evaluate_model(model, test, contract, spec.model_copy(update={"seed": 8}))
    assert other["primary"]["ci_low"] != primary["ci_low"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_metrics_match_sklearn_on_resampled_rows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    y = rng.choice(["a", "b", "c"], size=n).astype(object)
    proba = rng.dirichlet([1, 1, 1], size=n).round(1)  # rounding makes ties
    proba /= proba.sum(axis=1, keepdims=True)
    pred = np.array(["a", "b", "c"], dtype=object)[proba.argmax(axis=1)]
    idx = rng.integers(0, n, size=n)
    weights = np.vstack([np.ones(n), np.bincount(idx, minlength=n)])
    is_b = y == "b"
    auc = ev.weighted_auc(weights, is_b, proba[:, 1])
    ap = ev.weighted_ap(weights, is_b, proba[:, 1])
    macro = ev.weighted_f1_macro(weights, y, pred, ["a", "b", "c"])
    ovr = ev.ovr_auc(weights, y, proba, ["a", "b", "c"])
    for row, rows in enumerate([np.arange(n), idx]):
        assert auc[row] == pytest.approx(roc_auc_score(is_b[rows], proba[rows, 1]))
        assert ap[row] == pytest.approx(average_precision_score(is_b[rows], proba[rows, 1]))
        assert macro[row] == pytest.approx(f1_score(y[rows], pred[rows], average="macro"))
        assert ovr[row] == pytest.approx(roc_auc_score(y[rows], proba[rows], multi_class="ovr"))
        _, classify = ev.classification_metrics("multiclass", y[rows], pred[rows], proba[rows], ["a", "b", "c"])
        assert classify["log_loss"](np.ones((1, len(rows))))[0] == pytest.approx(
            log_loss(y[rows], proba[rows], labels=["a", "b", "c"]))


def test_regression_metrics_and_bootstrap() -> None:
    truth = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    pred = [1.5, 2.0, 2.5, 4.5, 5.0, 5.0]
    frame, contract = _frame(truth, "regression", None)
    metrics, table = evaluate_model(FixedRegressor(pred), frame, contract,  # type: ignore[arg-type]
                                    EvaluateSpec(bootstrap_rounds=200, seed=3))
    err = np.array(truth) - np.array(pred)
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)))
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(err)))
    assert metrics["r2"] == pytest.approx(r2_score(truth, pred))
    assert metrics["class_balance"] is None and metrics["n_test"] == 6
    assert metrics["primary"]["name"] == "r2"
    assert metrics["primary"]["ci_low"] <= metrics["r2"] <= metrics["primary"]["ci_high"]
    assert table.columns == ["_row", "prediction"] and table["prediction"].to_list() == pred


def test_bootstrap_skips_single_class_resamples() -> None:
    frame, contract = _frame(["a", "a", "a", "b"], "binary", ["a", "b"])
    p_b = np.array([0.2, 0.3, 0.6, 0.9])
    metrics, _ = evaluate_model(FixedModel(["a", "b"], np.c_[1 - p_b, p_b]), frame, contract,  # type: ignore[arg-type]
                                EvaluateSpec(metric="accuracy", bootstrap_rounds=400))
    used = metrics["primary"]["bootstrap_rounds_used"]
    # P(no "b" among 4 draws) = (3/4)^4 ~ 0.32 and P(no "a") ~ 0.004: about a third are skipped
    assert 200 < used < 340


def test_unseen_test_class_and_missing_target_are_errors() -> None:
    frame, contract = _frame(["a", "c"], "multiclass", ["a", "b", "c"])
    model = FixedModel(["a", "b"], np.array([[0.5, 0.5], [0.5, 0.5]]))
    with pytest.raises(DataError, match="'c'"):
        evaluate_model(model, frame, contract, EvaluateSpec())  # type: ignore[arg-type]
    with pytest.raises(DataError, match="no target column"):
        evaluate_model(model, frame.drop("y"), contract, EvaluateSpec())  # type: ignore[arg-type]
