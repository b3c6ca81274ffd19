"""`GET /dashboard`: a self-contained monitoring page, and `/dashboard/data`, the JSON it polls.

Authentication is the server's (the guard checks every `/dashboard` request). A browser cannot send
`Authorization` on a page load, so `GET /dashboard?key=KEY` is accepted once: it opens a short-lived
session bound to that key (`auth.DashboardSessions`: a random id, an expiry, ended when the key is
revoked) and answers with a redirect to `/dashboard` that sets the session, never the key, in an
HttpOnly, SameSite=Strict cookie scoped to `/dashboard` (Secure when served over TLS); the key
leaves the address bar. The cookie is honoured only for GET requests under `/dashboard` (see
`auth.session_cookie`), never for predictions. The guard adds nosniff and no-store to every answer.
The page's script and styles are package files served here; a strict Content-Security-Policy
allows nothing else, and the script writes data with `textContent` only (every value is escaped).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from keelml.monitor.check import check_window
from keelml.monitor.drift import drift_report
from keelml.monitor.reference import load_reference
from keelml.monitor.window import NO_KEYS, LogKeys, read_prediction_log
from keelml.serve.auth import DASHBOARD_COOKIE, DashboardSessions
from keelml.serve.metrics import Metrics
from keelml.serve.swap import ModelHolder
from keelml.spec.monitor import DriftSpec, MonitorSpec

BUCKETS = 24
DRIFT_BUCKETS = 6
MAX_ROWS = 200_000
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
ASSETS = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}

Reference = Callable[[int], Any]  # version -> keelml.monitor.reference.Reference
History = Callable[[], dict[str, Any]]


def _asset(name: str) -> bytes:
    return resources.files("keelml.serve").joinpath("assets", name).read_bytes()


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _buckets(ts: list[float], n: int) -> tuple[float, float]:
    start, end = min(ts), max(ts)
    return start, max((end - start) / n, 1e-9)


def traffic_and_latency(frame: Any) -> dict[str, Any]:
    """Rows and p50/p99 latency per time bucket of the log window."""
    if frame.height == 0 or "ts" not in frame.columns:
        return {"traffic": [], "latency": []}
    start, width = _buckets(frame["ts"].to_list(), BUCKETS)
    binned = frame.with_columns(((pl.col("ts") - start) / width).floor().clip(0, BUCKETS - 1).cast(pl.Int64)
                                .alias("_bucket"))
    aggs = [pl.len().alias("rows")]
    if "latency_ms" in frame.columns:
        aggs += [pl.col("latency_ms").quantile(0.5).alias("p50"), pl.col("latency_ms").quantile(0.99).alias("p99")]
    grouped = binned.group_by("_bucket").agg(aggs).sort("_bucket")
    traffic, latency = [], []
    for row in grouped.iter_rows(named=True):
        t = start + (row["_bucket"] + 0.5) * width
        traffic.append({"t": t, "rows": int(row["rows"])})
        if "p50" in row:
            latency.append({"t": t, "p50": _finite(row["p50"]), "p99": _finite(row["p99"])})
    return {"traffic": traffic, "latency": latency}


def drift_over_time(frame: Any, reference: Any) -> dict[str, Any]:
    """PSI per feature in each of a few time buckets, against the version's training profile."""
    if frame.height == 0 or "ts" not in frame.columns:
        return {"times": [], "features": {}}
    ordered = frame.sort("ts")
    size = max(1, math.ceil(ordered.height / DRIFT_BUCKETS))
    settings = DriftSpec(min_rows=min(DriftSpec().min_rows, size))
    times: list[float] = []
    features: dict[str, list[float | None]] = {}
    for i, offset in enumerate(range(0, ordered.height, size)):
        part = ordered.slice(offset, size)
        report = drift_report(reference.profile, part, contract=reference.contract, settings=settings)
        times.append(float(part["ts"].mean()))
        for entry in report["columns"]:
            psi = (entry.get("statistics") or {}).get("psi") or {}
            features.setdefault(entry["column"], [None] * i).append(_finite(psi.get("value")))
        for values in features.values():
            values.extend([None] * (i + 1 - len(values)))
    return {"times": times, "features": features}


def live_metrics(metrics: Metrics) -> dict[str, Any]:
    """The server's counters: requests and errors by kind, rows, the live version, log rows."""
    requests: dict[str, int] = {}
    for (endpoint, status), n in metrics.requests.items():
        requests[f"{endpoint} {status}"] = requests.get(f"{endpoint} {status}", 0) + n
    return {"requests": requests, "errors": dict(metrics.errors), "rows": metrics.rows, "version": metrics.version,
            "engine": metrics.engine, "swaps": metrics.swaps, "log_rows": metrics.log_rows,
            "log_dropped": metrics.log_dropped}


