"""Prediction engines: onnxruntime (the fast path) or the scikit-learn pipeline, behind one interface.

A `ServedModel` is built from a verified bundle's components. Rows arrive as tuples of values in
the contract's feature order, already validated (JSON null is None); each engine turns them into
its own input with the same missing marker training used: NaN for numerics and, for categoricals,
NaN codes (ONNX matrix layout), the "" marker (ONNX columns layout) or NaN via the pipeline's own
FrameCoercer (scikit-learn). Batch scoring passes polars frames instead of tuples.
"""

from __future__ import annotations

import abc
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from keelml.data.contract import Contract
from keelml.errors import IntegrityError
from keelml.model.persist import load_model  # light: skops and scikit-learn load only with a model
from keelml.model.trust import DEFAULT_POLICY, TrustPolicy

NAN = math.nan
CATEGORICAL_MISSING = ""  # keelml.model.export.CATEGORICAL_MISSING (not imported: keeps serving light)


class Predictor(abc.ABC):
    """Turns rows or frames into model outputs: probabilities (n, classes) or values (n,)."""

    kind = "base"

    @abc.abstractmethod
    def rows(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        """Outputs for rows given as value lists in feature order."""

    @abc.abstractmethod
    def frame(self, frame: pl.DataFrame) -> np.ndarray:
        """Outputs for a frame of feature columns."""


def _session(graph: bytes) -> Any:
    import onnxruntime as ort  # an optional extra (onnx, serve), and heavy: only for an ONNX engine

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def _direct_run(session: Any) -> Callable[[dict[str, np.ndarray]], list[Any]]:
    """`session.run(None, feeds)` without the Python wrapper's per-call checks (about a quarter of a
    single-row call): the predictors build the feeds from the graph's own input list, so the checks
    cannot fail. Falls back to the public method if onnxruntime changes its internals."""
    names = [o.name for o in session.get_outputs()]
    inner = getattr(session, "_sess", None)
    if inner is None or not callable(getattr(inner, "run", None)):
        return lambda feeds: session.run(None, feeds)
    return lambda feeds: inner.run(names, feeds, None)


class OnnxMatrixPredictor(Predictor):
    """Histogram boosting graph: one float64 matrix; categoricals become codes by dictionary lookup."""

    kind = "onnx"

    def __init__(self, graph: bytes, inputs: list[dict[str, Any]], columns: list[str]) -> None:
        self._session = _session(graph)
        self._run = _direct_run(self._session)
        self._inputs = inputs
        self._plan: list[tuple[int, dict[Any, float] | None]] = []
        for spec in inputs:
            codes: dict[Any, float] | None = None
            if spec["kind"] == "categorical":
                codes = {str(k): float(v) for k, v in spec["codes"].items()}
                for word, flag in (("true", True), ("false", False)):
                    if word in codes:
                        codes[flag] = codes[word]  # JSON booleans arrive as bool
            self._plan.append((columns.index(spec["name"]), codes))

    def rows(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        plan = self._plan
        matrix = np.array(
            [[(NAN if row[i] is None else row[i]) if codes is None else codes.get(row[i], NAN) for i, codes in plan]
             for row in rows], dtype=np.float64)
        return self._run({"X": matrix})[0]  # type: ignore[no-any-return]

    def frame(self, frame: pl.DataFrame) -> np.ndarray:
        matrix = np.empty((frame.height, len(self._plan)), dtype=np.float64)
        for j, spec in enumerate(self._inputs):
            column = frame.get_column(spec["name"])
            if spec["kind"] == "numeric":
                matrix[:, j] = column.cast(pl.Float64).to_numpy()
            else:
                codes = {str(k): float(v) for k, v in spec["codes"].items()}
                matrix[:, j] = column.cast(pl.String).replace_strict(
                    codes, default=None, return_dtype=pl.Float64).fill_null(NAN).to_numpy()
        return self._run({"X": matrix})[0]  # type: ignore[no-any-return]


class OnnxColumnsPredictor(Predictor):
    """skl2onnx graph: one [n, 1] input per column; "" marks a missing categorical."""

    kind = "onnx"

    def __init__(self, graph: bytes, inputs: list[dict[str, Any]], columns: list[str], flat: bool) -> None:
        self._session = _session(graph)
        self._run = _direct_run(self._session)
        self._flat = flat  # regression: one value per row
        self._inputs = [(spec["feed"], columns.index(spec["name"]), spec["kind"] == "numeric") for spec in inputs]
        self._names = {spec["feed"]: spec["name"] for spec in inputs}

    @staticmethod
    def _text(value: Any) -> str:
        if value is None:
            return CATEGORICAL_MISSING
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    def rows(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        feeds: dict[str, np.ndarray] = {}
        for feed, i, numeric in self._inputs:
            if numeric:
                feeds[feed] = np.array([[NAN if r[i] is None else r[i]] for r in rows], dtype=np.float32)
            else:
                feeds[feed] = np.array([[self._text(r[i])] for r in rows], dtype=object)
        out = np.asarray(self._run(feeds)[-1], dtype=np.float64)
        return out.reshape(-1) if self._flat else out

    def frame(self, frame: pl.DataFrame) -> np.ndarray:
        feeds: dict[str, np.ndarray] = {}
        for feed, _i, numeric in self._inputs:
            column = frame.get_column(self._names[feed])
            if numeric:
                feeds[feed] = column.cast(pl.Float64).to_numpy().astype(np.float32).reshape(-1, 1)
            else:
                text = column.cast(pl.String).fill_null(CATEGORICAL_MISSING).to_numpy()
                feeds[feed] = np.asarray(text, dtype=object).reshape(-1, 1)
        out = np.asarray(self._run(feeds)[-1], dtype=np.float64)
        return out.reshape(-1) if self._flat else out


class SklearnPredictor(Predictor):
    """The scikit-learn pipeline itself (its FrameCoercer maps None and NaN to the training marker)."""

    kind = "sklearn"

    def __init__(self, model: Any, columns: list[str], task: str) -> None:
        self._model = model
        self._columns = columns
        self._predict = model.predict if task == "regression" else model.predict_proba

    def rows(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        frame = pd.DataFrame([list(r) for r in rows], columns=self._columns)
        return np.asarray(self._predict(frame), dtype=np.float64)

    def frame(self, frame: pl.DataFrame) -> np.ndarray:
        return np.asarray(self._predict(frame.select(self._columns).to_pandas()), dtype=np.float64)


@dataclass
class ServedModel:
    """A verified model version, ready to predict."""

    name: str
    version: int
    bundle_id: str
    contract: Contract
    predictor: Predictor
    engine_info: dict[str, Any]
    labels: list[str]
    components: dict[str, str] = field(default_factory=dict)
    policy: TrustPolicy = DEFAULT_POLICY

    @property
    def engine(self) -> str:
        return self.predictor.kind

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.contract.features]

    @property
    def task(self) -> str:
        return self.contract.task

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "bundle": self.bundle_id, "engine": self.engine,
                "engine_reason": self.engine_info.get("reason", ""), "task": self.task}


def build_model(*, name: str, version: int, bundle_id: str, components: Mapping[str, str],
                get: Callable[[str], bytes], prefer_onnx: bool = True,
                policy: TrustPolicy = DEFAULT_POLICY) -> ServedModel:
    """Build the predictor from a verified bundle's components (`get` returns a component's verified bytes);
    a scikit-learn model loads only as `policy` allows."""
    contract = Contract.model_validate(json.loads(get(components["contract"])))
    columns = [c.name for c in contract.features]
    info: dict[str, Any] = (json.loads(get(components["engine"])) if "engine" in components
                            else {"engine": "sklearn", "reason": "the bundle predates the ONNX export step"})
    predictor: Predictor
    if prefer_onnx and info.get("engine") == "onnx" and "onnx" in components:
        try:
            import onnxruntime  # noqa: F401  # is the optional extra installed? (heavy: loaded only here)
        except ImportError:
            info = {**info, "engine": "sklearn", "reason": "onnxruntime is not installed on this server"}
        else:
            graph = get(components["onnx"])
            if info.get("layout") == "matrix":
                predictor = OnnxMatrixPredictor(graph, info["inputs"], columns)
            else:
                predictor = OnnxColumnsPredictor(graph, info["inputs"], columns, contract.task == "regression")
            labels = [str(c) for c in info.get("classes") or []]
            return ServedModel(name, version, bundle_id, contract, predictor, info, labels, dict(components), policy)
    if "model" not in components:
        raise IntegrityError(f"{name} version {version}: the bundle has no scikit-learn model to fall back on",
                             expected="a model component", fix="serve a bundle exported with its model")
    model = load_model(get(components["model"]), policy)
    if not prefer_onnx:
        info = {**info, "engine": "sklearn", "reason": "scikit-learn engine requested"}
    labels = [str(c) for c in getattr(model, "classes_", [])]
    return ServedModel(name, version, bundle_id, contract, SklearnPredictor(model, columns, contract.task), info,
                       labels, dict(components), policy)


def load_registered(project: Any, name: str, version: int, *, prefer_onnx: bool = True) -> ServedModel:
    """Verify (signature, component digests, gate verdict) and load a registered version."""
    row, bundle = project.registry.bundle(name, version)
    components = {k: str(v["sha256"]) for k, v in bundle["manifest"]["components"].items()}
    return build_model(name=name, version=int(row["version"]), bundle_id=str(row["bundle_id"]),
                       components=components, get=project.artifacts.get, prefer_onnx=prefer_onnx,
                       policy=project.registry.policy_for(bundle["manifest"]))
