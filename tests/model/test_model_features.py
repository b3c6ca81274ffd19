"""FrameCoercer, to_xy and the preprocessing stage: defaults, strategies, leak-freedom, user functions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from keelml.errors import DataError, IntegrityError, SpecError
from keelml.model.catalog import make_pipeline_for
from keelml.model.features import FrameCoercer, to_xy
from keelml.model.functions import sources_digest
from keelml.model.persist import dump_model, load_model
from keelml.model.preprocess import build_preprocessor, preprocessor_for, resolve_preprocessing
from keelml.model.train import train_model
from keelml.model.trust import TrustPolicy
from keelml.pipeline.steps import data, training
from keelml.spec.model import ImputeSpec, ModelSpec, PreprocessSpec
from keelml.spec.pipeline import parse_spec

SPEC_HEAD = "name: t\ndata:\n  target: target\n  train:\n    path: t.csv\n"


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


# --- preprocess: defaults reproduce the pipeline built before `preprocess:` existed -------------

def _structure(obj: Any) -> Any:
    """Transformer kinds, names, columns and parameters, recursively (comparable with ==)."""
    if isinstance(obj, Pipeline):
        return ("Pipeline", [(name, _structure(step)) for name, step in obj.steps])
    if isinstance(obj, ColumnTransformer):
        return ("ColumnTransformer", obj.remainder,
                [(name, _structure(t), list(cols)) for name, t, cols in obj.transformers])
    if isinstance(obj, str):
        return obj
    return (type(obj).__name__, {k: repr(v) for k, v in sorted(obj.get_params(deep=False).items())})


def _previous_pipeline(contract, native: bool, scale: bool = True) -> Pipeline:
    """The preprocessing as keelml built it before preprocess: existed (a literal copy)."""
    from keelml.model.features import domain, split_features

    numeric, known, free = split_features(contract)
    domains = [domain(contract.column(n)) for n in known]
    if native:
        codes = {"handle_unknown": "use_encoded_value", "unknown_value": np.nan, "encoded_missing_value": np.nan}
        transformers = [("numeric", "passthrough", numeric),
                        ("categorical", OrdinalEncoder(categories=domains, **codes), known),
                        ("free_categorical", OrdinalEncoder(max_categories=50, **codes), free)]
    else:
        scaler = [("scale", StandardScaler())] if scale else []
        transformers = [
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                                  *scaler]), numeric),
            ("categorical", Pipeline([
                ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
                ("onehot", OneHotEncoder(categories=domains, handle_unknown="ignore", sparse_output=False))]), known),
            ("free_categorical", Pipeline([
                ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
                ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", sparse_output=False,
                                         max_categories=50))]), free),
        ]
    return Pipeline([("coerce", FrameCoercer(numeric=numeric, categorical=[*known, *free])),
                     ("columns", ColumnTransformer(transformers, remainder="drop"))])


@pytest.mark.parametrize("family", ["hist_gradient_boosting", "logistic_regression", "random_forest"])
def test_default_preprocessing_is_the_previous_pipeline(synthetic, family: str) -> None:
    _, contract = synthetic("binary")
    expected = _previous_pipeline(contract, native=family == "hist_gradient_boosting")
    empty_section = parse_spec(SPEC_HEAD + "preprocess:\n").preprocess
    for spec in (None, PreprocessSpec(), parse_spec(SPEC_HEAD).preprocess, empty_section):
        model = make_pipeline_for(contract, family, {}, seed=0, preprocess=spec)
        assert _structure(model.named_steps["features"]) == _structure(expected)
    model = make_pipeline_for(contract, family, {}, seed=0)
    mask = model.named_steps["model"].get_params().get("categorical_features")
    if family == "hist_gradient_boosting":  # x, count, fraction numeric; flag, k, note categorical
        assert mask == [False] * 3 + [True] * 3


def test_boosting_with_its_own_categorical_features_gets_one_hot_as_before(synthetic) -> None:
    _, contract = synthetic("binary")
    model = make_pipeline_for(contract, "hist_gradient_boosting", {"categorical_features": None}, seed=0)
    expected = _previous_pipeline(contract, native=False)
    assert _structure(model.named_steps["features"]) == _structure(expected)
    assert model.named_steps["model"].categorical_features is None


def test_scaling_a_random_forest_is_optional(synthetic) -> None:
    frame, contract = synthetic("binary")
    X, y = to_xy(frame, contract)
    unscaled = make_pipeline_for(contract, "random_forest", {"n_estimators": 15}, seed=0,
                                 preprocess=PreprocessSpec(scaling="none"))
    assert _structure(unscaled.named_steps["features"]) == _structure(_previous_pipeline(contract, False, scale=False))
    assert np.isfinite(unscaled.fit(X, y).predict_proba(X)).all()


# --- preprocess: nothing of the held-out rows reaches the fitted preprocessing ---------------

def _wild(test: pl.DataFrame) -> pl.DataFrame:
    """The same rows and targets with wildly different feature values and unseen categories."""
    return test.with_columns(
        x=pl.col("x") * 1000 + 5000, count=pl.col("count") * 97 + 10_000, fraction=pl.lit(None, pl.Float64),
        k=pl.lit("zzz"), note=pl.lit("never-seen"), flag=pl.lit(True),
    )


def _fit_through_the_steps(frame: pl.DataFrame, contract) -> Any:
    split = data.split(params={"target": "target", "test_size": 0.3, "stratify": True, "seed": 7}, train=frame)
    params = {**ModelSpec(family="logistic_regression", cv_folds=3).model_dump(
        mode="json", exclude={"n_jobs", "threads"}), "preprocess": PreprocessSpec().model_dump(mode="json")}
    trained = training.train(params=params, resources={"n_jobs": 1, "threads": 1}, train=split["train"],
                          contract=contract.model_dump(mode="json"))
    return split, trained["model"]


def test_held_out_rows_leave_no_trace_in_the_fitted_preprocessing(synthetic) -> None:
    frame, contract = synthetic("binary", n=200)
    (split, model) = _fit_through_the_steps(frame, contract)
    train, test = split["train"], split["test"]
    wild_test = _wild(test)
    changed = pl.concat([train, wild_test]).sort("row_id")  # same rows, the held-out ones made wild
    (split2, model2) = _fit_through_the_steps(changed, contract)
    assert split2["train"].equals(train) and split2["test"].equals(wild_test)

    # the fitted statistics are those of the training rows alone
    X_train, _ = to_xy(train, contract)
    columns = model.named_steps["features"].named_steps["columns"].named_transformers_
    numeric = X_train[["x", "count", "fraction"]].astype(float)
    np.testing.assert_allclose(columns["numeric"].named_steps["impute"].statistics_, numeric.median())
    imputed = numeric.fillna(numeric.median())
    np.testing.assert_allclose(columns["numeric"].named_steps["scale"].mean_, imputed.mean())
    np.testing.assert_allclose(columns["numeric"].named_steps["scale"].scale_, imputed.std(ddof=0))
    assert columns["free_categorical"].named_steps["onehot"].categories_[0].tolist() == sorted(set(X_train["note"]))
    k_mode = columns["categorical"].named_steps["impute"].statistics_[1]
    assert k_mode == X_train["k"].mode().iloc[0]

    # ...so making the held-out rows wild changes nothing: same bytes, same predictions
    assert dump_model(model) == dump_model(model2)
    probe, _ = to_xy(pl.concat([test, wild_test]), contract)
    np.testing.assert_array_equal(model.predict_proba(probe), model2.predict_proba(probe))
    # the probe does tell models apart: fitting on every row (a leak) would have changed it
    X_all, y_all = to_xy(changed, contract)
    leaky = make_pipeline_for(contract, "logistic_regression", {}, seed=42).fit(X_all, y_all)
    assert not np.allclose(leaky.predict_proba(probe), model.predict_proba(probe))


def test_cross_validation_fits_the_preprocessing_in_every_fold(synthetic) -> None:
    from sklearn.model_selection import StratifiedKFold, cross_validate

    frame, contract = synthetic("binary", n=200)
    X, y = to_xy(frame, contract)
    pipeline = make_pipeline_for(contract, "logistic_regression", {}, seed=0)
    cv = cross_validate(pipeline, X, y, cv=StratifiedKFold(3, shuffle=True, random_state=0),
                        return_estimator=True, return_indices=True)
    full = make_pipeline_for(contract, "logistic_regression", {}, seed=0).fit(X, y)

    def stats(model: Pipeline) -> tuple[np.ndarray, np.ndarray]:
        numeric = model.named_steps["features"].named_steps["columns"].named_transformers_["numeric"]
        return numeric.named_steps["impute"].statistics_, numeric.named_steps["scale"].mean_

    _, full_mean = stats(full)
    for fold, train_idx in zip(cv["estimator"], cv["indices"]["train"], strict=True):
        median, mean = stats(fold)
        part = X.iloc[train_idx][["x", "count", "fraction"]].astype(float)
        np.testing.assert_allclose(median, part.median())
        np.testing.assert_allclose(mean, part.fillna(part.median()).mean())
        assert not np.allclose(mean, full_mean)
    assert not hasattr(pipeline.named_steps["model"], "coef_")  # CV fitted clones, never the pipeline itself


# --- preprocess: every strategy does what it says -------------------------------------------

def _fit_features(synthetic, spec: PreprocessSpec, family: str = "logistic_regression"):
    frame, contract = synthetic("binary")
    X, _ = to_xy(frame, contract)
    features, mask = preprocessor_for(contract, family, {}, spec)
    features.fit(X)
    return X, features, list(features.get_feature_names_out()), mask


MISSING_ROW = {"x": None, "count": None, "fraction": None, "flag": None, "k": None, "note": None}


@pytest.mark.parametrize(("strategy", "fill"), [("median", 0.0), ("mean", 0.0), ("constant", 7.5)])
def test_numeric_imputation(synthetic, strategy: str, fill: float) -> None:
    spec = PreprocessSpec(scaling="none", impute=ImputeSpec(numeric=strategy, numeric_fill_value=fill))
    X, features, names, _ = _fit_features(synthetic, spec)
    out = features.transform(pd.DataFrame([MISSING_ROW]))
    count = X["count"].astype(float)
    expected = {"median": count.median(), "mean": count.mean(), "constant": 7.5}[strategy]
    assert out[0, names.index("numeric__count")] == pytest.approx(expected)
    assert not np.isnan(out).any()


def test_categorical_imputation_constant_adds_its_own_category(synthetic) -> None:
    spec = PreprocessSpec(impute=ImputeSpec(categorical="constant", categorical_fill_value="(none)"))
    _, features, names, _ = _fit_features(synthetic, spec)
    assert "categorical__k_(none)" in names and "categorical__flag_(none)" in names
    out = features.transform(pd.DataFrame([MISSING_ROW, {**MISSING_ROW, "k": "v", "flag": True}]))
    assert out[0, names.index("categorical__k_(none)")] == 1.0
    assert out[0, [names.index(f"categorical__k_{c}") for c in "uvw"]].sum() == 0.0
    assert out[1, names.index("categorical__k_v")] == 1.0 and out[1, names.index("categorical__flag_true")] == 1.0
    notes = [i for i, n in enumerate(names) if n.startswith("free_categorical__note_")]
    assert out[0, notes].sum() == 0.0  # note was never missing in training: its fill value is unknown


def test_categorical_imputation_most_frequent(synthetic) -> None:
    spec = PreprocessSpec(impute=ImputeSpec(categorical="most_frequent"))
    X, features, names, _ = _fit_features(synthetic, spec)
    out = features.transform(pd.DataFrame([MISSING_ROW]))
    assert out[0, names.index(f"categorical__k_{X['k'].mode().iloc[0]}")] == 1.0


@pytest.mark.parametrize("family", ["logistic_regression", "hist_gradient_boosting"])
def test_missing_indicators_for_nullable_features(synthetic, family: str) -> None:
    frame, contract = synthetic("binary")
    columns = [c.model_copy(update={"nullable": c.name != "x"}) for c in contract.columns]
    contract = contract.model_copy(update={"columns": columns})
    X, y = to_xy(frame, contract)
    spec = PreprocessSpec(impute=ImputeSpec(add_indicator=True))
    model = make_pipeline_for(contract, family, {"max_iter": 10} if family != "logistic_regression" else {}, 0,
                              preprocess=spec).fit(X, y)
    features = model.named_steps["features"]
    names = list(features.get_feature_names_out())
    indicators = [n for n in names if n.startswith("missing__")]
    assert indicators == [f"missing__missingindicator_{c}" for c in ["count", "fraction", "flag", "k", "note"]]
    out = features.transform(X)
    np.testing.assert_array_equal(out[:, names.index("missing__missingindicator_count")], X["count"].isna())
    np.testing.assert_array_equal(out[:, names.index("missing__missingindicator_k")], X["k"].isna())
    if family == "hist_gradient_boosting":
        assert model.named_steps["model"].categorical_features == [False] * 3 + [True] * 3 + [False] * 5
    assert np.isfinite(model.predict_proba(pd.DataFrame([MISSING_ROW]))).all()


@pytest.mark.parametrize("scaling", ["standard", "robust", "minmax", "none"])
def test_scaling(synthetic, scaling: str) -> None:
    X, features, names, _ = _fit_features(synthetic, PreprocessSpec(scaling=scaling))
    out = features.transform(X)
    x_col = out[:, names.index("numeric__x")]
    raw = X["x"].astype(float).to_numpy()  # x has no missing values
    if scaling == "standard":
        assert abs(x_col.mean()) < 1e-9 and x_col.std() == pytest.approx(1.0)
    elif scaling == "robust":
        assert np.median(x_col) == pytest.approx(0.0)
        q1, q3 = np.percentile(raw, [25, 75])
        np.testing.assert_allclose(x_col, (raw - np.median(raw)) / (q3 - q1))
    elif scaling == "minmax":
        assert x_col.min() == 0.0 and x_col.max() == pytest.approx(1.0)
    else:
        np.testing.assert_array_equal(x_col, raw)
        assert "scale" not in features.named_steps["columns"].named_transformers_["numeric"].named_steps


def test_auto_scaling_by_family() -> None:
    assert resolve_preprocessing(None, "logistic_regression").scaling == "standard"
    assert resolve_preprocessing(None, "random_forest").scaling == "standard"
    assert resolve_preprocessing(None, "hist_gradient_boosting").scaling is None
    assert resolve_preprocessing(PreprocessSpec(scaling="robust"), "random_forest").scaling == "robust"


def test_ordinal_encoding_for_a_linear_model(synthetic) -> None:
    _, features, names, mask = _fit_features(synthetic, PreprocessSpec(encoding="ordinal"))
    assert names == ["numeric__x", "numeric__count", "numeric__fraction", "categorical__flag", "categorical__k",
                     "free_categorical__note"]
    assert mask == []  # codes are plain numbers for a linear model
    out = features.transform(pd.DataFrame([{**MISSING_ROW, "k": "w", "note": "unseen", "flag": False}]))
    assert out[0, names.index("categorical__k")] == 2.0 and out[0, names.index("categorical__flag")] == 0.0
    assert out[0, names.index("free_categorical__note")] == -1.0  # unknown


def test_one_hot_for_boosting_turns_native_categories_off(synthetic) -> None:
    frame, contract = synthetic("binary")
    X, y = to_xy(frame, contract)
    model = make_pipeline_for(contract, "hist_gradient_boosting", {"max_iter": 10}, 0,
                              preprocess=PreprocessSpec(encoding="onehot")).fit(X, y)
    assert model.named_steps["model"].categorical_features == "from_dtype"  # the estimator's default
    names = list(model.named_steps["features"].get_feature_names_out())
    assert "categorical__k_u" in names and "numeric__x" in names
    assert np.isfinite(model.predict_proba(pd.DataFrame([MISSING_ROW]))).all()  # NaN stays NaN for the trees


def test_min_frequency_and_max_categories(synthetic) -> None:
    frame, contract = synthetic("binary", n=300)
    rare = frame.with_columns(note=pl.when(pl.col("row_id") < 3).then(pl.lit("rare")).otherwise(pl.col("note")))
    X, _ = to_xy(rare, contract)
    features, _ = preprocessor_for(contract, "logistic_regression", {}, PreprocessSpec(min_frequency=5))
    names = list(features.fit(X).get_feature_names_out())
    assert "free_categorical__note_rare" not in names and "free_categorical__note_infrequent_sklearn" in names
    features, _ = preprocessor_for(contract, "logistic_regression", {}, PreprocessSpec(max_categories=2))
    names = list(features.fit(X).get_feature_names_out())
    assert len([n for n in names if n.startswith("categorical__k_")]) == 2


@pytest.mark.parametrize(("family", "encoding"), [
    ("logistic_regression", "auto"), ("logistic_regression", "ordinal"), ("random_forest", "auto"),
    ("random_forest", "ordinal"), ("hist_gradient_boosting", "auto"), ("hist_gradient_boosting", "onehot"),
])
def test_unknown_categories_at_predict_time_do_not_crash(synthetic, family: str, encoding: str) -> None:
    frame, contract = synthetic("multiclass", n=150)
    X, y = to_xy(frame, contract)
    params = {"logistic_regression": {}, "random_forest": {"n_estimators": 5},
              "hist_gradient_boosting": {"max_iter": 5}}[family]
    model = make_pipeline_for(contract, family, params, 0, preprocess=PreprocessSpec(encoding=encoding)).fit(X, y)
    odd = pd.DataFrame([{"x": 0.1, "count": 3, "fraction": 0.2, "flag": "maybe", "k": "zzz", "note": "new"},
                        MISSING_ROW])
    proba = model.predict_proba(odd)
    assert proba.shape == (2, 3) and np.isfinite(proba).all()


def test_preprocess_spec_rejects_bad_values() -> None:
    with pytest.raises(SpecError, match=r"preprocess\.scaling"):
        parse_spec(SPEC_HEAD + "preprocess:\n  scaling: zscore\n")
    with pytest.raises(SpecError, match="did you mean 'numeric'"):
        parse_spec(SPEC_HEAD + "preprocess:\n  impute:\n    numerc: mean\n")
    with pytest.raises(SpecError, match="min_frequency"):
        parse_spec(SPEC_HEAD + "preprocess:\n  min_frequency: 1.5\n")
    with pytest.raises(SpecError, match="package.module:function"):
        parse_spec(SPEC_HEAD + "preprocess:\n  functions: [not a reference]\n")
    spec = parse_spec(SPEC_HEAD + "preprocess:\n  min_frequency: 0.05\n  max_categories: 20\n"
                      "  impute: {numeric: constant, numeric_fill_value: -1, add_indicator: true}\n")
    assert spec.preprocess.min_frequency == 0.05 and spec.preprocess.impute.numeric_fill_value == -1.0


# --- preprocess: user functions --------------------------------------------------------------

FX = "tests.model.frame_functions"


def test_declared_function_trains_saves_loads_and_predicts(synthetic) -> None:
    frame, contract = synthetic("binary")
    spec = PreprocessSpec(functions=[f"{FX}:clip_x"])
    model, report = train_model(frame, contract, ModelSpec(family="logistic_regression", cv_folds=3), spec)
    assert report["preprocess"]["functions"] == [f"{FX}:clip_x"]
    data = dump_model(model)
    loaded = load_model(data, TrustPolicy(functions=(f"{FX}:clip_x",)))
    X, _ = to_xy(frame, contract)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    # the function runs at predict time: x beyond 1 is clipped to 1
    row = {"x": 1.0, "count": 3, "fraction": 0.5, "flag": True, "k": "u", "note": "beta"}
    far = pd.DataFrame([row, {**row, "x": 250.0}])
    proba = loaded.predict_proba(far)
    np.testing.assert_array_equal(proba[0], proba[1])
    assert loaded.predict_proba(pl.from_pandas(far)).tolist() == proba.tolist()  # polars in, pandas to the function


def test_undeclared_function_is_refused_at_load(synthetic) -> None:
    frame, contract = synthetic("binary", n=80)
    X, y = to_xy(frame, contract)
    model = make_pipeline_for(contract, "logistic_regression", {}, 0,
                              preprocess=PreprocessSpec(functions=[f"{FX}:clip_x"])).fit(X, y)
    data = dump_model(model)
    for declared in ([], [f"{FX}:count_rows"]):
        with pytest.raises(IntegrityError) as info:
            load_model(data, TrustPolicy(functions=tuple(declared)))
        message = str(info.value)
        assert f"{FX}.clip_x" in message and "not declared in preprocess.functions" in message
        assert "add it to preprocess.functions" in message and f"'{FX}:clip_x'" in message
    with pytest.raises(IntegrityError, match="clip_x"):
        load_model(data)


@pytest.mark.parametrize(("ref", "pattern"), [
    ("no_such_package.features:clean", r"cannot import module 'no_such_package\.features'"),
    (f"{FX}:clip_xx", r"has no function 'clip_xx'.*\n.*\n.*did you mean tests\.model\.frame_functions:clip_x"),
    (f"{FX}:Reexported", "not a function"),
    (f"{FX}:isna", "declare it as 'pandas:isna'"),
    (f"{FX}:not_a_def", "define not_a_def with `def`"),
    (f"{FX}.clip_x", "not a function reference"),
])
def test_bad_function_reference_is_a_spec_error(synthetic, ref: str, pattern: str) -> None:
    _, contract = synthetic("binary", n=40)
    with pytest.raises(SpecError, match=pattern) as info:
        make_pipeline_for(contract, "logistic_regression", {}, 0, preprocess=PreprocessSpec.model_construct(
            functions=[ref], impute=ImputeSpec(), scaling="auto", encoding="auto", min_frequency=None,
            max_categories=None))
    assert info.value.fix


def test_import_error_names_the_module_and_the_fix(synthetic) -> None:
    _, contract = synthetic("binary", n=40)
    with pytest.raises(SpecError) as info:
        make_pipeline_for(contract, "logistic_regression", {}, 0,
                          preprocess=PreprocessSpec(functions=["acme_features.cleaning:fix_units"]))
    assert "acme_features.cleaning" in info.value.what
    assert "pip install -e ." in (info.value.fix or "") and "PYTHONPATH" in (info.value.fix or "")


@pytest.mark.parametrize(("name", "pattern"), [
    ("returns_list", "returned a list, not a pandas DataFrame"),
    ("adds_column", "added column.*'ratio'"),
    ("drops_rows", r"returned 1 row\(s\) for"),
    ("fails", "failed: KeyError"),
])
def test_misbehaving_function_is_a_data_error(synthetic, name: str, pattern: str) -> None:
    frame, contract = synthetic("binary", n=60)
    with pytest.raises(DataError, match=pattern):
        train_model(frame, contract, ModelSpec(family="logistic_regression", cv_folds=2),
                    PreprocessSpec(functions=[f"{FX}:{name}"]))


def test_function_runs_inside_every_fold_on_training_rows_only(synthetic) -> None:
    from tests.model import frame_functions

    frame, contract = synthetic("binary", n=90)
    frame_functions.CALLS.clear()
    train_model(frame, contract, ModelSpec(family="logistic_regression", cv_folds=3),
                PreprocessSpec(functions=[f"{FX}:count_rows"]), monitor=False)  # no learning-curve subsets
    # per fold: fit on 60 rows, then transform of the 60 training rows (train score) and 30 test rows
    assert sorted(set(frame_functions.CALLS)) == [30, 60, 90] and frame_functions.CALLS.count(90) >= 1


def test_spec_sources_digest_follows_the_function_source() -> None:
    first = sources_digest([f"{FX}:clip_x"])
    assert first == sources_digest([f"{FX}:clip_x"]) != sources_digest([f"{FX}:count_rows"])
    assert sources_digest(["no_such_package.x:f"]) != sources_digest(["no_such_package.y:f"])


def test_a_run_trusts_exactly_the_declared_functions(tmp_path, synthetic) -> None:
    from keelml.model.trust import TrustPolicy
    from keelml.pipeline import run
    from keelml.pipeline.services import codecs

    frame, _ = synthetic("binary", n=200)
    frame.write_csv(tmp_path / "data.csv")
    spec = (f"name: fx\ndata:\n  target: target\n  train:\n    path: data.csv\n"
            f"model:\n  family: logistic_regression\n  cv_folds: 2\nevaluate:\n  bootstrap_rounds: 0\n"
            f"preprocess:\n  functions: ['{FX}:clip_x']\n")
    (tmp_path / "pipeline.yaml").write_text(spec)
    first = run(tmp_path / "pipeline.yaml")
    assert first.registration is not None
    # evaluate again with train cached: the model is read back from the store through the codec
    (tmp_path / "pipeline.yaml").write_text(spec.replace("bootstrap_rounds: 0", "bootstrap_rounds: 5"))
    second = run(tmp_path / "pipeline.yaml")
    status = {s.name: s.status for s in second.steps}
    assert status["train"] == "cached" and status["evaluate"] == "ran"
    assert second.metrics is not None and second.metrics["primary"]["bootstrap_rounds_used"] == 5
    from keelml.registry.project import open_project
    from keelml.spec.pipeline import load_spec

    project = open_project(load_spec(tmp_path / "pipeline.yaml"), create=False)
    try:
        model_bytes = project.artifacts.get(next(s for s in first.steps if s.name == "train").outputs["model"])
    finally:
        project.close()
    assert codecs(TrustPolicy(functions=(f"{FX}:clip_x",)))["model"].decode(model_bytes) is not None
    with pytest.raises(IntegrityError, match="clip_x"):
        codecs(TrustPolicy())["model"].decode(model_bytes)


@pytest.mark.parametrize("spec", [
    PreprocessSpec(scaling="robust", encoding="ordinal", min_frequency=3,
                   impute=ImputeSpec(numeric="mean", categorical="constant", add_indicator=True)),
    PreprocessSpec(scaling="minmax", max_categories=2, impute=ImputeSpec(numeric="constant", add_indicator=True)),
])
@pytest.mark.parametrize("family", ["hist_gradient_boosting", "logistic_regression"])
def test_every_strategy_saves_and_loads_with_the_allowlist(synthetic, spec: PreprocessSpec, family: str) -> None:
    import skops.io as sio

    from keelml.model.trust import TRUSTED_TYPES

    frame, contract = synthetic("binary", n=120)
    X, y = to_xy(frame, contract)
    params = {"max_iter": 5} if family == "hist_gradient_boosting" else {}
    model = make_pipeline_for(contract, family, params, 0, preprocess=spec).fit(X, y)
    data = dump_model(model)
    assert set(sio.get_untrusted_types(data=data)) <= set(TRUSTED_TYPES)
    np.testing.assert_array_equal(load_model(data).predict_proba(X), model.predict_proba(X))


def test_an_unimportable_function_stops_a_run_before_anything_is_written(tmp_path) -> None:
    from keelml.pipeline import run

    (tmp_path / "data.csv").write_text("a,target\n1,x\n2,y\n")
    (tmp_path / "pipeline.yaml").write_text(
        SPEC_HEAD.replace("t.csv", "data.csv") + "preprocess:\n  functions: ['acme_features.cleaning:fix_units']\n")
    with pytest.raises(SpecError, match="cannot import module 'acme_features.cleaning'"):
        run(tmp_path / "pipeline.yaml")
    assert not (tmp_path / ".keel").exists()
