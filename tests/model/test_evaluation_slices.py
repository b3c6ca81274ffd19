"""Slices of held-out rows, their metrics, and the error analysis (worst slices and rows)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from keelml.data.contract import ColumnContract, Contract
from keelml.evaluation.evaluate import evaluate_all, score_model
from keelml.evaluation.slices import MAX_GROUPS, define_slices, group_labels, slice_metrics, worst_examples
from keelml.model.catalog import make_pipeline_for
from keelml.model.features import to_xy
from keelml.model.metrics import METRICS
from keelml.spec.evaluate import EvaluateSpec


def test_numeric_bins_give_a_mass_point_its_own_slice_and_missing_comes_last() -> None:
    values = pl.Series("v", [0.0] * 60 + [float(i) for i in range(1, 41)] + [None] * 5)
    codes, names = group_labels(values, ColumnContract(name="v", type="float"), bins=4)
    assert names[0] == "= 0" and names[-1] == "(missing)"
    assert [n for n in names if n.startswith("[")] == ["[1, 14)", "[14, 27)", "[27, 40]"]
    labels = np.asarray(names, dtype=object)[codes]
    assert (labels[:60] == "= 0").all() and (labels[-5:] == "(missing)").all()
    assert labels[60] == "[1, 14)" and labels[99] == "[27, 40]"  # the maximum falls in the last, closed bin
    assert np.bincount(codes).sum() == len(values)


def test_categorical_groups_follow_the_contract_then_frequency_and_cap_free_text() -> None:
    column = ColumnContract(name="k", type="category", categories=["z", "a"])
    codes, names = group_labels(pl.Series("k", ["a", "z", "a", None, "b"]), column, bins=4)
    assert names == ["z", "a", "b", "(missing)"]
    assert np.asarray(names, dtype=object)[codes].tolist() == ["a", "z", "a", "(missing)", "b"]
    many = pl.Series("s", [f"v{i:03d}" for i in range(MAX_GROUPS + 10)] + ["v000"] * 3)
    codes, names = group_labels(many, ColumnContract(name="s", type="string"), bins=4)
    assert len(names) == MAX_GROUPS + 1 and names[-1] == "(other)" and names[0] == "v000"
    flags, names = group_labels(pl.Series("f", [True, False, True]), ColumnContract(name="f", type="boolean"), 4)
    assert names == ["true", "false"] and flags.tolist() == [0, 1, 0]


def test_slice_metrics_equal_sklearn_on_the_rows_of_each_slice(synthetic) -> None:
    frame, contract = synthetic("binary", n=600, seed=3)
    train, test = frame.head(300), frame.tail(300)
    X, y = to_xy(train, contract)
    model = make_pipeline_for(contract, "logistic_regression", {}, seed=0).fit(X, y)
    scored = score_model(model, test, contract)
    slices = define_slices(test, contract, bins=3)
    assert {s.column for s in slices} == {"x", "count", "fraction", "flag", "k", "note"}  # features only
    rows = slice_metrics(slices, scored.weighted, ["roc_auc", "accuracy"], min_rows=40)
    assert scored.proba is not None
    for s, row in zip(slices, rows, strict=True):
        assert row["n"] == int(s.mask.sum())
        if row["n"] < 40:
            assert "metrics" not in row
            continue
        truth = scored.truth[s.mask] == "yes"
        assert row["metrics"]["accuracy"] == pytest.approx(accuracy_score(scored.truth[s.mask],
                                                                          scored.prediction[s.mask]))
        if truth.all() or not truth.any():
            assert row["metrics"]["roc_auc"] is None
        else:
            assert row["metrics"]["roc_auc"] == pytest.approx(roc_auc_score(truth, scored.proba[s.mask, 1]))


def _contract_with_group() -> Contract:
    return Contract(target="y", task="binary", classes=["no", "yes"], columns=[
        ColumnContract(name="row_id", type="integer", role="id"),
        ColumnContract(name="x", type="float"),
        ColumnContract(name="group", type="category", categories=["a", "b", "c"]),
        ColumnContract(name="y", type="category", role="target", categories=["no", "yes"]),
    ])


def _frame_where_group_c_is_noise(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    group = rng.choice(["a", "b", "c"], size=n, p=[0.45, 0.45, 0.1])
    signal = np.where(group == "c", rng.normal(size=n), x)  # in group c the label ignores x
    y = np.where(signal + rng.normal(scale=0.3, size=n) > 0, "yes", "no")
    return pl.DataFrame({"row_id": np.arange(n), "x": x, "group": group, "y": y})


def test_error_analysis_finds_the_slice_where_the_model_is_guessing() -> None:
    contract = _contract_with_group()
    frame = _frame_where_group_c_is_noise(4000, seed=0)
    X, y = to_xy(frame.head(2000), contract)
    model = make_pipeline_for(contract, "logistic_regression", {}, seed=0).fit(X, y)
    spec = EvaluateSpec(metric="accuracy", bootstrap_rounds=100, min_slice_rows=50, worst_slices=3,
                        worst_examples=4)
    metrics, analysis, _ = evaluate_all(model, frame.tail(2000), contract, spec)
    assert analysis is not None
    worst = analysis["error_analysis"]["worst_slices"]
    top = worst[0]
    assert (top["column"], top["slice"]) == ("group", "c")
    assert top["metric"] == "accuracy" and top["value"] < 0.7 < metrics["accuracy"]
    assert top["difference"] == pytest.approx(top["value"] - metrics["accuracy"])
    assert top["ci_low"] < top["difference"] < top["ci_high"] < 0 and top["significant"] is True
    assert 150 < top["n"] < 250 and top["bootstrap_rounds_used"] == 100
    assert all(w["difference"] < 0 for w in worst)
    examples = analysis["error_analysis"]["worst_examples"]
    assert len(examples) == 4
    assert [x["loss"] for x in examples] == sorted((x["loss"] for x in examples), reverse=True)
    assert all(set(x["features"]) == {"x", "group"} for x in examples)  # no id, no target column
    assert all(x["target"] != x["prediction"] for x in examples)


def test_worst_examples_for_regression_are_the_largest_errors() -> None:
    contract = Contract(target="y", task="regression", columns=[
        ColumnContract(name="x", type="float"), ColumnContract(name="y", type="float", role="target")])
    test = pl.DataFrame({"x": [1.0, 2.0, float("nan")], "y": [1.0, 5.0, 0.0]})
    loss = np.abs(np.array([1.0, 5.0, 0.0]) - np.array([1.5, 1.0, 2.0]))
    examples = worst_examples(test, contract, loss, np.array([1.0, 5.0, 0.0]), np.array([1.5, 1.0, 2.0]), top=2)
    assert [x["row"] for x in examples] == [1, 2]
    assert examples[1]["features"] == {"x": None}  # NaN is shown as missing (JSON has no NaN)
    assert examples[0]["target"] == 5.0 and examples[0]["prediction"] == 1.0


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_the_whole_analysis_for_every_task(synthetic, task: str) -> None:
    import json

    frame, contract = synthetic(task, n=500, seed=6)
    contract = contract.model_copy(update={"columns": [
        c.model_copy(update={"sensitive": c.name in ("k", "fraction")}) for c in contract.columns]})
    X, y = to_xy(frame.head(250), contract)
    model = make_pipeline_for(contract, "random_forest", {"n_estimators": 10}, seed=0).fit(X, y)
    metrics, analysis, _ = evaluate_all(model, frame.tail(250), contract,
                                        EvaluateSpec(bootstrap_rounds=20, min_slice_rows=30))
    assert analysis is not None
    json.dumps([metrics, analysis], allow_nan=False)  # stored as JSON: plain values, no NaN
    assert set(metrics["intervals"]) == set(METRICS[task])
    assert ("curves" in metrics) == (task == "binary")
    assert [c["column"] for c in analysis["fairness"]["columns"]] == ["fraction", "k"]
    assert all(v is not None for c in analysis["fairness"]["columns"] for v in c["differences"].values())
    primary = analysis["slices"]["metric"]
    assert {r["column"] for r in analysis["slices"]["rows"]} == {"x", "count", "fraction", "flag", "k", "note"}
    for worst in analysis["error_analysis"]["worst_slices"]:
        assert worst["metric"] == primary and worst["ci_low"] <= worst["ci_high"]
    assert len(analysis["error_analysis"]["worst_examples"]) == 10