def _recent_alerts(path: Path | None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest lines of `keel monitor`'s alert log (the log action), when there is one."""
    if path is None or not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[-limit:]:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def dashboard_data(*, name: str, metrics: Metrics, version: int | None, log_dir: Path | None,
                   reference: Reference | None, history: History | None, alerts_file: Path | None,
                   window_seconds: float, now: float | None = None, log_keys: LogKeys = NO_KEYS) -> dict[str, Any]:
    """Everything the page shows, as JSON-safe data (computed off the event loop)."""
    now = time.time() if now is None else now
    data: dict[str, Any] = {"model": name, "version": version, "generated_at": now, "window_seconds": window_seconds,
                            "live": live_metrics(metrics), "problems": []}
    frame = pl.DataFrame()
    if log_dir is not None and log_dir.exists():
        frame = read_prediction_log(log_dir, since=now - window_seconds, last=MAX_ROWS, keys=log_keys)
    data["log_rows_in_window"] = frame.height
    data.update(traffic_and_latency(frame))
    data["drift"] = {"times": [], "features": {}}
    data["rules"], data["performance"] = [], None
    if reference is not None and version is not None and frame.height:
        found = reference(version)
        data["drift"] = drift_over_time(frame, found)
        report = check_window(frame, reference=found.profile, contract=found.contract, spec=MonitorSpec())
        data["rules"] = [{k: r.get(k) for k in ("rule", "status", "detail")} for r in report["rules"]]
        data["drifted"] = report["drift"]["drifted"]
        perf = report["performance"]
        data["performance"] = perf.get("primary") if perf.get("available") else None
    data["alerts"] = _recent_alerts(alerts_file)
    data["history"] = history() if history is not None else {"versions": [], "aliases": []}
    return data


def _json_default(value: Any) -> Any:
    return None if isinstance(value, float) else str(value)


def _clean(value: Any) -> Any:
    """NaN and infinities become null (the JSON stays standard)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def add_dashboard(app: FastAPI, *, name: str, holder: ModelHolder, metrics: Metrics, log_dir: Path | None,
                  reference: Reference | None, history: History | None, sessions: DashboardSessions | None = None,
                  alerts_file: Path | None = None, window_seconds: float = 86400.0, cache_seconds: float = 2.0,
                  log_keys: LogKeys = NO_KEYS) -> None:
    """Register `/dashboard`, `/dashboard/data` and the page's two assets on `app`.

    `sessions` opens the browser's session on `GET /dashboard?key=` (without it, as with
    --insecure-no-auth, no cookie is set).
    """
    cache: dict[str, Any] = {"at": -math.inf, "body": b""}
    headers = {"content-security-policy": CSP, "referrer-policy": "no-referrer", "x-frame-options": "DENY"}

    @app.get("/dashboard", include_in_schema=False)
    async def page(request: Request) -> Response:
        key = request.query_params.get("key")
        if key:  # drop it from the address bar; a browser holds a session bound to it, never the key
            answer = RedirectResponse("/dashboard", status_code=303, headers=headers)
            if sessions is not None and (session := sessions.open(key)) is not None:
                answer.set_cookie(DASHBOARD_COOKIE, session, path="/dashboard", httponly=True, samesite="strict",
                                  secure=request.url.scheme == "https", max_age=int(sessions.seconds))
            return answer
        return Response(_asset("dashboard.html"), media_type="text/html; charset=utf-8", headers=headers)

    @app.get("/dashboard/data", include_in_schema=False)
    async def data() -> Response:
        if time.monotonic() - cache["at"] > cache_seconds:
            served = holder.current
            result = await asyncio.to_thread(
                dashboard_data, name=name, metrics=metrics, version=served.model.version if served else None,
                log_dir=log_dir, reference=reference, history=history, alerts_file=alerts_file,
                window_seconds=window_seconds, log_keys=log_keys)
            cache["body"] = json.dumps(_clean(result), default=_json_default, separators=(",", ":")).encode()
            cache["at"] = time.monotonic()
        return Response(cache["body"], media_type="application/json", headers=headers)

    @app.get("/dashboard/assets/{asset}", include_in_schema=False)
    async def asset(asset: str) -> Response:
        if asset not in ASSETS:
            return Response(b'{"error":"not found"}', status_code=404, media_type="application/json")
        return Response(_asset(asset), media_type=ASSETS[asset], headers=headers)


def project_sources(project: Any, name: str) -> tuple[Reference, History]:
    """The reference (training profile and contract, per version, cached) and the registry history."""
    loaded: dict[int, Any] = {}

    def reference(version: int) -> Any:
        if version not in loaded:
            loaded[version] = load_reference(project, name, version)
        return loaded[version]

    def history() -> dict[str, Any]:
        registry = project.registry
        versions = [{"version": int(r["version"]), "created_at": r.get("created_at"), "run_id": r.get("run_id"),
                     "primary": ((r.get("metrics") or {}).get("primary") or {}).get("value")}
                    for r in registry.versions(name)]
        aliases = [{k: r.get(k) for k in ("alias", "action", "from_version", "to_version", "reason", "actor", "at")}
                   for r in registry.alias_history(name)]
        return {"versions": versions, "aliases": aliases, "current": registry.aliases(name)}

    return reference, history
