"""What a local client of the server can do: spoof its address, hold connections, have answers sniffed or
cached, steal the dashboard cookie (issue 13, findings 5-7).

Every server here is its own process, `python -m keelml.serve.server` (how infra validation and
containers start it; `keel serve` runs the same `serve` function in process), so uvicorn runs with
keelml's own options, over real HTTP on loopback. Slow clients are raw sockets. Timeouts are small
and every time bound generous (a slow client closed within 3x its timeout, a real request answered
within 2 s), so a loaded 2-core machine does not make them flake. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.security.http_clients import ProcessServer, closed_after, connect, one_request, state, status_line
from tests.serve.conftest import NAME, Store, free_port, sample_rows, serve_config

from keelml.serve.auth import DASHBOARD_COOKIE, create_api_key, revoke_api_key

HEAD_TIMEOUT, BODY_TIMEOUT, KEEP_ALIVE, CAP = 1.0, 1.5, 1.0, 16
SECURED = {"x-content-type-options": "nosniff", "cache-control": "no-store"}


@pytest.fixture(scope="module")
def own(store: Store, api_key: str, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A private copy of the serving store (with the `api_key`): these servers' audit records stay in it."""
    copy = tmp_path_factory.mktemp("own") / "p"
    shutil.copytree(store.spec.parent, copy, symlinks=True, ignore=shutil.ignore_patterns("predictions"))
    return Store(copy / "pipeline.yaml", copy / ".keel", store.v2_bundle, store.v2_run)


@pytest.fixture(scope="module")
def watched(own: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessServer]:
    """A server with small connection limits (auth on, the prediction log off)."""
    server = ProcessServer(own, tmp_path_factory.mktemp("watched"), serve={
        "header_timeout_seconds": HEAD_TIMEOUT, "body_timeout_seconds": BODY_TIMEOUT,
        "keep_alive_seconds": KEEP_ALIVE, "max_connections": CAP, "log_predictions": False})
    try:
        yield server
    finally:
        server.stop()


def test_forwarded_for_from_loopback_does_not_make_a_new_client(own: Store, tmp_path: Path) -> None:
    """Without keys the rate limit (and the extraction statistics) are kept per client address. uvicorn
    believed X-Forwarded-For from 127.0.0.1, so a local client reset its limit with each new header
    (before: 10 of 10 requests answered 200 under a limit of 3 at once and 1 per second)."""
    limits = {"rate_limit": 1, "rate_burst": 3, "log_predictions": False}
    server = ProcessServer(own, tmp_path, insecure_no_auth=True, serve=limits)
    try:
        statuses = [server.request("GET", f"/v1/models/{NAME}", headers={
            "X-Forwarded-For": f"10.0.{i}.{i}", "Forwarded": f"for=10.1.{i}.{i}", "X-Real-IP": f"10.2.{i}.{i}"})[0]
            for i in range(10)]
    finally:
        server.stop()
    print(f"\nspoofed X-Forwarded-For, default settings: {statuses}")
    assert statuses[:3] == [200, 200, 200] and statuses.count(429) >= 6
    trusting = ProcessServer(own, tmp_path, insecure_no_auth=True, serve={**limits, "trusted_proxies": ["127.0.0.1"]})
    try:  # an operator who names a proxy gets its clients' addresses: one bucket per forwarded client
        proxied = [trusting.request("GET", f"/v1/models/{NAME}", headers={"X-Forwarded-For": f"10.0.{i}.{i}"})[0]
                   for i in range(10)]
        # the proxy appends the peer it saw: the address before it is the client's own claim, not believed
        chained = [trusting.request("GET", f"/v1/models/{NAME}", headers={
            "X-Forwarded-For": f"10.9.{i}.{i}, 10.0.0.99"})[0] for i in range(10)]
    finally:
        trusting.stop()
    print(f"with trusted_proxies [127.0.0.1]: one client each {proxied}; chained behind 10.0.0.99 {chained}")
    assert proxied == [200] * 10
    assert chained[:3] == [200, 200, 200] and chained.count(429) >= 6


