"""`GET /metrics`: the server's counters and latency histograms in the Prometheus text format (`metrics.py`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from keelml.serve.state import serve_state

router = APIRouter()
PROMETHEUS = "text/plain; version=0.0.4"


@router.get("/metrics", summary="Prometheus metrics")
async def prometheus(request: Request) -> Response:
    return Response(serve_state(request).metrics.render(), media_type=PROMETHEUS)
