"""Cross-validation folds: stratified by default, by group or in time order when the spec names a column."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from keelml.data.contract import ColumnContract
from keelml.errors import DataError, SpecError
from keelml.model.folds import make_folds
from keelml.model.train import train_model
from keelml.spec.model import LearningCurveSpec, ModelSpec


def test_default_folds_are_stratified_and_seeded(synthetic) -> None:
    frame, contract = synthetic("binary", n=120)
    first = make_folds(frame, contract, ModelSpec(cv_folds=4, seed=1))
    again = make_folds(frame, contract, ModelSpec(cv_folds=4, seed=1))
    assert first.kind == "stratified" and len(first.splits) == 4
    for (a_fit, a_val), (b_fit, b_val) in zip(first.splits, again.splits, strict=True):
        np.testing.assert_array_equal(a_val, b_val)
        np.testing.assert_array_equal(a_fit, b_fit)
    share = np.mean(first.y == "yes")
    for _, val in first.splits:
        assert abs(np.mean(first.y[val] == "yes") - share) < 0.1
    assert make_folds(*synthetic("regression", n=60), ModelSpec(cv_folds=3)).kind == "kfold"


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_group_column_keeps_each_group_in_one_fold(synthetic, task: str) -> None:
    frame, contract = synthetic(task, n=200)
    frame = frame.with_columns(user=(pl.col("row_id") % 10).cast(pl.String))
    folds = make_folds(frame, contract, ModelSpec(cv_folds=5, group_column="user"))
    assert folds.kind == ("group" if task == "regression" else "stratified_group")
    assert folds.column == "user" and len(folds.splits) == 5
    users = frame.get_column("user").to_numpy()
    seen: set[str] = set()
    for fit, val in folds.splits:
        assert not set(users[fit]) & set(users[val])  # no user on both sides
        seen |= set(users[val])
    assert seen == set(users)


def test_time_column_validates_on_later_rows(synthetic) -> None:
    frame, contract = synthetic("regression", n=120)
    rng = np.random.default_rng(0)
    frame = frame.with_columns(day=pl.Series(rng.permutation(120)))  # rows arrive shuffled
    contract = contract.model_copy(update={"columns": [*contract.columns,
                                                       ColumnContract(name="day", type="integer", role="id")]})
    folds = make_folds(frame, contract, ModelSpec(cv_folds=4, time_column="day"))
    assert folds.kind == "time" and len(folds.splits) == 4
    days = frame.sort("day").get_column("day").to_numpy()
    for fit, val in folds.splits:
        assert days[fit].max() < days[val].min()  # always train on the past
    _, report = train_model(frame, contract, ModelSpec(family="linear", cv_folds=3, time_column="day",
                                                       learning_curve=LearningCurveSpec(sizes=[0.5, 1.0])))
    assert report["splitter"]["kind"] == "time" and report["splitter"]["column"] == "day"


def test_split_column_errors(synthetic) -> None:
    frame, contract = synthetic("binary", n=60)
    with pytest.raises(SpecError, match="model.group_column 'usr' is not a column") as info:
        make_folds(frame, contract, ModelSpec(group_column="usr"))
    assert "row_id" in (info.value.expected or "")
    with pytest.raises(DataError, match="only 1 group"):
        make_folds(frame.with_columns(user=pl.lit("a")), contract, ModelSpec(group_column="user"))
    with pytest.raises(DataError, match="missing values"):
        make_folds(frame.with_columns(day=pl.lit(None, dtype=pl.Int64)), contract, ModelSpec(time_column="day"))


@pytest.mark.parametrize("family", ["hist_gradient_boosting", "linear"])
def test_fold_models_skip_the_coercer_and_predict_the_same(synthetic, family: str) -> None:
    from keelml.model.catalog import make_pipeline_for
    from keelml.model.features import to_xy
    from keelml.model.folds import for_folds

    frame, contract = synthetic("binary", n=200)
    folds = make_folds(frame, contract, ModelSpec(cv_folds=3))
    full = make_pipeline_for(contract, family, {}, seed=0)
    fast = for_folds(full)
    assert fast.named_steps["features"].named_steps["coerce"] == "passthrough"
    assert full.named_steps["features"].named_steps["coerce"] != "passthrough"  # the kept model is intact
    raw, _ = to_xy(frame, contract)
    fit, val = folds.splits[0]
    full.fit(raw.iloc[fit], folds.y[fit])
    fast.fit(folds.X.iloc[fit], folds.y[fit])
    np.testing.assert_array_equal(full.predict_proba(raw.iloc[val]), fast.predict_proba(folds.X.iloc[val]))


def test_fixed_domain_codes_computed_once_give_the_same_training_report(adult, monkeypatch) -> None:
    """Folds whose categorical columns are encoded once: the same fold scores, curves and model."""
    import json

    from keelml.model import train as training
    from keelml.model.catalog import make_pipeline_for
    from keelml.model.folds import encode_for_folds, for_folds

    frame, contract = adult  # the contract's categories come from the first 5000 rows: later rows hold unknowns
    frame = frame.tail(1500)
    spec = ModelSpec(cv_folds=2, learning_curve=LearningCurveSpec(sizes=[0.5, 1.0]))
    fast_pipeline, encoded = encode_for_folds(
        make_pipeline_for(contract, spec.family, {}, seed=0),
        make_folds(frame, contract, spec))
    columns = fast_pipeline.named_steps["features"].named_steps["columns"]
    assert dict((n, t) for n, t, _ in columns.transformers)["categorical"] == "passthrough"
    assert encoded.X["workclass"].dtype == np.float64 and encoded.X["workclass"].isna().any()
    model, report = train_model(frame, contract, spec)
    monkeypatch.setattr(training, "encode_for_folds", lambda pipeline, folds: (for_folds(pipeline), folds))
    plain_model, plain = train_model(frame, contract, spec)

    def same(r: dict) -> str:
        return json.dumps({k: v for k, v in r.items() if "seconds" not in k}, sort_keys=True, default=str)

    assert same(report) == same(plain)
    X = frame.to_pandas()
    np.testing.assert_array_equal(model.predict_proba(X), plain_model.predict_proba(X))
