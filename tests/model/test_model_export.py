"""The ONNX fast path: exported graphs reproduce scikit-learn, or the engine falls back with the reason."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from tests.model.conftest import Synthetic

from keelml.model.catalog import make_pipeline_for
from keelml.model.export import TOLERANCE, export_fast_path
from keelml.model.features import to_labelled_xy
from keelml.model.persist import dump_model
from keelml.serve.engine import build_model


def _served(model: object, contract: object, graph: bytes, info: dict[str, object], prefer_onnx: bool = True):
    parts = {"contract": json.dumps(contract.model_dump(mode="json")).encode(),  # type: ignore[attr-defined]
             "engine": json.dumps(info).encode(), "onnx": graph, "model": dump_model(model)}
    blobs = {hashlib.sha256(v).hexdigest(): v for v in parts.values()}
    components = {k: hashlib.sha256(v).hexdigest() for k, v in parts.items()}
    return build_model(name="m", version=1, bundle_id="b", components=components, get=blobs.__getitem__,
                       prefer_onnx=prefer_onnx)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("family", ["hist_gradient_boosting", "logistic_regression"])
def test_onnx_reproduces_sklearn_and_rows_with_nulls_match(synthetic: Synthetic, task: str, family: str) -> None:
    frame, contract = synthetic(task, n=200)
    X, y = to_labelled_xy(frame, contract, what="training")
    model = make_pipeline_for(contract, family, {"max_iter": 15} if family == "hist_gradient_boosting" else {},
                              0).fit(X, y)
    graph, info = export_fast_path(model, X, contract)
    assert info["engine"] == "onnx", info["reason"]
    assert info["layout"] == ("matrix" if family == "hist_gradient_boosting" else "columns")
    assert info["max_abs_diff"] <= TOLERANCE and "reproduces scikit-learn" in info["reason"]
    served = _served(model, contract, graph, info)
    assert served.engine == "onnx"
    # request rows as the server builds them: Python values in contract order, None for missing
    rows = [tuple(None if v is None else v for v in r) for r in frame.select(served.columns).rows()]
    assert any(v is None for r in rows for v in r)
    got = served.predictor.rows(rows)
    expected = model.predict(X) if task == "regression" else model.predict_proba(X)
    assert np.max(np.abs(got - expected)) <= TOLERANCE
    assert np.max(np.abs(served.predictor.frame(frame) - expected)) <= TOLERANCE
    fallback = _served(model, contract, graph, info, prefer_onnx=False)
    assert fallback.engine == "sklearn"
    assert np.max(np.abs(fallback.predictor.rows(rows) - expected)) <= 1e-12


def test_a_graph_that_does_not_reproduce_sklearn_is_not_used(synthetic: Synthetic) -> None:
    frame, contract = synthetic("binary", n=300)
    X, y = to_labelled_xy(frame, contract, what="training")
    model = make_pipeline_for(contract, "random_forest", {"n_estimators": 20}, 0).fit(X, y)
    graph, info = export_fast_path(model, X, contract)
    if info["engine"] == "onnx":  # float32 thresholds may happen to agree on this data
        assert info["max_abs_diff"] <= TOLERANCE
    else:
        assert graph == b"" and ("differs from scikit-learn" in info["reason"] or "failed" in info["reason"])
