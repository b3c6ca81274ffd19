"""The prediction core every predict path shares, and the V1 predict endpoint on raw bytes.

`predict_rows` runs the served model's predictor on validated rows (tuples in contract feature
order), feeds the extraction monitor, shapes the per-row answers (label and top-k rounded
probabilities, or a value), counts the rows and queues the prediction-log entry. It runs on the
event loop (a sub-millisecond prediction: no thread hop per request). Request ids are 128 random
bits from the OS as hex (uuid4's entropy without building a UUID object).

`predict_body` is the whole `POST /v1/models/{name}/predict` endpoint as a plain function of raw
bytes: the fast path. The guard calls it directly (bound to the application's state by
`app.build_app`, handed over as `ServeApp.fast_predict`), without FastAPI's routing; the FastAPI
route runs the same function. The body is parsed and validated in one step by pydantic-core
against the models the live version's contract generated (a hot swap to a version with another
contract also swaps the request schema), and the answer carries the answering version
(`model_version` and `X-Model-Version`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from keelml.serve.bodies import Answer, dumps, invalid_request, not_found
from keelml.serve.extraction import boundary_gaps
from keelml.serve.predlog import LogEntry
from keelml.serve.state import ANONYMOUS, AppSettings, ServeState
from keelml.serve.swap import Served

FastPredict = Callable[[str, bytes, str], Answer]
"""The fast path's signature: (model name, raw body, caller) -> (status, JSON bytes, extra headers)."""


def answers(served: Served, out: np.ndarray, settings: AppSettings
            ) -> tuple[list[dict[str, Any]], list[Any], list[float | None]]:
    """Per-row answers (label + top_k rounded probabilities, or a value), labels and scores for the log."""
    model = served.model
    if model.task == "regression":
        values: list[float | None] = [float(v) for v in out.reshape(-1).tolist()]
        return [{"value": v} for v in values], [None] * len(values), values
    labels = model.labels
    k = min(settings.top_k, len(labels))
    digits = settings.precision
    rows: list[dict[str, Any]] = []
    top_labels: list[Any] = []
    scores: list[float | None] = []
    for probs in out.tolist():
        order = sorted(range(len(probs)), key=probs.__getitem__, reverse=True)[:k]
        rows.append({"label": labels[order[0]],
                     "top_k": [{"class": labels[i], "probability": round(probs[i], digits)} for i in order]})
        top_labels.append(labels[order[0]])
        scores.append(probs[order[0]])
    return rows, top_labels, scores


def record_rows(served: Served, payload: BaseModel) -> list[tuple[Any, ...]]:
    """The validated records of a predict request as tuples in contract feature order."""
    attrs = served.schema.attributes
    return [tuple(getattr(record, a) for a in attrs) for record in payload.records]  # type: ignore[attr-defined]


def predict_rows(state: ServeState, served: Served, rows: Sequence[Sequence[Any]], started: float, caller: str
                 ) -> tuple[str, list[dict[str, Any]], list[Any], list[float | None]]:
    """(request id, per-row answers, labels, scores) for validated rows, with metrics, extraction and log."""
    out = served.model.predictor.rows(rows)
    extraction = state.extraction
    if extraction is not None:
        extraction.observe(caller, rows, boundary_gaps(out) if served.model.task != "regression"
                           else [None] * len(rows))
    results, labels, scores = answers(served, out, state.settings)
    request_id = os.urandom(16).hex()
    state.metrics.rows += len(rows)
    predlog = state.predlog
    if predlog is not None:
        predlog.put(LogEntry(request_id, time.time(), served.model.version, rows, labels, scores,
                             (time.perf_counter() - started) * 1000.0))
    return request_id, results, labels, scores


def predict_body(state: ServeState, name: str, body: bytes, caller: str = ANONYMOUS) -> Answer:
    """`POST /v1/models/{name}/predict` on raw bytes: the fast path (see the module's docstring)."""
    started = time.perf_counter()
    served = state.served(name)
    if served is None:
        return not_found(name)
    try:
        payload = served.schema.predict.model_validate_json(body)
    except ValidationError as exc:
        state.metrics.errors["validation"] += 1
        return invalid_request(exc)
    request_id, results, _, _ = predict_rows(state, served, record_rows(served, payload), started, caller)
    version = served.model.version
    answer = {"model": name, "model_version": version, "engine": served.model.engine,
              "request_id": request_id, "predictions": results}
    return 200, dumps(answer), {"x-model-version": str(version), "x-request-id": request_id}
