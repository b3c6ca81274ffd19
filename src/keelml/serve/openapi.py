"""The OpenAPI document, built from the live version's contract at each request for it.

The predict and feedback bodies are the pydantic models generated from the contract of the version
being served (`schema.request_models`), so after a hot swap to a version with another contract the
document describes the new one. Routes name their body with `body_schema`; the models are added
under ``components/schemas``. Every operation requires a bearer API key.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from keelml.serve.schema import InferRequest
from keelml.serve.state import app_state


def body_schema(model: str) -> dict[str, Any]:
    """An operation's `openapi_extra`: a required JSON body described by the component schema `model`."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model}"}}}}}


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """The document for `app` now (not cached: the contract can change with the live version)."""
    served = app_state(app).holder.current
    schema = get_openapi(title=app.title, version=str(served.model.version if served else 0), routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    models: list[Any] = [InferRequest]
    if served is not None:
        models += [served.schema.predict, served.schema.feedback]
    for model in models:
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
    schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    schema["security"] = [{"bearer": []}]
    return schema
