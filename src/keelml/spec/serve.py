"""The `serve:` section of pipeline.yaml: how `keel serve` answers."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from keelml.spec.base import StrictModel


class ServeSpec(StrictModel):
    """How `keel serve` answers: response precision, request limits, model following, prediction log,
    the connections it holds, and whom it trusts to report a client's address."""

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
    trusted_proxies: list[str] = Field(default_factory=list, description="addresses or networks of reverse "
                                       "proxies whose X-Forwarded-For / X-Forwarded-Proto headers are believed; "
                                       "empty: the headers are ignored and the client is the connection's peer")
    keep_alive_seconds: float = Field(5.0, gt=0, le=300, description="an idle kept-alive connection is closed "
                                      "after this long")
    header_timeout_seconds: float = Field(10.0, gt=0, le=300, description="a request's head (request line and "
                                          "headers) must arrive within this long of its first byte, or of the "
                                          "connection's opening (408 and closed)")
    body_timeout_seconds: float = Field(30.0, gt=0, le=3600, description="a request's body must arrive within "
                                        "this long of its head, and a client must take in a response within "
                                        "this long (408 or dropped)")
    max_connections: int = Field(1000, ge=1, le=1_000_000, description="open connections per server process; "
                                 "one more is answered 503 and closed")
    dashboard_session_seconds: float = Field(3600.0, ge=60, le=86400, description="lifetime of the dashboard's "
                                             "browser session (opened with ?key=, bound to that key)")

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        normalised = []
        for entry in value:
            try:
                text = entry.strip()
                address = ipaddress.ip_network(text, strict=False) if "/" in text else ipaddress.ip_address(text)
            except ValueError:
                raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or network (such as 10.0.0.5 "
                                 "or 10.0.0.0/8); name each proxy, never '*'") from None
            normalised.append(str(address))
        return normalised
