"""The FastAPI application: keelml's predict and feedback routes, KServe V2, metrics, OpenAPI.

Handlers are `async` and do the (sub-millisecond) prediction on the event loop: no thread hop per
request. The predict answer is serialised with orjson when it is installed (the `serve` extra;
~15x faster than the json module for these small bodies, byte-identical output) and request ids are
128 random bits from the OS as hex (uuid4's entropy without building a UUID object). Bodies are
parsed and validated in one step by pydantic-core against the models the live version's contract
generated, so a hot swap to a version with another contract also swaps the request schema.
Responses carry the answering version (`model_version` and `X-Model-Version`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError

from keelml.serve.extraction import ExtractionMonitor, boundary_gaps
from keelml.serve.metrics import Metrics
from keelml.serve.predlog import Feedback, LogEntry, PredictionLog
from keelml.serve.schema import InferRequest
from keelml.serve.swap import ModelHolder, Served

log = logging.getLogger("keelml.serve")
MAX_ERRORS = 50


@dataclass
class AppSettings:
    precision: int
    top_k: int
    max_rows: int


Answer = tuple[int, bytes, dict[str, str]]  # status, JSON body, extra headers


def _stdlib_dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


try:
    import orjson

    def dumps(payload: Any) -> bytes:
        """Compact JSON bytes (orjson; numpy scalars allowed)."""
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
except ImportError:  # pragma: no cover - orjson comes with the serve extra
    dumps = _stdlib_dumps


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status,
                    media_type="application/json", headers=headers)


def _response(answer: Answer) -> Response:
    status, body, headers = answer
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _errors(exc: ValidationError, remap: Any = None) -> list[dict[str, Any]]:
    """One entry per offending field; the submitted values are not echoed back."""
    errors = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False)[:MAX_ERRORS]:
        loc = list(err["loc"])
        errors.append({"loc": remap(loc) if remap else loc, "msg": err["msg"], "type": err["type"]})
    return errors


def _invalid(exc: ValidationError, remap: Any = None) -> Response:
    return _json({"error": "invalid request", "detail": _errors(exc, remap)}, 422)


def _not_found(what: str) -> Response:
    return _json({"error": f"no model named {what!r} is served here"}, 404)


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


def build_app(*, holder: ModelHolder, metrics: Metrics, settings: AppSettings,
              predlog: PredictionLog | None, extraction: ExtractionMonitor | None = None,
              on_startup: Callable[[], None] | None = None) -> FastAPI:
    """The application (wrap it in limits.Guard before serving); `on_startup` runs once the server has started."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            on_startup()
        task = asyncio.create_task(holder.follow())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if predlog is not None:
                await asyncio.to_thread(predlog.close)

    # no slash redirects: a decoded "..%2f" must not be bounced to another path (the 404 is the answer)
    app = FastAPI(title="keelml model server", docs_url=None, redoc_url=None, lifespan=lifespan,
                  redirect_slashes=False)

    def current(name: str) -> Served | None:
        served = holder.current
        return served if served is not None and served.model.name == name else None

    def predict_rows(served: Served, rows: Sequence[Sequence[Any]], started: float, caller: str
                     ) -> tuple[str, list[dict[str, Any]], list[Any], list[float | None]]:
        out = served.model.predictor.rows(rows)
        if extraction is not None:
            extraction.observe(caller, rows, boundary_gaps(out) if served.model.task != "regression"
                               else [None] * len(rows))
        results, labels, scores = answers(served, out, settings)
        request_id = os.urandom(16).hex()
        metrics.rows += len(rows)
        if predlog is not None:
            predlog.put(LogEntry(request_id, time.time(), served.model.version, rows, labels, scores,
                                 (time.perf_counter() - started) * 1000.0))
        return request_id, results, labels, scores

    def predict_body(name: str, body: bytes, caller: str = "anonymous") -> Answer:
        """The predict endpoint on raw bytes (the guard calls it directly: no framework hop per request)."""
        started = time.perf_counter()
        served = current(name)
        if served is None:
            return 404, json.dumps({"error": f"no model named {name!r} is served here"}).encode(), {}
        try:
            payload = served.schema.predict.model_validate_json(body)
        except ValidationError as exc:
            metrics.errors["validation"] += 1
            return 422, json.dumps({"error": "invalid request", "detail": _errors(exc)}).encode(), {}
        attrs = served.schema.attributes
        rows = [tuple(getattr(record, a) for a in attrs) for record in payload.records]  # type: ignore[attr-defined]
        request_id, results, _, _ = predict_rows(served, rows, started, caller)
        version = served.model.version
        answer = {"model": name, "model_version": version, "engine": served.model.engine,
                  "request_id": request_id, "predictions": results}
        return 200, dumps(answer), {
            "x-model-version": str(version), "x-request-id": request_id}

    app.state.predict_body = predict_body

    @app.post("/v1/models/{name}/predict", summary="Predict one or more rows",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/PredictRequest"}}}}})
    async def predict(name: str, request: Request) -> Response:
        return _response(predict_body(name, await request.body(), _caller(request)))

    @app.post("/v1/models/{name}/feedback", status_code=202, summary="Record the true outcome of a prediction",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/FeedbackRequest"}}}}})
    async def feedback(name: str, request: Request) -> Response:
        served = current(name)
        if served is None:
            return _not_found(name)
        try:
            item = served.schema.feedback.model_validate_json(await request.body())
        except ValidationError as exc:
            metrics.errors["validation"] += 1
            return _invalid(exc)
        if predlog is not None:
            predlog.put(Feedback(item.request_id, item.row, item.label, time.time()))  # type: ignore[attr-defined]
        return _json({"accepted": True, "request_id": item.request_id}, 202)  # type: ignore[attr-defined]

    @app.get("/v1/models/{name}", summary="The served version and its engine")
    async def model_info(name: str) -> Response:
        served = current(name)
        if served is None:
            return _not_found(name)
        return _json({**served.model.describe(), "contract_version": served.model.contract.version,
                      "last_swap_error": holder.last_error})

    @app.get("/v2/health/live", summary="The process is up")
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready", summary="A verified model is loaded")
    async def ready() -> Response:
        ok = holder.current is not None
        return _json({"ready": ok}, 200 if ok else 503)

    @app.get("/v2/models/{name}", summary="KServe V2 model metadata")
    async def v2_metadata(name: str) -> Response:
        served = current(name)
        if served is None:
            return _not_found(name)
        model = served.model
        kinds = {"integer": "INT64", "float": "FP64", "boolean": "BOOL", "category": "BYTES", "string": "BYTES"}
        outputs = ([{"name": "value", "datatype": "FP64", "shape": [-1]}] if model.task == "regression" else
                   [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                    {"name": "probability", "datatype": "FP64", "shape": [-1]}])
        return _json({"name": name, "versions": [str(model.version)], "platform": f"keelml-{model.engine}",
                      "inputs": [{"name": c.name, "datatype": kinds[c.type], "shape": [-1]}
                                 for c in model.contract.features],
                      "outputs": outputs})

    @app.post("/v2/models/{name}/infer", summary="KServe V2 inference: one input per feature column",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/InferRequest"}}}}})
    async def v2_infer(name: str, request: Request) -> Response:
        started = time.perf_counter()
        served = current(name)
        if served is None:
            return _not_found(name)
        try:
            infer = InferRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            metrics.errors["validation"] += 1
            return _invalid(exc)
        records, problem = _records_from_inputs(infer, served.schema.columns, settings.max_rows)
        if problem is not None:
            metrics.errors["validation"] += 1
            return _json({"error": "invalid request", "detail": [problem]}, 422)
        try:
            payload = served.schema.predict.model_validate({"records": records})
        except ValidationError as exc:
            metrics.errors["validation"] += 1
            return _invalid(exc, remap=lambda loc: ["inputs", loc[2], loc[1]] if len(loc) >= 3 else loc)
        attrs = served.schema.attributes
        rows = [tuple(getattr(record, a) for a in attrs) for record in payload.records]  # type: ignore[attr-defined]
        request_id, results, labels, _ = predict_rows(served, rows, started, _caller(request))
        n = len(rows)
        if served.model.task == "regression":
            outputs = [{"name": "value", "datatype": "FP64", "shape": [n], "data": [r["value"] for r in results]}]
        else:
            outputs = [{"name": "label", "datatype": "BYTES", "shape": [n], "data": labels},
                       {"name": "probability", "datatype": "FP64", "shape": [n],
                        "data": [r["top_k"][0]["probability"] for r in results]}]
        version = served.model.version
        return _json({"model_name": name, "model_version": str(version), "id": infer.id or request_id,
                      "outputs": outputs}, headers={"x-model-version": str(version), "x-request-id": request_id})

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> Response:
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        metrics.errors["internal"] += 1
        return _json({"error": "internal error"}, 500)

    def openapi() -> dict[str, Any]:
        from fastapi.openapi.utils import get_openapi

        served = holder.current
        schema = get_openapi(title=app.title, version=str(served.model.version if served else 0), routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        models: list[Any] = [InferRequest]
        if served is not None:
            models += [served.schema.predict, served.schema.feedback]
        for model in models:
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
        security = {"bearer": {"type": "http", "scheme": "bearer"}}
        schema["components"]["securitySchemes"] = security
        schema["security"] = [{"bearer": []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _caller(request: Request) -> str:
    """The key name the guard put in the request's scope."""
    return str(request.scope.get("state", {}).get("caller", "anonymous"))


def _records_from_inputs(infer: InferRequest, columns: list[str], max_rows: int
                         ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Rows from V2 column tensors, or a per-field problem."""
    names = [i.name for i in infer.inputs]
    missing = [c for c in columns if c not in names]
    extra = sorted({n for n in names if n not in columns} | {n for n in names if names.count(n) > 1})
    if missing or extra:
        return [], {"loc": ["inputs"], "msg": f"inputs must be the feature columns, once each; "
                    f"missing: {missing[:20]}, unexpected or repeated: {extra[:20]}", "type": "inputs"}
    lengths = {len(i.data) for i in infer.inputs}
    if len(lengths) != 1:
        return [], {"loc": ["inputs"], "msg": "every input must hold the same number of values", "type": "shape"}
    n = lengths.pop()
    if n < 1 or n > max_rows:
        return [], {"loc": ["inputs"], "msg": f"between 1 and {max_rows} rows per request", "type": "rows"}
    for i in infer.inputs:
        if i.shape[0] != n or (len(i.shape) == 2 and i.shape[1] != 1):
            return [], {"loc": ["inputs", i.name, "shape"], "msg": f"shape must be [{n}] or [{n}, 1]",
                        "type": "shape"}
    data = {i.name: i.data for i in infer.inputs}
    return [{c: data[c][r] for c in columns} for r in range(n)], None