@pytest.mark.parametrize("trusted", [["*"], ["localhost"], ["10.0.0.0/33"]])
def test_trusted_proxies_must_be_addresses(trusted: list[str]) -> None:
    from pydantic import ValidationError

    from keelml.spec.serve import ServeSpec

    with pytest.raises(ValidationError, match="not an IP address or network"):
        ServeSpec(trusted_proxies=trusted)
    assert ServeSpec(trusted_proxies=["10.0.0.1/8", "::1"]).trusted_proxies == ["10.0.0.0/8", "::1"]


def test_slow_and_idle_connections_are_closed_while_real_requests_are_answered(
        watched: ProcessServer, store: Store, api_key: str) -> None:
    """Before: idle, slow-header and slow-body connections were all still open after 20 s."""
    rows = sample_rows(store, 1)
    request = one_request(watched.port, api_key, rows)
    head, body = request.split(b"\r\n\r\n", 1)
    slow_body_head = head.replace(f"Content-Length: {len(body)}".encode(), b"Content-Length: 100000") + b"\r\n\r\n"
    too_big_head = head.replace(f"Content-Length: {len(body)}".encode(), b"Content-Length: 2000000") + b"\r\n\r\n"
    clients = {  # name: (plan, seconds between sends, timeout that must close it)
        "idle (nothing sent)": ([], 1.0, HEAD_TIMEOUT),
        "slow header (a byte a second)": ([bytes([b]) for b in head], 1.0, HEAD_TIMEOUT),
        "slow body (a byte a second)": ([slow_body_head] + [b" "] * 100, 1.0, BODY_TIMEOUT),
        "answered 413, then its body a byte a second": ([too_big_head] + [b" "] * 100, 1.0, BODY_TIMEOUT),
        "kept alive, then idle": ([request], 1.0, KEEP_ALIVE),
        "kept alive, then a slow second head": ([request] + [bytes([b]) for b in head], 0.5, HEAD_TIMEOUT),
    }
    results: dict[str, tuple[float, bytes]] = {}

    def run(name: str, plan: list[bytes], every: float) -> None:
        with connect(watched.port) as sock:
            results[name] = closed_after(sock, plan, every)

    threads = [threading.Thread(target=run, args=(name, plan, every)) for name, (plan, every, _) in clients.items()
               for _ in range(2)]
    for thread in threads:
        thread.start()
    latencies, statuses = [], []
    while any(thread.is_alive() for thread in threads):
        started = time.monotonic()
        statuses.append(watched.request("POST", f"/v1/models/{NAME}/predict", {"records": rows}, key=api_key)[0])
        latencies.append(time.monotonic() - started)
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    print(f"\nreal requests while slow clients were connected: {len(statuses)}, slowest {max(latencies):.3f} s")
    for name, (seconds, received) in results.items():
        print(f"{name}: closed after {seconds:.2f} s, answered {status_line(received)!r}")
    assert set(statuses) == {200} and max(latencies) < 2.0
    for name, (_, _, timeout) in clients.items():
        seconds, received = results[name]
        assert seconds < 3 * timeout, (name, seconds)
        if name.startswith("answered 413"):  # answered: closed (keep-alive or body timeout) without another answer
            assert received.startswith(b"HTTP/1.1 413 ") and received.count(b"HTTP/1.1 ") == 1, received
            continue
        if name.startswith("kept alive"):
            assert received.startswith(b"HTTP/1.1 200"), name
            seconds_after = seconds - (0 if name.endswith("idle") else 0.5)
            assert seconds_after >= 0.9 * timeout, (name, seconds)
        else:
            assert seconds >= 0.9 * timeout, (name, seconds)
            assert received.startswith(b"HTTP/1.1 408 "), (name, received)
        if name != "kept alive, then idle":
            assert received.endswith(b'{"error":"request ' + (b"body" if "body" in name else b"head") +
                                     b' not received in time"}'), (name, received)
            answer = received.rsplit(b"HTTP/1.1 ", 1)[1].split(b"\r\n\r\n")[0].lower()
            assert b"x-content-type-options: nosniff" in answer and b"cache-control: no-store" in answer
    closed = {reason: watched.metric(api_key, f'keel_connections_closed_total{{reason="{reason}"}}')
              for reason in ("head", "body")}
    assert closed["head"] >= 6 and closed["body"] >= 2


