"""Attacks on the prediction server: no key, wrong key, traversal in the URL, bad bodies, floods, a canary."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import fastapi.routing
import pytest
from tests.serve.conftest import NAME, Store, ThreadServer, sample_rows, serve_config

from keelml.serve.server import create_app

CANARY = "canary-7f3e9d1c5b2a4e6f8091a2b3c4d5e6f7"
OPEN = {"/v2/health/live", "/v2/health/ready"}
# every route the application has, with the method it answers (test_routes_are_all_listed keeps this complete)
ROUTES = [
    ("POST", "/v1/models/{name}/predict"),
    ("POST", "/v1/models/{name}/feedback"),
    ("GET", "/v1/models/{name}"),
    ("GET", "/v2/models/{name}"),
    ("POST", "/v2/models/{name}/infer"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/dashboard"),
    ("GET", "/dashboard/data"),
    ("GET", "/dashboard/assets/{asset}"),
]


@pytest.fixture(scope="module")
def server(store: Store, api_key: str) -> Iterator[ThreadServer]:
    os.environ["SECRET_CANARY"] = CANARY
    try:
        with ThreadServer(create_app(serve_config(store))) as srv:
            yield srv
    finally:
        os.environ.pop("SECRET_CANARY", None)


def _app_routes(store: Store) -> set[tuple[str, str]]:
    guard = create_app(serve_config(store, serve={"log_predictions": False}))
    # FastAPI 0.137+ keeps an included router as one node of app.routes; iter_route_contexts (0.137.2+)
    # lists the routes behind it (older versions copy them into app.routes)
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    found = set()
    for route in flatten(guard.app.routes) if flatten is not None else guard.app.routes:
        for method in getattr(route, "methods", None) or []:
            if method not in ("HEAD", "OPTIONS"):
                found.add((method, route.path))
    return found


def test_routes_are_all_listed(store: Store) -> None:
    """The attack list below covers every route: a new endpoint must be added to it (and be guarded)."""
    routes = _app_routes(store)
    assert routes - {("GET", p) for p in OPEN} == set(ROUTES)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_endpoint_refuses_requests_without_a_key(server: ThreadServer, method: str, path: str) -> None:
    status, body, headers = server.request(method, path.format(name=NAME, asset="dashboard.js"), {"records": []})
    assert status == 401 and body == {"error": "missing or invalid API key"}
    assert headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_endpoint_refuses_a_wrong_key(server: ThreadServer, api_key: str, method: str, path: str) -> None:
    forged = api_key[:-4] + ("aaaa" if not api_key.endswith("aaaa") else "bbbb")
    status, _, _ = server.request(method, path.format(name=NAME, asset="dashboard.js"), {"records": []}, key=forged)
    assert status == 401
    status, _, _ = server.request(method, path.format(name=NAME, asset="dashboard.js"), {"records": []},
                                  headers={"Authorization": f"Basic {api_key}"})
    assert status == 401


@pytest.mark.parametrize("path", sorted(OPEN))
def test_only_health_endpoints_are_open(server: ThreadServer, path: str) -> None:
    status, body, _ = server.request("GET", path)
    assert status == 200 and set(body) <= {"live", "ready"}


@pytest.mark.parametrize("name", ["..%2f", "%2e%2e%2f", "..%2f..%2fetc%2fpasswd", "%2e%2e", "..%5c..%5c",
                                  "%c0%ae%c0%ae%2f", "adult-income%00", "\u2025", "..\\..\\keys"])
def test_traversal_in_the_url_path_finds_no_model(server: ThreadServer, api_key: str, name: str) -> None:
    from urllib.parse import quote

    path = f"/v1/models/{quote(name, safe='%')}/predict"
    status, body, _ = server.request("POST", path, {"records": sample_rows_cache(server)}, key=api_key)
    assert status in (404, 422) and isinstance(body, dict) and ("error" in body or "detail" in body)
    status, body, _ = server.request("GET", f"/v1/models/{quote(name, safe='%')}", key=api_key)
    assert status == 404


_rows: dict[int, list[dict[str, object]]] = {}


def sample_rows_cache(server: ThreadServer) -> list[dict[str, object]]:
    return _rows.get(server.port, [])


@pytest.fixture(scope="module", autouse=True)
def _rows_for(server: ThreadServer, store: Store) -> None:
    _rows[server.port] = sample_rows(store, 3)


def test_oversized_body_is_refused_before_reading(server: ThreadServer, api_key: str) -> None:
    status, body, _ = server.request("POST", f"/v1/models/{NAME}/predict", raw=b"{" + b" " * 1_100_000 + b"}",
                                     key=api_key)
    assert status == 413 and "larger" in body["error"]


@pytest.mark.parametrize("raw", [b"{", b"[]", b'{"records": "x"}', b'{"records": [{"age": "NaN"}]}',
                                 b"\xff\xfe\x00", b'{"records": [' + b"[" * 5000 + b"]" * 5000 + b"]}"])
def test_malformed_bodies_are_422_not_500(server: ThreadServer, api_key: str, raw: bytes) -> None:
    status, body, _ = server.request("POST", f"/v1/models/{NAME}/predict", raw=raw, key=api_key)
    assert status == 422 and body["error"] == "invalid request"


def test_wrong_content_type_is_refused(server: ThreadServer, api_key: str) -> None:
    status, _, _ = server.request("POST", f"/v1/models/{NAME}/predict", raw=b"records=1", key=api_key,
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415


def test_request_flood_gets_429(store: Store, api_key: str) -> None:
    app = create_app(serve_config(store, serve={"rate_limit": 1, "rate_burst": 3, "log_predictions": False}))
    with ThreadServer(app) as srv:
        statuses = [srv.request("GET", f"/v1/models/{NAME}", key=api_key)[0] for _ in range(10)]
        assert statuses[:3] == [200, 200, 200] and statuses.count(429) >= 6
        assert srv.request("GET", "/v2/health/live")[0] == 200  # health stays open for probes


def test_secret_canary_never_leaks(server: ThreadServer, store: Store, api_key: str,
                                   caplog: pytest.LogCaptureFixture) -> None:
    """SECRET_CANARY is in the server's environment; no answer, metric, log or stored file holds it."""
    caplog.set_level(logging.DEBUG)
    bodies = []
    for method, path, raw in [("POST", f"/v1/models/{NAME}/predict", json.dumps({"records": [{"x": 1}]}).encode()),
                              ("POST", f"/v1/models/{NAME}/predict", b"{"),
                              ("POST", "/v1/models/other/predict", b"{}"),
                              ("POST", f"/v2/models/{NAME}/infer", b'{"inputs": []}'),
                              ("GET", "/metrics", None), ("GET", f"/v1/models/{NAME}", None),
                              ("GET", "/openapi.json", None)]:
        bodies.append(str(server.request(method, path, raw=raw, key=api_key)[1]))
    status, _, _ = server.request("POST", f"/v1/models/{NAME}/predict", {"records": sample_rows(store, 2)},
                                  key=api_key)
    assert status == 200
    for text in bodies:
        assert CANARY not in text
    assert CANARY not in caplog.text
    for path in Path(store.root).rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
