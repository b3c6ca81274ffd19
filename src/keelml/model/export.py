"""The serving fast path: an ONNX graph that reproduces the scikit-learn model, or the reason there is none.

`export_fast_path` converts a fitted keelml pipeline to ONNX and keeps the graph only when
onnxruntime reproduces scikit-learn's predictions on the held-out rows within `TOLERANCE`.
The engine description it returns (JSON) says which engine serving uses and why, and how a
request's values become the graph's input, so a server can run the graph without scikit-learn.

Two graph layouts:
- ``matrix`` (histogram gradient boosting with native categoricals): one float64 input in the
  estimator's own feature order; categorical values are mapped to the estimator's internal codes
  by a lookup table in the description (missing and unknown values -> NaN).
- ``columns`` (the one-hot families, converted by skl2onnx): one [N, 1] input per feature, float64
  for numerics and strings for categoricals, with ``""`` as the categorical missing marker
  (skl2onnx refuses a NaN marker for string imputers).

The pipeline graph imports this module (`onnx_available`), so a fully cached run does too: scikit-learn
(and keelml.model.features), pandas, skl2onnx and onnxruntime are imported inside the functions that
export or run a graph.
"""

from __future__ import annotations

import copy
import importlib.util
from typing import TYPE_CHECKING, Any

import numpy as np

from keelml.model.onnx_hgb import hgb_to_onnx

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from keelml.data.contract import Contract

TOLERANCE = 1e-5
CATEGORICAL_MISSING = ""  # the ONNX string input's missing marker (layout "columns")


def onnx_available() -> bool:
    """True when the `onnx` extra (skl2onnx, onnxruntime) is installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime", "skl2onnx"))


def _sklearn_output(model: Pipeline, X: pd.DataFrame, task: str) -> np.ndarray:
    if task == "regression":
        return np.asarray(model.predict(X), dtype=np.float64)
    return np.asarray(model.predict_proba(X), dtype=np.float64)


def _matrix_layout(model: Pipeline) -> tuple[bytes, list[dict[str, Any]]]:
    """HistGradientBoosting after keelml's native preprocessor: graph + input description."""
    features = model.named_steps["features"]
    columns = features.named_steps["columns"]
    estimator = model.named_steps["model"]
    # what keelml's ColumnTransformer outputs, column by column: (name, value -> code or None)
    stage1: list[tuple[str, dict[str, float] | None]] = []
    for name, transformer, cols in columns.transformers_:
        if name == "remainder" or transformer == "drop":
            continue
        if not hasattr(transformer, "categories_"):  # numerics pass through
            stage1.extend((col, None) for col in cols)
            continue
        cats = [[str(c) for c in domain if isinstance(c, str)] for domain in transformer.categories_]
        longest = max(map(len, cats), default=0)
        # one transform of every known value (infrequent-category grouping included)
        codes = transformer.transform(_frame({col: cats[i] + [None] * (longest - len(cats[i]))
                                              for i, col in enumerate(cols)}))
        for i, col in enumerate(cols):
            stage1.append((col, {cat: float(code) for cat, code in zip(cats[i], codes[: len(cats[i]), i], strict=True)
                                 if not np.isnan(code)}))
    internal = estimator._preprocessor
    if internal is None:
        order = list(range(len(stage1)))
        remap: dict[int, dict[float, float]] = {}
    else:  # the estimator re-encodes its categorical columns and puts them first
        cat_idx = [int(i) for i in np.flatnonzero(estimator.is_categorical_)]
        num_idx = [i for i in range(len(stage1)) if i not in cat_idx]
        order = cat_idx + num_idx
        encoder = internal.named_transformers_["encoder"]
        remap = {j: {float(v): float(k) for k, v in enumerate(cats) if not np.isnan(v)}
                 for j, cats in zip(cat_idx, encoder.categories_, strict=True)}
    inputs: list[dict[str, Any]] = []
    for j in order:
        col, table = stage1[j]
        if table is None:
            inputs.append({"name": col, "kind": "numeric"})
            continue
        final = remap.get(j)
        codes = {cat: (final[code] if final is not None else code) for cat, code in table.items()
                 if final is None or code in final}
        inputs.append({"name": col, "kind": "categorical", "codes": codes})
    return hgb_to_onnx(estimator, len(order)), inputs