def test_a_huge_request_head_is_refused(watched: ProcessServer, api_key: str) -> None:
    with connect(watched.port) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        seconds, received = closed_after(sock, [b"X-Pad: " + b"a" * 8192 + b"\r\n"] * 64, 0.0, limit=5.0)
    print(f"\n520 KB of headers: closed after {seconds:.2f} s, answered {status_line(received)!r}")
    assert received.startswith(b"HTTP/1.1 431 ") and seconds < 3 * HEAD_TIMEOUT


def test_connections_beyond_the_cap_are_refused_not_held(watched: ProcessServer, store: Store, api_key: str) -> None:
    """Before: 400 idle connections opened at once were all held open (only the file-descriptor limit capped
    them)."""
    refused_before = watched.metric(api_key, "keel_connections_refused_total")
    socks = [connect(watched.port) for _ in range(3 * CAP)]
    try:
        time.sleep(0.3)  # less than the head timeout: the ones held are still open
        answers = [state(sock) for sock in socks]
        held = sum(1 for is_open, _ in answers if is_open)
        refused = [received for is_open, received in answers if not is_open]
        print(f"\n{len(socks)} idle connections, cap {CAP}: {held} held, {len(refused)} refused")
        assert held <= CAP and len(refused) >= 2 * CAP
        assert all(r == b"" or r.startswith(b"HTTP/1.1 503 ") for r in refused) and any(refused)
    finally:
        for sock in socks:
            sock.close()
    time.sleep(3 * HEAD_TIMEOUT)  # the held ones timed out too: real requests get through again
    status, _, _ = watched.request("POST", f"/v1/models/{NAME}/predict", {"records": sample_rows(store, 1)},
                                   key=api_key)
    assert status == 200
    assert watched.metric(api_key, "keel_connections_refused_total") - refused_before >= 2 * CAP
    assert watched.metric(api_key, "keel_connections_open") <= 2


def test_a_response_the_client_does_not_read_is_dropped(watched: ProcessServer, api_key: str) -> None:
    """A client that asks and never reads would hold its connection, and the request answering it, forever."""
    before = watched.metric(api_key, 'keel_connections_closed_total{reason="write"}')
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the server's buffers fill
    sock.connect(("127.0.0.1", watched.port))
    sock.settimeout(5)
    started = time.monotonic()
    try:
        ask = f"GET /dashboard/assets/dashboard.js HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api_key}\r\n\r\n"
        with contextlib.suppress(TimeoutError):
            sock.sendall(ask.encode() * 2000)  # 2,000 pipelined requests for 14 MB of answers, never read
        while watched.metric(api_key, 'keel_connections_closed_total{reason="write"}') == before:
            assert time.monotonic() - started < 3 * BODY_TIMEOUT + 10, "the unread response was not dropped"
            time.sleep(0.25)
    finally:
        sock.close()
    print(f"\nunread answers: connection dropped within {time.monotonic() - started:.2f} s")
    assert b"Exception in ASGI application" not in watched.log()


