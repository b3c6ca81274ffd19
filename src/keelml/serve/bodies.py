"""Response bodies: the predict answer's JSON encoder, and every error body the server sends.

This module owns the error bodies. The fast predict path (`predict.predict_body`, called by the
guard), the FastAPI routes, the exception handler and the guard's own refusals all build theirs
here, so one situation gets one body whichever path answers it:

- 404 ``{"error": "no model named '...' is served here"}`` (`not_found`);
- 422 ``{"error": "invalid request", "detail": [{"loc", "msg", "type"}, ...]}`` (`invalid_request`
  from a pydantic ValidationError, at most `MAX_ERRORS` entries, the submitted values never echoed
  back; `invalid` from problems found by hand);
- 500 ``{"error": "internal error"}`` (`INTERNAL_ERROR`; details go to the server log only);
- the guard's 400, 401, 403, 411, 413, 415 and 429 (`refusal`: body and raw ASGI headers).

Every response carries `SECURITY_HEADERS` (`X-Content-Type-Options: nosniff`, `Cache-Control:
no-store`): `raw_headers` adds them to the fast path's answers and the guard's refusals, the guard
adds them to whatever the application sends, and `connections.answer` to the 400, 408, 431 and 503
written before a request reaches the application.

Error bodies are compact JSON from the json module (they are not the hot path). The predict answer
is encoded with `dumps`: orjson when it is installed (the `serve` extra; ~15x faster than the json
module for these small bodies, byte-identical output), else the json module.

An answer travels as `Answer` = (status, body bytes, extra headers): the fast path writes it
straight to the ASGI connection (`raw_headers`), the routes turn it into a Response (`response`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.responses import Response
from pydantic import ValidationError

MAX_ERRORS = 50  # entries of a 422's detail list
JSON = "application/json"
_JSON = JSON.encode()

Answer = tuple[int, bytes, dict[str, str]]  # status, JSON body, extra headers
RawHeaders = list[tuple[bytes, bytes]]
SECURITY_HEADERS: RawHeaders = [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]
Remap = Callable[[list[Any]], list[Any]]


def stdlib_dumps(payload: Any) -> bytes:
    """Compact JSON bytes from the json module."""
    return json.dumps(payload, separators=(",", ":")).encode()


try:
    import orjson  # an optional extra (serve): the json module is the fallback

    def dumps(payload: Any) -> bytes:
        """Compact JSON bytes (orjson; numpy scalars allowed)."""
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
except ImportError:  # pragma: no cover - orjson comes with the serve extra
    dumps = stdlib_dumps


def error_body(message: str) -> bytes:
    """``{"error": message}``."""
    return stdlib_dumps({"error": message})


def not_found(name: str) -> Answer:
    """404: no model of that name is served here."""
    return 404, error_body(f"no model named {name!r} is served here"), {}


def validation_errors(exc: ValidationError, remap: Remap | None = None) -> list[dict[str, Any]]:
    """One entry per offending field (`remap` rewrites each location); the submitted values are not echoed back."""
    errors = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False)[:MAX_ERRORS]:
        loc = list(err["loc"])
        errors.append({"loc": remap(loc) if remap else loc, "msg": err["msg"], "type": err["type"]})
    return errors


def invalid(detail: list[dict[str, Any]]) -> Answer:
    """422 with per-field problems (each a dict with "loc", "msg" and "type")."""
    return 422, stdlib_dumps({"error": "invalid request", "detail": detail}), {}


def invalid_request(exc: ValidationError, remap: Remap | None = None) -> Answer:
    """422 for a body its request model refused."""
    return invalid(validation_errors(exc, remap))


INTERNAL_ERROR: Answer = (500, error_body("internal error"), {})


def raw_headers(body: bytes, extra: dict[str, str] | None = None) -> RawHeaders:
    """ASGI response headers of a JSON body: content type, length, `SECURITY_HEADERS`, then `extra`."""
    headers = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]
    if extra:
        headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    return headers


def refusal(status: int, message: str, extra: dict[str, str] | None = None) -> tuple[int, bytes, RawHeaders]:
    """The guard's answer when a request fails its checks: status, body and raw headers."""
    body = error_body(message)
    return status, body, raw_headers(body, extra)


def response(answer: Answer) -> Response:
    """A Starlette Response for an answer."""
    status, body, headers = answer
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON Response (json module) for the routes' other answers."""
    return Response(stdlib_dumps(payload), status_code=status, media_type=JSON, headers=headers)
