"""Clients for the server attack tests: a server in its own process, and raw-socket slow clients."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers import json_request
from tests.serve.conftest import NAME, Store, free_port, serve_config

PATIENCE = 15.0  # how long a slow client waits before it calls the connection held open


class ProcessServer:
    """`python -m keelml.serve.server` on a free loopback port."""

    def __init__(self, store: Store, tmp_path: Path, *, env: dict[str, str] | None = None,
                 context: Any = None, **overrides: Any) -> None:
        self.port = free_port()
        self.context = context  # an SSL context: the server serves HTTPS (KEEL_TLS_CERT and KEEL_TLS_KEY in `env`)
        config = serve_config(store, version=1, **overrides)
        self.stderr = (tmp_path / f"server-{self.port}.log").open("wb")
        env = {**os.environ, **(env or {}), "KEEL_SERVE_CONFIG": config.to_json(), "KEEL_SERVE_PORT": str(self.port),
               "KEEL_SERVE_HOST": "127.0.0.1"}
        self.process = subprocess.Popen([sys.executable, "-m", "keelml.serve.server"], env=env,
                                        stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.monotonic() + 120
        while True:
            assert self.process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            try:
                if self.request("GET", "/v2/health/ready")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.stderr.close()

    def request(self, method: str, path: str, body: Any = None, *, key: str | None = None,
                headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
        conn = (http.client.HTTPConnection("127.0.0.1", self.port, timeout=10) if self.context is None else
                http.client.HTTPSConnection("localhost", self.port, context=self.context, timeout=10))
        return json_request(conn, method, path, body, key=key, headers=headers, raw=raw)

    def log(self) -> bytes:
        self.stderr.flush()
        return Path(self.stderr.name).read_bytes()

    def metric(self, key: str, line: str) -> float:
        _, text, _ = self.request("GET", "/metrics", key=key)
        found = re.search(rf"^{re.escape(line)} (\S+)$", text.decode(), re.MULTILINE)
        assert found, line
        return float(found.group(1))


def closed_after(sock: socket.socket, plan: list[bytes], every: float, limit: float = PATIENCE) -> tuple[float, bytes]:
    """Send `plan` one item every `every` seconds while reading: (seconds until the server closed, bytes it sent).

    The seconds are `limit` when the connection was still open then.
    """
    started = time.monotonic()
    received = b""
    sock.settimeout(0.05)
    step = 0
    while time.monotonic() - started < limit:
        if step < len(plan) and time.monotonic() - started >= step * every:
            try:
                sock.sendall(plan[step])
            except OSError:
                return time.monotonic() - started, received
            step += 1
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started, received
        if not data:
            return time.monotonic() - started, received
        received += data
    return limit, received


def status_line(received: bytes) -> bytes:
    return received.split(b"\r\n", 1)[0]


def state(sock: socket.socket) -> tuple[bool, bytes]:
    """(still open, what the server sent), without waiting."""
    sock.setblocking(False)
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return True, received
        except OSError:
            return False, received
        if not data:
            return False, received
        received += data


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def one_request(port: int, key: str, rows: list[dict[str, Any]]) -> bytes:
    body = json.dumps({"records": rows}).encode()
    return (f"POST /v1/models/{NAME}/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
