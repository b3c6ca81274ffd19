"""Fairness per sensitive column, checked against Fairlearn's own functions on the raw rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from fairlearn.metrics import (
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    true_positive_rate,
)

from keelml.data.contract import ColumnContract, Contract
from keelml.evaluation.fairness import fairness_report


def _contract(task: str, sensitive: tuple[str, ...] = ("sex", "age")) -> Contract:
    classes = {"binary": ["no", "yes"], "multiclass": ["a", "b", "c"]}.get(task)
    return Contract(target="y", task=task, classes=classes, columns=[  # type: ignore[arg-type]
        ColumnContract(name="sex", type="category", categories=["F", "M", "X"], sensitive="sex" in sensitive),
        ColumnContract(name="age", type="integer", sensitive="age" in sensitive),
        ColumnContract(name="y", type="float" if task == "regression" else "category", role="target"),
    ])


def _rows(n: int, seed: int) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], size=n)
    sex[:20] = "X"  # a group too small to count
    age = rng.integers(18, 80, size=n)
    truth = np.where(rng.random(n) < np.where(sex == "M", 0.4, 0.2), "yes", "no").astype(object)
    guess = np.where(rng.random(n) < 0.8, truth, np.where(truth == "yes", "no", "yes")).astype(object)
    return pl.DataFrame({"sex": sex, "age": age}), truth, guess


def test_binary_fairness_matches_fairlearn_on_the_groups_large_enough() -> None:
    frame, truth, guess = _rows(3000, seed=0)
    report = fairness_report(frame, _contract("binary"), truth=truth, prediction=guess, positive="yes",
                             min_rows=50, bins=4)
    assert report["gated"] == ["demographic_parity_difference", "equalized_odds_difference"]
    by_sex = next(c for c in report["columns"] if c["column"] == "sex")
    assert [g["group"] for g in by_sex["groups"]] == ["F", "M", "X"]
    assert by_sex["excluded"] == ["X"] and by_sex["groups"][2]["n"] == 20
    big = np.isin(frame["sex"].to_numpy(), ["F", "M"])
    t, p, s = (truth[big] == "yes").astype(int), (guess[big] == "yes").astype(int), frame["sex"].to_numpy()[big]
    assert by_sex["differences"]["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(t, p, sensitive_features=s))
    assert by_sex["differences"]["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(t, p, sensitive_features=s))
    female = by_sex["groups"][0]
    rows = frame["sex"].to_numpy() == "F"
    yt, yp = (truth[rows] == "yes").astype(int), (guess[rows] == "yes").astype(int)
    assert female["n"] == rows.sum()
    assert female["selection_rate"] == pytest.approx(yp.mean())
    assert female["tpr"] == pytest.approx(true_positive_rate(yt, yp))
    assert female["fpr"] == pytest.approx(false_positive_rate(yt, yp))
    assert female["accuracy"] == pytest.approx((yt == yp).mean())
    assert female["positive_rate"] == pytest.approx(yt.mean())
    by_age = next(c for c in report["columns"] if c["column"] == "age")  # numeric: quantile bins
    assert len(by_age["groups"]) == 4 and sum(g["n"] for g in by_age["groups"]) == 3000
    assert by_age["differences"]["demographic_parity_difference"] is not None


def test_one_large_group_is_not_measurable() -> None:
    frame, truth, guess = _rows(300, seed=1)
    report = fairness_report(frame, _contract("binary", ("sex",)), truth=truth, prediction=guess, positive="yes",
                             min_rows=200, bins=4)
    [entry] = report["columns"]
    assert entry["differences"] == {"demographic_parity_difference": None, "equalized_odds_difference": None}
    assert "fewer than 2 groups with at least 200 rows" in entry["note"]


def test_regression_and_multiclass_fairness() -> None:
    frame, _, _ = _rows(1000, seed=2)
    rng = np.random.default_rng(2)
    truth = rng.normal(size=1000)
    error = np.where(frame["sex"].to_numpy() == "M", 1.0, 0.5)
    report = fairness_report(frame, _contract("regression", ("sex",)), truth=truth, prediction=truth + error,
                             positive=None, min_rows=50, bins=4)
    [entry] = report["columns"]
    assert [g["mae"] for g in entry["groups"][:2]] == pytest.approx([0.5, 1.0])
    assert entry["mae_difference"] == pytest.approx(0.5)
    big = frame["sex"].to_numpy() != "X"
    assert entry["differences"]["mae_relative_difference"] == pytest.approx(0.5 / np.mean(error[big]))
    labels = rng.choice(["a", "b", "c"], size=1000).astype(object)
    guess = np.where(frame["sex"].to_numpy() == "M", labels, "a").astype(object)
    report = fairness_report(frame, _contract("multiclass", ("sex",)), truth=labels, prediction=guess,
                             positive=None, min_rows=50, bins=4)
    [entry] = report["columns"]
    accuracy = {g["group"]: g["accuracy"] for g in entry["groups"]}
    assert accuracy["M"] == 1.0
    assert entry["differences"]["accuracy_difference"] == pytest.approx(1.0 - accuracy["F"])


def test_no_sensitive_column_means_no_fairness_entries() -> None:
    frame, truth, guess = _rows(100, seed=3)
    report = fairness_report(frame, _contract("binary", ()), truth=truth, prediction=guess, positive="yes",
                             min_rows=10, bins=4)
    assert report["columns"] == []
