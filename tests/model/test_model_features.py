"""FrameCoercer, the contract-driven preprocessor and to_xy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from keelml.errors import DataError
from keelml.model.catalog import make_pipeline_for
from keelml.model.features import FrameCoercer, build_preprocessor, to_xy


def test_coercer_turns_every_missing_marker_into_nan() -> None:
    frame = pd.DataFrame({
        "num": pd.Series([1, None, pd.NA, np.nan, "2.5"], dtype=object),
        "cat": pd.Series(["a", None, pd.NA, np.nan, pd.NaT], dtype=object),
        "flag": pd.Series([True, False, None, np.True_, pd.NA], dtype=object),
        "extra": [0, 0, 0, 0, 0],
    })
    out = FrameCoercer(numeric=["num"], categorical=["cat", "flag"]).fit(frame).transform(frame)
    assert list(out.columns) == ["num", "cat", "flag"]
    assert out["num"].dtype == np.float64
    assert out["cat"].dtype == object and out["flag"].dtype == object
    assert out["num"].iloc[0] == 1.0 and out["num"].iloc[4] == 2.5
    assert np.isnan(out["num"].iloc[1:4].to_numpy()).all()
    assert out["cat"].iloc[0] == "a"
    for value in out["cat"].iloc[1:]:
        assert isinstance(value, float) and np.isnan(value)  # np.nan, not None / pd.NA / NaT
    assert out["flag"].tolist()[:2] == ["true", "false"] and out["flag"].iloc[3] == "true"
    assert all(isinstance(v, float) and np.isnan(v) for v in out["flag"].iloc[[2, 4]])


def test_coercer_accepts_polars_and_stringifies_categories() -> None:
    frame = pl.DataFrame({"n": [1, None], "c": ["x", None], "b": [True, None]})
    out = FrameCoercer(numeric=["n"], categorical=["c", "b"]).fit_transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert out["n"].iloc[0] == 1.0 and np.isnan(out["n"].iloc[1])
    assert out["c"].iloc[0] == "x" and np.isnan(out["c"].iloc[1])
    assert out["b"].iloc[0] == "true" and np.isnan(out["b"].iloc[1])


def test_coercer_names_missing_columns() -> None:
    coercer = FrameCoercer(numeric=["a", "b"], categorical=["c"])
    with pytest.raises(ValueError, match=r"'b'.*'c'|'c'.*'b'") as info:
        coercer.fit(pd.DataFrame({"a": [1.0]}))
    assert "'a'" not in str(info.value).split(";")[0]


def test_coercer_rejects_text_in_numeric_column() -> None:
    with pytest.raises(ValueError, match="'n' must be numeric"):
        FrameCoercer(numeric=["n"], categorical=[]).fit_transform(pd.DataFrame({"n": ["abc"]}))


def test_to_xy_types(synthetic) -> None:
    frame, contract = synthetic("binary")
    X, y = to_xy(frame, contract)
    assert list(X.columns) == ["x", "count", "fraction", "flag", "k", "note"]  # id and target excluded
    assert y is not None and y.dtype.kind == "U" and set(y) == {"no", "yes"}
    X2, y2 = to_xy(frame.drop("target"), contract)
    assert y2 is None and X2.shape == X.shape
    with pytest.raises(DataError, match="'k'"):
        to_xy(frame.drop("k"), contract)
    reg_frame, reg_contract = synthetic("regression")
    _, y_reg = to_xy(reg_frame, reg_contract)
    assert y_reg is not None and y_reg.dtype == np.float64


def test_preprocessor_columns_follow_contract(synthetic) -> None:
    frame, contract = synthetic("binary")
    X, _ = to_xy(frame, contract)
    pre = build_preprocessor(contract).fit(X)
    names = list(pre.get_feature_names_out())
    assert not any("row_id" in n or "target" in n for n in names)
    assert [n for n in names if "flag" in n] == ["categorical__flag_false", "categorical__flag_true"]
    assert [n for n in names if "__k_" in n] == ["categorical__k_u", "categorical__k_v", "categorical__k_w"]
    out = pre.transform(X)
    assert out.shape == (len(X), len(names)) and np.isfinite(out).all()
    # numeric features are standardised on the data the preprocessor was fitted on
    assert abs(out[:, names.index("numeric__x")].mean()) < 1e-9
    # an unseen category and all-missing row are accepted at predict time
    odd = pd.DataFrame([{"x": None, "count": None, "fraction": None, "flag": None,
                         "k": "zzz", "note": "new"}])
    row = pre.transform(odd)
    assert row.shape == (1, len(names)) and np.isfinite(row).all()
    assert row[0, names.index("categorical__k_u")] == 0.0


def test_none_and_nan_give_the_same_prediction(synthetic) -> None:
    frame, contract = synthetic("binary")
    X, y = to_xy(frame, contract)
    model = make_pipeline_for(contract, "logistic_regression", {}, seed=0).fit(X, y)
    base = {"x": 0.3, "count": 4, "fraction": 0.5, "flag": True, "k": "v", "note": "beta"}
    with_none = pd.DataFrame([{**base, "count": None, "k": None, "flag": None}])
    with_nan = pd.DataFrame([{**base, "count": np.nan, "k": np.nan, "flag": np.nan}])
    with_na = pd.DataFrame([{**base, "count": pd.NA, "k": pd.NA, "flag": pd.NA}])
    p_none = model.predict_proba(with_none)
    np.testing.assert_array_equal(p_none, model.predict_proba(with_nan))
    np.testing.assert_array_equal(p_none, model.predict_proba(with_na))
    np.testing.assert_array_equal(p_none, model.predict_proba(pl.from_pandas(with_nan)))
    # missing values are imputed: median for numerics, most frequent for categoricals
    imputers = model.named_steps["features"].named_steps["columns"].named_transformers_
    count_median = imputers["numeric"].named_steps["impute"].statistics_[1]
    flag_mode, k_mode = imputers["categorical"].named_steps["impute"].statistics_
    imputed = pd.DataFrame([{**base, "count": count_median, "k": k_mode, "flag": flag_mode == "true"}])
    np.testing.assert_allclose(p_none, model.predict_proba(imputed))


def test_no_features_is_an_error(synthetic) -> None:
    _, contract = synthetic("binary")
    only_target = contract.model_copy(update={"columns": [contract.column("target")]})
    with pytest.raises(DataError, match="no feature columns"):
        build_preprocessor(only_target)