def test_every_response_says_nosniff_and_no_store(watched: ProcessServer, store: Store, api_key: str) -> None:
    rows = sample_rows(store, 1)
    answers = {
        "predict (fast path)": watched.request("POST", f"/v1/models/{NAME}/predict", {"records": rows}, key=api_key),
        "predict 422": watched.request("POST", f"/v1/models/{NAME}/predict", raw=b"{", key=api_key),
        "guard 401": watched.request("GET", f"/v1/models/{NAME}"),
        "guard 415": watched.request("POST", f"/v1/models/{NAME}/predict", raw=b"x", key=api_key,
                                     headers={"Content-Type": "text/plain"}),
        "guard 413": watched.request("POST", f"/v1/models/{NAME}/predict", raw=b" " * 1_100_000, key=api_key),
        "model info": watched.request("GET", f"/v1/models/{NAME}", key=api_key),
        "feedback 422": watched.request("POST", f"/v1/models/{NAME}/feedback", {}, key=api_key),
        "v2 infer 4xx": watched.request("POST", f"/v2/models/{NAME}/infer", {"inputs": []}, key=api_key),
        "v2 metadata": watched.request("GET", f"/v2/models/{NAME}", key=api_key),
        "health live": watched.request("GET", "/v2/health/live"),
        "health ready": watched.request("GET", "/v2/health/ready"),
        "metrics": watched.request("GET", "/metrics", key=api_key),
        "openapi": watched.request("GET", "/openapi.json", key=api_key),
        "dashboard": watched.request("GET", "/dashboard", key=api_key),
        "dashboard data": watched.request("GET", "/dashboard/data", key=api_key),
        "dashboard asset": watched.request("GET", "/dashboard/assets/dashboard.js", key=api_key),
        "dashboard asset 404": watched.request("GET", "/dashboard/assets/nope.js", key=api_key),
        "unknown route 404": watched.request("GET", "/nowhere", key=api_key),
        "wrong method 405": watched.request("DELETE", "/metrics", key=api_key),
    }
    for name, (status, _, headers) in answers.items():
        assert {k: headers.get(k) for k in SECURED} == SECURED, (name, status, headers)
    assert answers["predict (fast path)"][0] == 200 and answers["guard 413"][0] == 413
    with connect(watched.port) as sock:  # not even HTTP: uvicorn's 400, written by keelml's protocol
        _, received = closed_after(sock, [b"\x16\x03\x01 not http\r\n\r\n"], 0.0, limit=5.0)
    head = received.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 400 ") and b"x-content-type-options: nosniff" in head, received


def _cookie(headers: dict[str, str]) -> str:
    return headers["set-cookie"]


def test_the_dashboard_cookie_is_a_session_bound_to_the_key(watched: ProcessServer, own: Store) -> None:
    """Before: the cookie was the raw API key, for 8 hours, and a stolen one predicted with it too."""
    project = own.open()
    try:
        key = create_api_key(project.metadata, "dashboard-session")
    finally:
        project.close()
    deadline = time.monotonic() + 10
    while watched.request("GET", f"/v1/models/{NAME}", key=key)[0] != 200:  # the server reloads keys every poll
        assert time.monotonic() < deadline
        time.sleep(0.1)
    status, _, headers = watched.request("GET", f"/dashboard?key={key}")
    assert status == 303 and headers["location"] == "/dashboard"
    cookie = _cookie(headers)
    value = cookie.split(";")[0].split("=", 1)[1]
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    print(f"\nSet-Cookie: {DASHBOARD_COOKIE}=<{len(value)} chars>; {'; '.join(attributes.values())}")
    assert key not in value and key.split("_", 2)[2] not in value
    assert {"httponly", "samesite", "path", "max-age"} <= set(attributes) and "secure" not in attributes  # plain HTTP
    assert attributes["samesite"].lower() == "samesite=strict" and attributes["path"].lower() == "path=/dashboard"
    assert int(attributes["max-age"].split("=")[1]) <= 3600
    with_session = {"Cookie": f"{DASHBOARD_COOKIE}={value}"}
    assert watched.request("GET", "/dashboard/data", headers=with_session)[0] == 200
    assert watched.request("GET", "/dashboard", headers=with_session)[0] == 200
    for method, path in [("GET", f"/v1/models/{NAME}"), ("GET", "/metrics"), ("POST", f"/v1/models/{NAME}/predict")]:
        assert watched.request(method, path, {"records": []}, headers=with_session)[0] == 401, path
    # the raw key as a cookie (what the cookie used to hold) opens nothing
    assert watched.request("GET", "/dashboard/data", headers={"Cookie": f"{DASHBOARD_COOKIE}={key}"})[0] == 401
    forged = value.rsplit(".", 1)[0] + "." + "0" * 64
    assert watched.request("GET", "/dashboard/data", headers={"Cookie": f"{DASHBOARD_COOKIE}={forged}"})[0] == 401
    project = own.open()
    try:
        revoke_api_key(project.metadata, "dashboard-session")
    finally:
        project.close()
    deadline = time.monotonic() + 10
    while watched.request("GET", "/dashboard/data", headers=with_session)[0] != 401:  # within a poll or so
        assert time.monotonic() < deadline, "the session outlived its key"
        time.sleep(0.1)


