"""The `serve:` section of pipeline.yaml: how `keel serve` answers."""

from __future__ import annotations

from pydantic import Field

from keelml.spec.base import StrictModel


class ServeSpec(StrictModel):
    """How `keel serve` answers: response precision, request limits, model following, prediction log."""

    precision: int = Field(3, ge=0, le=6, description="decimals of returned probabilities")
    top_k: int = Field(1, ge=1, le=1000, description="most probable classes returned per row")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest accepted request body")
    max_rows: int = Field(1000, ge=1, le=100_000, description="rows per request")
    rate_limit: float = Field(1000.0, gt=0, description="requests per second per API key (token bucket)")
    rate_burst: int = Field(2000, ge=1, description="requests a key may send at once before the rate applies")
    poll_seconds: float = Field(1.0, gt=0, le=3600, description="how often the server checks which version is live")
    log_predictions: bool = True
    log_path: str | None = Field(None, description="prediction log directory; default <store>/predictions")
    log_roll_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    log_roll_seconds: float = Field(3600.0, gt=0)
    hash_columns: list[str] = Field(default_factory=list, description="PII columns logged as keyed hashes")
    query_quota_rows: int | None = Field(None, ge=1, description="rows one API key may ask for before an alert")
    extraction_min_rows: int = Field(200, ge=10, description="rows a key sends before its sweep statistics count")
    extraction_margin: float = Field(0.05, gt=0, le=0.5, description="probability distance to the threshold "
                                     "that counts as near the decision boundary")
    extraction_share: float = Field(0.5, gt=0, le=1.0, description="share of near-boundary rows or one-column "
                                    "variations that marks a key as sweeping the input space")
    block_suspected_extraction: bool = Field(False, description="refuse (403) keys suspected of model extraction")