def _frame(data: dict[str, list[Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in data.items()})


def _columns_layout(model: Pipeline) -> tuple[bytes, list[dict[str, Any]]]:
    """The one-hot families through skl2onnx; categorical imputers take "" as the missing marker."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.pipeline import Pipeline as SkPipeline

    features = model.named_steps["features"]
    coercer = features.named_steps["coerce"]
    columns = features.named_steps["columns"]
    estimator = model.named_steps["model"]
    for name, transformer, _cols in columns.transformers_:
        if name in ("categorical", "free_categorical") and hasattr(transformer, "named_steps"):
            imputer = transformer.named_steps.get("impute")
            if imputer is not None:
                imputer.missing_values = CATEGORICAL_MISSING  # same statistics, string marker
    numeric, categorical = list(coercer.numeric), list(coercer.categorical)
    initial = ([(f"n{i}", FloatTensorType([None, 1])) for i in range(len(numeric))]
               + [(f"c{i}", StringTensorType([None, 1])) for i in range(len(categorical))])
    renamed = columns
    renamed.transformers = [(n, t, [f"n{numeric.index(c)}" if c in numeric else f"c{categorical.index(c)}"
                                     for c in cols]) for n, t, cols in columns.transformers]
    renamed.transformers_ = [(n, t, [f"n{numeric.index(c)}" if c in numeric else f"c{categorical.index(c)}"
                                      for c in cols]) if n != "remainder" else (n, t, cols)
                             for n, t, cols in columns.transformers_]
    pipe = SkPipeline([("columns", renamed), ("model", estimator)])
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "classes_") else None
    # a fixed graph name: skl2onnx's default is a random uuid, which made the same model's graph (and so
    # its bundle) differ from run to run
    onx = convert_sklearn(pipe, name="keelml_columns", initial_types=initial, options=options,
                          target_opset={"": 17, "ai.onnx.ml": 3})
    inputs = ([{"name": c, "kind": "numeric", "feed": f"n{i}"} for i, c in enumerate(numeric)]
              + [{"name": c, "kind": "categorical", "feed": f"c{i}"} for i, c in enumerate(categorical)])
    data: bytes = onx.SerializeToString()
    return data, inputs


def export_fast_path(model: Pipeline, X: pd.DataFrame, contract: Contract) -> tuple[bytes, dict[str, Any]]:
    """(ONNX bytes or b"", engine description) for the fitted pipeline, checked on the held-out X."""
    task = contract.task
    base: dict[str, Any] = {
        "task": task,
        "output": "value" if task == "regression" else "proba",
        "classes": [str(c) for c in getattr(model, "classes_", [])] or None,
        "rows_checked": len(X),
        "tolerance": TOLERANCE,
    }
    if not onnx_available():
        return b"", {**base, "engine": "sklearn",
                     "reason": "the onnx extra (skl2onnx, onnxruntime) is not installed"}
    if len(X) == 0:
        return b"", {**base, "engine": "sklearn", "reason": "no held-out rows to check an ONNX graph against"}
    from keelml.model.features import FrameCoercer

    native = "columns" in model.named_steps["features"].named_steps and hasattr(
        model.named_steps["model"], "_predictors")
    layout = "matrix" if native else "columns"
    try:
        graph, inputs = (_matrix_layout(model) if native else _columns_layout(copy.deepcopy(model)))
        expected = _sklearn_output(model, X, task)
        got = run_onnx(graph, layout, inputs, FrameCoercer(
            numeric=[i["name"] for i in inputs if i["kind"] == "numeric"],
            categorical=[i["name"] for i in inputs if i["kind"] == "categorical"]).fit(X).transform(X))
    except Exception as exc:  # conversion is best effort: any failure means the sklearn engine
        return b"", {**base, "engine": "sklearn",
                     "reason": f"ONNX conversion failed ({type(exc).__name__}: {str(exc)[:200]})"}
    if task == "regression":
        got = got.reshape(-1)
    if got.shape != expected.shape:
        return b"", {**base, "engine": "sklearn",
                     "reason": f"ONNX output shape {got.shape} differs from scikit-learn's {expected.shape}"}
    diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    import onnxruntime

    info = {**base, "layout": layout, "inputs": inputs, "max_abs_diff": diff,
            "onnxruntime": onnxruntime.__version__}
    if not diff <= TOLERANCE:
        return b"", {**info, "engine": "sklearn", "reason":
                     f"ONNX differs from scikit-learn by up to {diff:.3g} on {len(X)} held-out rows "
                     f"(tolerance {TOLERANCE:g})"}
    return graph, {**info, "engine": "onnx", "reason":
                   f"ONNX reproduces scikit-learn within {diff:.3g} (tolerance {TOLERANCE:g}) "
                   f"on {len(X)} held-out rows"}


def run_onnx(graph: bytes, layout: str, inputs: list[dict[str, Any]], frame: pd.DataFrame) -> np.ndarray:
    """Run the graph on a frame of coerced feature columns (numerics float, categoricals str or NaN)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    feeds = encode_frame(layout, inputs, frame)
    out = session.run(None, feeds)
    return np.asarray(out[-1] if layout == "columns" else out[0], dtype=np.float64)


def encode_frame(layout: str, inputs: list[dict[str, Any]], frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The graph's feeds for a frame of coerced features."""
    import pandas as pd

    n = len(frame)
    if layout == "matrix":
        matrix = np.empty((n, len(inputs)), dtype=np.float64)
        for j, spec in enumerate(inputs):
            column = frame[spec["name"]]
            if spec["kind"] == "numeric":
                matrix[:, j] = column.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                matrix[:, j] = pd.Series(column, dtype=object).map(spec["codes"]).to_numpy(
                    dtype=np.float64, na_value=np.nan)
        return {"X": matrix}
    feeds: dict[str, np.ndarray] = {}
    for spec in inputs:
        column = frame[spec["name"]]
        if spec["kind"] == "numeric":
            feeds[spec["feed"]] = column.to_numpy(dtype=np.float32, na_value=np.nan).reshape(-1, 1)
        else:
            values = column.to_numpy(dtype=object)
            feeds[spec["feed"]] = np.asarray(
                [CATEGORICAL_MISSING if v is None or v != v else str(v) for v in values], dtype=object).reshape(-1, 1)
    return feeds
