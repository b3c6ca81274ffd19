"""Safe persistence: skops round trips, and refusal of pickles and untrusted types."""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from keelml.errors import IntegrityError
from keelml.model.catalog import make_pipeline_for
from keelml.model.features import to_xy
from keelml.model.persist import dump_model, load_model
from keelml.model.trust import TRUSTED_TYPES

FAMILIES = ["hist_gradient_boosting", "logistic_regression", "random_forest"]
SMALL = {"hist_gradient_boosting": {"max_iter": 20}, "logistic_regression": {},
         "random_forest": {"n_estimators": 10}}


class Doubler(TransformerMixin, BaseEstimator):
    """A custom transformer that keelml has not allowlisted."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X * 2


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_gives_identical_predictions(synthetic, family: str, task: str, monkeypatch) -> None:
    frame, contract = synthetic(task, n=150)
    X, y = to_xy(frame, contract)
    model = make_pipeline_for(contract, family, SMALL[family], seed=0).fit(X, y)
    data = dump_model(model)
    assert data[:2] == b"PK" and not data.startswith(b"\x80")
    assert set(sio.get_untrusted_types(data=data)) <= set(TRUSTED_TYPES)

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle must never be used to load a model")

    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    loaded = load_model(data)
    assert type(loaded) is type(model)
    if task == "regression":
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    else:
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
        np.testing.assert_array_equal(loaded.classes_, model.classes_)


def test_raw_pickle_is_refused() -> None:
    payload = pickle.dumps({"model": [1, 2, 3]})
    with pytest.raises(IntegrityError, match="never loads pickles"):
        load_model(payload)


@pytest.mark.parametrize("data", [b"", b"not a model at all", b"\x00" * 64])
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(IntegrityError, match="not a skops model"):
        load_model(data)


def test_zip_without_skops_schema_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.pkl", pickle.dumps(1))
    with pytest.raises(IntegrityError, match="not a skops model"):
        load_model(buffer.getvalue())


def test_custom_class_is_refused_with_its_name() -> None:
    model = Pipeline([("double", Doubler())])
    data = sio.dumps(model)
    with pytest.raises(IntegrityError) as info:
        load_model(data)
    assert f"{Doubler.__module__}.Doubler" in str(info.value)
    assert "never loads pickles" in str(info.value)


def test_function_transformer_is_refused_with_the_function_name() -> None:
    model = Pipeline([("run", FunctionTransformer(os.system))])  # never fitted, never called
    with pytest.raises(IntegrityError, match=r"(posix|os|nt)\.system"):
        load_model(sio.dumps(model))


def test_truncated_model_is_refused(synthetic) -> None:
    frame, contract = synthetic("binary", n=80)
    X, y = to_xy(frame, contract)
    data = dump_model(make_pipeline_for(contract, "logistic_regression", {}, seed=0).fit(X, y))
    with pytest.raises(IntegrityError):
        load_model(data[: len(data) // 2])


def test_partial_over_a_dangerous_function_is_refused() -> None:
    import functools

    model = Pipeline([("step", FunctionTransformer(functools.partial(os.system, "true")))])
    with pytest.raises(IntegrityError, match="os.system|posix.system"):
        load_model(sio.dumps(model))


def test_same_model_gives_the_same_bytes(synthetic, monkeypatch) -> None:
    import time as time_module

    df, contract = synthetic("binary")
    X, y = to_xy(df, contract)
    model = make_pipeline_for(contract, "hist_gradient_boosting", {"max_iter": 5}, 0).fit(X, y)
    first = dump_model(model)
    real_time = time_module.time
    monkeypatch.setattr(time_module, "time", lambda: real_time() + 3600)  # an hour later
    assert dump_model(model) == first
    assert load_model(first).predict(X).tolist() == model.predict(X).tolist()


def test_same_model_in_another_process_gives_the_same_bytes() -> None:
    import subprocess
    import sys

    code = ("import hashlib, sys; sys.path.insert(0, '.');"
            "from tests.model.conftest import make_synthetic;"
            "from keelml.model.catalog import make_pipeline_for;"
            "from keelml.model.features import to_xy;"
            "from keelml.model.persist import dump_model;"
            "df, c = make_synthetic('multiclass'); X, y = to_xy(df, c);"
            "m = make_pipeline_for(c, 'hist_gradient_boosting', {'max_iter': 5}, 0).fit(X, y);"
            "print(hashlib.sha256(dump_model(m)).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
               for _ in range(2)}
    assert len(digests) == 1
