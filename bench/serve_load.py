"""Load driver for bench/serve.py, run as its own process: C keep-alive connections, N requests each.

usage: python serve_load.py PORT PATH BODY_FILE CONCURRENCY REQUESTS [KEY]; prints JSON.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time


def main() -> None:
    port, path, body_file, concurrency, requests = sys.argv[1:6]
    key = sys.argv[6] if len(sys.argv) > 6 else ""
    with open(body_file, "rb") as handle:
        body = handle.read()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
        mine = []
        for _ in range(n):
            started = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    per = int(requests) // int(concurrency)
    worker(min(50, per))  # warm-up
    latencies.clear()
    threads = [threading.Thread(target=worker, args=(per,)) for _ in range(int(concurrency))]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    print(json.dumps({"requests": len(latencies), "errors": errors[0], "rps": len(latencies) / wall,
                      "p50_ms": latencies[len(latencies) // 2] * 1e3,
                      "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3}))


if __name__ == "__main__":
    main()