def test_the_dashboard_cookie_is_secure_over_tls(own: Store, api_key: str, tmp_path: Path) -> None:
    import ssl

    from tests.serve.test_serve_tools import _self_signed

    cert, key_file = _self_signed(tmp_path)
    server = ProcessServer(own, tmp_path, env={"KEEL_TLS_CERT": cert, "KEEL_TLS_KEY": key_file},
                           context=ssl.create_default_context(cafile=cert), serve={"log_predictions": False})
    try:
        status, _, headers = server.request("GET", f"/dashboard?key={api_key}")
    finally:
        server.stop()
    cookie = _cookie(headers).lower()
    assert status == 303 and "; secure" in cookie and "httponly" in cookie and api_key.lower() not in cookie


def test_without_httptools_the_h11_protocol_has_the_same_limits(own: Store, api_key: str) -> None:
    """`pip install keelml` without the serve extra has no httptools: uvicorn's h11 protocol, watched the same."""
    import uvicorn

    from keelml.serve.server import PROTOCOLS, create_app, uvicorn_options
    from keelml.spec.serve import ServeSpec

    settings = {"header_timeout_seconds": HEAD_TIMEOUT, "body_timeout_seconds": BODY_TIMEOUT,
                "keep_alive_seconds": KEEP_ALIVE, "max_connections": 4, "log_predictions": False}
    app = create_app(serve_config(own, version=1, serve=settings))
    port = free_port()
    config = uvicorn.Config(app, **{**uvicorn_options(ServeSpec(**settings), port=port), "http": PROTOCOLS[1]})
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.02)
        rows = sample_rows(own, 1)
        head, _ = one_request(port, api_key, rows).split(b"\r\n\r\n", 1)
        slow_body = head.replace(b"Content-Length:", b"X-Was:") + b"\r\nContent-Length: 100000\r\n\r\n"
        slow = [("idle", [], HEAD_TIMEOUT), ("slow header", [bytes([b]) for b in head], HEAD_TIMEOUT),
                ("slow body", [slow_body] + [b" "] * 100, BODY_TIMEOUT)]
        for name, plan, timeout in slow:
            with connect(port) as sock:
                seconds, received = closed_after(sock, plan, 1.0)
            print(f"\nh11, {name}: closed after {seconds:.2f} s, answered {status_line(received)!r}")
            assert 0.9 * timeout <= seconds < 3 * timeout and received.startswith(b"HTTP/1.1 408 "), (name, received)
        socks = [connect(port) for _ in range(12)]
        time.sleep(0.3)
        states = [state(sock) for sock in socks]
        for sock in socks:
            sock.close()
        assert sum(is_open for is_open, _ in states) <= 4
        assert all(received.startswith(b"HTTP/1.1 503 ") for is_open, received in states if not is_open)
        assert config.http_protocol_class.__name__ == "WatchedH11"
    finally:
        server.should_exit = True
        thread.join(20)


def test_worker_processes_have_the_same_limits(own: Store, api_key: str, tmp_path: Path) -> None:
    """`--workers N`: uvicorn imports keelml's protocol by name in each worker, which finds its limits on the
    guard it built from the environment."""
    server = ProcessServer(own, tmp_path, env={"KEEL_SERVE_WORKERS": "2"}, insecure_no_auth=True, serve={
        "header_timeout_seconds": HEAD_TIMEOUT, "rate_limit": 1, "rate_burst": 3, "log_predictions": False})
    try:
        with connect(server.port) as sock:
            seconds, received = closed_after(sock, [], 1.0)
        statuses = [server.request("GET", f"/v1/models/{NAME}", headers={"X-Forwarded-For": f"10.0.{i}.{i}"})[0]
                    for i in range(12)]
    finally:
        server.stop()
    print(f"\n2 workers: idle connection closed after {seconds:.2f} s; forged addresses: {statuses}")
    assert seconds < 3 * HEAD_TIMEOUT and received.startswith(b"HTTP/1.1 408 ")
    assert statuses.count(429) >= 4  # two workers, a burst of 3 each: at most 6 answered
