"""keelml's own API: `POST /v1/models/{name}/predict`, `POST .../feedback`, `GET /v1/models/{name}`.

The predict route runs `predict.predict_body`, the function the guard calls directly on the fast
path, so a request answered either way gets the same answer. Request bodies are read raw and
validated against the live contract's models (the OpenAPI document names them: `openapi.py`).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from keelml.serve.bodies import invalid_request, json_response, not_found, response
from keelml.serve.openapi import body_schema
from keelml.serve.predict import predict_body
from keelml.serve.predlog import Feedback
from keelml.serve.state import caller, serve_state

router = APIRouter()


@router.post("/v1/models/{name}/predict", summary="Predict one or more rows",
             openapi_extra=body_schema("PredictRequest"))
async def predict(name: str, request: Request) -> Response:
    return response(predict_body(serve_state(request), name, await request.body(), caller(request)))


@router.post("/v1/models/{name}/feedback", status_code=202, summary="Record the true outcome of a prediction",
             openapi_extra=body_schema("FeedbackRequest"))
async def feedback(name: str, request: Request) -> Response:
    state = serve_state(request)
    served = state.served(name)
    if served is None:
        return response(not_found(name))
    try:
        item = served.schema.feedback.model_validate_json(await request.body())
    except ValidationError as exc:
        state.metrics.errors["validation"] += 1
        return response(invalid_request(exc))
    if state.predlog is not None:
        state.predlog.put(Feedback(item.request_id, item.row, item.label, time.time()))  # type: ignore[attr-defined]
    return json_response({"accepted": True, "request_id": item.request_id}, 202)  # type: ignore[attr-defined]


@router.get("/v1/models/{name}", summary="The served version and its engine")
async def model_info(name: str, request: Request) -> Response:
    state = serve_state(request)
    served = state.served(name)
    if served is None:
        return response(not_found(name))
    return json_response({**served.model.describe(), "contract_version": served.model.contract.version,
                          "last_swap_error": state.holder.last_error})
