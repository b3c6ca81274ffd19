"""The Open Inference Protocol (KServe V2): health, model metadata, and inference on column tensors.

`GET /v2/health/live` and `/v2/health/ready` are open (the guard lets them through without a key);
`GET /v2/models/{name}` describes the inputs (one per feature column) and outputs; `POST
/v2/models/{name}/infer` takes one input tensor per feature column, turns the columns into records,
validates them against the live contract's predict model (errors located as ``["inputs", column,
row]``) and answers through the same prediction core as V1 (`predict.predict_rows`).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from keelml.serve.bodies import invalid, invalid_request, json_response, not_found, response
from keelml.serve.openapi import body_schema
from keelml.serve.predict import predict_rows, record_rows
from keelml.serve.schema import InferRequest
from keelml.serve.state import caller, serve_state

router = APIRouter()
DATATYPES = {"integer": "INT64", "float": "FP64", "boolean": "BOOL", "category": "BYTES", "string": "BYTES"}


@router.get("/v2/health/live", summary="The process is up")
async def live() -> Response:
    return json_response({"live": True})


@router.get("/v2/health/ready", summary="A verified model is loaded")
async def ready(request: Request) -> Response:
    ok = serve_state(request).holder.current is not None
    return json_response({"ready": ok}, 200 if ok else 503)


@router.get("/v2/models/{name}", summary="KServe V2 model metadata")
async def v2_metadata(name: str, request: Request) -> Response:
    served = serve_state(request).served(name)
    if served is None:
        return response(not_found(name))
    model = served.model
    outputs = ([{"name": "value", "datatype": "FP64", "shape": [-1]}] if model.task == "regression" else
               [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probability", "datatype": "FP64", "shape": [-1]}])
    return json_response({"name": name, "versions": [str(model.version)], "platform": f"keelml-{model.engine}",
                          "inputs": [{"name": c.name, "datatype": DATATYPES[c.type], "shape": [-1]}
                                     for c in model.contract.features],
                          "outputs": outputs})


def _tensor_location(loc: list[Any]) -> list[Any]:
    """A record field's error location (records, row, column) as the V2 input's (inputs, column, row)."""
    return ["inputs", loc[2], loc[1]] if len(loc) >= 3 else loc


@router.post("/v2/models/{name}/infer", summary="KServe V2 inference: one input per feature column",
             openapi_extra=body_schema("InferRequest"))
async def v2_infer(name: str, request: Request) -> Response:
    started = time.perf_counter()
    state = serve_state(request)
    served = state.served(name)
    if served is None:
        return response(not_found(name))
    try:
        infer = InferRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        state.metrics.errors["validation"] += 1
        return response(invalid_request(exc))
    records, problem = records_from_inputs(infer, served.schema.columns, state.settings.max_rows)
    if problem is not None:
        state.metrics.errors["validation"] += 1
        return response(invalid([problem]))
    try:
        payload = served.schema.predict.model_validate({"records": records})
    except ValidationError as exc:
        state.metrics.errors["validation"] += 1
        return response(invalid_request(exc, remap=_tensor_location))
    rows = record_rows(served, payload)
    request_id, results, labels, _ = predict_rows(state, served, rows, started, caller(request))
    n = len(rows)
    if served.model.task == "regression":
        outputs = [{"name": "value", "datatype": "FP64", "shape": [n], "data": [r["value"] for r in results]}]
    else:
        outputs = [{"name": "label", "datatype": "BYTES", "shape": [n], "data": labels},
                   {"name": "probability", "datatype": "FP64", "shape": [n],
                    "data": [r["top_k"][0]["probability"] for r in results]}]
    version = served.model.version
    return json_response({"model_name": name, "model_version": str(version), "id": infer.id or request_id,
                          "outputs": outputs}, headers={"x-model-version": str(version), "x-request-id": request_id})


def records_from_inputs(infer: InferRequest, columns: list[str], max_rows: int
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
