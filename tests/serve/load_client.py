"""A separate load-generating process: C threads, each sending N keep-alive requests; prints a JSON summary.

The summary counts answers per version and, per thread, the versions that answered its requests in
order with repeats collapsed (e.g. ["1", "2", "1"]), so a test can check them against alias changes.

usage: python load_client.py PORT KEY CONCURRENCY REQUESTS_PER_THREAD BODY_FILE
"""

from __future__ import annotations

import collections
import http.client
import json
import sys
import threading


def main() -> None:
    port, key, concurrency, per_thread, body_file = sys.argv[1:6]
    with open(body_file, "rb") as handle:
        body = handle.read()
    with open(body_file + ".path") as handle:
        path = json.loads(handle.read())
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    versions: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    sequences: list[list[str]] = []
    lock = threading.Lock()

    def worker() -> None:
        seen: list[str] = []
        conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
        for _ in range(int(per_thread)):
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                data = json.loads(response.read())
                version = str(data.get("model_version")) if response.status == 200 else None
                header = response.getheader("x-model-version")
                named = response.status == 200 and version not in (None, "None") and header == version
                with lock:
                    if not named:
                        failures.append(f"{response.status} (X-Model-Version {header}): {str(data)[:200]}")
                    else:
                        versions[str(version)] += 1
                if named and (not seen or seen[-1] != version):
                    seen.append(str(version))
            except Exception as exc:
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
        conn.close()
        with lock:
            sequences.append(seen)

    threads = [threading.Thread(target=worker) for _ in range(int(concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"ok": sum(versions.values()), "failed": len(failures), "failures": failures[:5],
                      "versions": dict(versions), "sequences": sequences}))


if __name__ == "__main__":
    main()
