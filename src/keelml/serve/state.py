"""What the handlers share: the live model's holder, the metrics, the settings, the prediction log and
the extraction monitor, as one `ServeState`.

`app.build_app` stores it on the application (`app.state.keel`); a handler reads it with
`serve_state(request)`, the lifespan and the OpenAPI builder with `app_state(app)`. The fast
predict path gets it bound in (`app.ServeApp.fast_predict`), not through a request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request

from keelml.serve.extraction import ExtractionMonitor
from keelml.serve.metrics import Metrics
from keelml.serve.predlog import PredictionLog
from keelml.serve.swap import ModelHolder, Served

ANONYMOUS = "anonymous"


@dataclass
class AppSettings:
    precision: int  # decimals of returned probabilities
    top_k: int  # most probable classes returned per row
    max_rows: int  # rows per request


@dataclass(frozen=True)
class ServeState:
    """The services behind the routes (one per application)."""

    holder: ModelHolder
    metrics: Metrics
    settings: AppSettings
    predlog: PredictionLog | None = None
    extraction: ExtractionMonitor | None = None
    on_startup: Callable[[], None] | None = None  # run once the server has started

    def served(self, name: str) -> Served | None:
        """The live model when it is the one named `name` (a request reads it once and finishes on it)."""
        served = self.holder.current
        return served if served is not None and served.model.name == name else None


def attach(app: FastAPI, state: ServeState) -> None:
    """Make `state` the application's."""
    app.state.keel = state


def app_state(app: FastAPI) -> ServeState:
    """The application's state (put there by `attach`)."""
    state: ServeState = app.state.keel
    return state


def serve_state(request: Request) -> ServeState:
    """The state of the application serving `request`."""
    state: ServeState = request.app.state.keel
    return state


def caller(request: Request) -> str:
    """The key name the guard put in the request's scope."""
    return str(request.scope.get("state", {}).get("caller", ANONYMOUS))
