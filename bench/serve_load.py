"""Load driver for bench/serve.py, run as its own process (pinned to its own core by the caller).

Closed loop: CONCURRENCY keep-alive connections, each sending the next request as soon as the
previous answer is complete, so CONCURRENCY requests are in flight at all times. One thread,
raw sockets and epoll (no HTTP library, no GIL contention between connections), so the driver
adds little latency of its own. A warm-up (not recorded; 200 requests per connection or 1.5 s)
precedes a run of SECONDS seconds or MAX requests, whichever ends first.

With RATE > 0 the run is an open loop instead: a request is due every 1/RATE s on a pool of
CONCURRENCY connections (a latency SLO's setting: a given load, not as fast as possible); a request
that must wait for a free connection counts from its due time (no coordinated omission).

usage: python serve_load.py PORT PATH BODY_FILE CONCURRENCY SECONDS MAX [KEY] [RATE]; prints JSON.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import socket
import sys
import time

WARMUP_PER_CONNECTION = 200
WARMUP_SECONDS = 1.5


class Conn:
    """One keep-alive connection with its pending response buffer."""

    def __init__(self, port: int, request: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = request
        self.buf = b""
        self.sent_ns = 0

    def send(self, due_ns: int = 0) -> None:
        """Send the request; its latency counts from `due_ns` when given (open loop), else from now."""
        self.buf = b""
        self.sent_ns = due_ns or time.perf_counter_ns()
        self.sock.sendall(self.request)

    def feed(self, data: bytes) -> int | None:
        """Append bytes; the status code once the whole response is in, else None."""
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.buf[:end].split(b"\r\n")
        length = None
        for line in head[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise ConnectionError("response without Content-Length")
        if len(self.buf) < end + 4 + length:
            return None
        return int(head[0].split()[1])


def run(port: int, request: bytes, concurrency: int, seconds: float, limit: int) -> tuple[list[int], int, float]:
    """(latencies in ns, errors, wall seconds) for one closed-loop run."""
    conns = [Conn(port, request) for _ in range(concurrency)]
    selector = selectors.DefaultSelector()
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    latencies: list[int] = []
    errors = 0
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    stopping = False
    for conn in conns:
        conn.send()
    in_flight = concurrency
    while in_flight:
        for key, _ in selector.select():
            conn = key.data
            status = conn.feed(conn.sock.recv(65536))
            if status is None:
                continue
            finished = time.perf_counter_ns()
            latencies.append(finished - conn.sent_ns)
            errors += status != 200
            done += 1
            if not stopping and (done >= limit or time.perf_counter() > deadline):
                stopping = True
            if stopping:
                in_flight -= 1
            else:
                conn.send()
    wall = time.perf_counter() - started
    for conn in conns:
        selector.unregister(conn.sock)
        conn.sock.close()
    return latencies, errors, wall


def run_at_rate(port: int, request: bytes, connections: int, rate: float, seconds: float
                ) -> tuple[list[int], int, float]:
    """Open loop: a request is due every 1/rate s whatever the answers do. A request sent on time
    counts from its sending; one that had to wait for a free connection (the server was still busy
    with all of them) counts from its due time, so a server stall is not hidden."""
    conns = [Conn(port, request) for _ in range(connections)]
    free = list(conns)
    selector = selectors.DefaultSelector()
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    latencies: list[int] = []
    errors = 0
    interval = int(1e9 / rate)
    started = time.perf_counter_ns()
    total = int(rate * seconds)
    backlog: list[int] = []  # due times of requests waiting for a connection
    issued = 0
    while len(latencies) < total:
        now = time.perf_counter_ns()
        while issued < total and started + issued * interval <= now:
            if free and not backlog:
                free.pop(0).send()
            else:
                backlog.append(started + issued * interval)
            issued += 1
        wait = (started + issued * interval - time.perf_counter_ns()) / 1e9 if issued < total else 1.0
        for key, _ in selector.select(max(0.0, wait)):
            conn = key.data
            status = conn.feed(conn.sock.recv(65536))
            if status is None:
                continue
            latencies.append(time.perf_counter_ns() - conn.sent_ns)
            errors += status != 200
            if backlog:
                conn.send(backlog.pop(0))
            else:
                free.append(conn)
    wall = (time.perf_counter_ns() - started) / 1e9
    for conn in conns:
        selector.unregister(conn.sock)
        conn.sock.close()
    return latencies, errors, wall


def quantile(ordered: list[int], q: float) -> float:
    """The q-quantile in milliseconds (nearest rank)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1e6


def main() -> None:
    port, path, body_file, concurrency, seconds, limit = sys.argv[1:7]
    key = sys.argv[7] if len(sys.argv) > 7 else ""
    rate = float(sys.argv[8]) if len(sys.argv) > 8 else 0.0
    with open(body_file, "rb") as handle:
        body = handle.read()
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
            f"Content-Length: {len(body)}"]
    if key:
        head.append(f"Authorization: Bearer {key}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    c = int(concurrency)
    load_start = os.getloadavg()[0]
    warm, _, _ = run(int(port), request, c, WARMUP_SECONDS, WARMUP_PER_CONNECTION * c)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    if rate > 0:
        latencies, errors, wall = run_at_rate(int(port), request, c, rate, float(seconds))
    else:
        latencies, errors, wall = run(int(port), request, c, float(seconds), int(limit))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    latencies.sort()
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    print(json.dumps({
        "requests": len(latencies), "warm_up_requests": len(warm), "errors": errors, "seconds": wall,
        "rps": len(latencies) / wall,
        "p50_ms": quantile(latencies, 0.5), "p90_ms": quantile(latencies, 0.9), "p99_ms": quantile(latencies, 0.99),
        "p999_ms": quantile(latencies, 0.999), "max_ms": latencies[-1] / 1e6,
        "client_cpu_share": cpu / wall, "load1_at_start": load_start,
        "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [],
    }))


if __name__ == "__main__":
    main()
