"""keelml's server against a plain FastAPI + scikit-learn app serving the same Adult model.

Trains the Adult example (2-fold CV) in a temporary store, starts `keel serve` (API key, contract
validation, prediction log: all on) and the baseline (bench/serve_baseline.py), each in its own
process on loopback with one OpenMP thread, drives both with the same single-row requests from a
separate process (bench/serve_load.py), and prints throughput, p50/p99 and the ratio, plus the
in-process single-row latency of keelml's request path. Targets: >= 3x the baseline's throughput,
p99 <= 2 ms, in-process <= 100 us median. The rate limit is raised for the run (the default, 1,000
requests/s per key, would cap the measurement).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "1000"))
NAME = "adult-income"


def wait_ready(port: int, proc: subprocess.Popen[bytes], path: str = "/v2/health/ready") -> None:
    import http.client

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            if status in (200, 405):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not start")


def load(port: int, path: str, body: Path, concurrency: int, key: str = "") -> dict[str, float]:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "serve_load.py"), str(port), path, str(body),
                          str(concurrency), str(REQUESTS), key], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def in_process_us(project: object, record: dict[str, object]) -> tuple[float, float]:
    """Median microseconds: (validate + predict + answer, predict only) for one row."""
    from keelml.serve.app import AppSettings, answers
    from keelml.serve.engine import load_registered
    from keelml.serve.schema import request_models
    from keelml.serve.swap import Served

    model = load_registered(project, NAME, 1)
    served = Served(model, request_models(model.contract, max_rows=1000, title=NAME))
    body = json.dumps({"records": [record]}).encode()
    settings = AppSettings(3, 1, 1000)
    attrs = served.schema.attributes

    def full() -> None:
        payload = served.schema.predict.model_validate_json(body)
        rows = [tuple(getattr(r, a) for a in attrs) for r in payload.records]  # type: ignore[attr-defined]
        answers(served, model.runner.rows(rows), settings)

    row = [tuple(record[c] for c in model.columns)]

    def predict_only() -> None:
        model.runner.rows(row)

    def median(fn: object) -> float:
        for _ in range(300):
            fn()  # type: ignore[operator]
        times = []
        for _ in range(3000):
            started = time.perf_counter()
            fn()  # type: ignore[operator]
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e6

    return median(full), median(predict_only)


def main() -> int:
    os.environ["OMP_NUM_THREADS"] = "1"
    from tests.helpers import small_adult_project

    from keelml.pipeline import run
    from keelml.project import open_store
    from keelml.serve.auth import create_api_key
    from keelml.serve.infra import free_port

    work = Path(tempfile.mkdtemp(prefix="keel-bench-serve-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        spec = small_adult_project(work, train_rows=12000, test_rows=4000, cv_folds=2, bootstrap_rounds=0,
                                   extra="serve:\n  rate_limit: 1000000\n  rate_burst: 1000000\n")
        started = time.perf_counter()
        run(spec)
        print(f"trained the Adult model in {time.perf_counter() - started:.1f}s")
        project = open_store(work / ".keel")
        key = create_api_key(project.metadata, "bench")
        _, bundle = project.registry.bundle(NAME, 1)
        components = {k: v["sha256"] for k, v in bundle["manifest"]["components"].items()}
        model_file = work / "model.skops"
        model_file.write_bytes(project.artifacts.get(components["model"]))
        from keelml.serve.engine import load_registered
        from keelml.serve.recorded import recorded_sample

        model = load_registered(project, NAME, 1)
        sample = recorded_sample(project.artifacts.get, model.components, model.columns, model.task, 1)
        record = dict(zip(model.columns, sample.rows[0], strict=True))
        body = work / "body.json"
        body.write_text(json.dumps({"records": [record]}))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
        keel_port, base_port = free_port(), free_port()
        procs.append(subprocess.Popen([sys.executable, "-m", "keelml", "serve", NAME, "-f", str(spec),
                                       "--port", str(keel_port)], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE))
        procs.append(subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.serve_baseline:app", "--port",
                                       str(base_port), "--log-level", "warning", "--no-access-log"],
                                      env={**env, "BASELINE_MODEL": str(model_file), "PYTHONPATH": str(ROOT)},
                                      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        wait_ready(keel_port, procs[0])
        wait_ready(base_port, procs[1], "/predict")
        results = {}
        for concurrency in (1, 8):
            results[("keelml", concurrency)] = load(keel_port, f"/v1/models/{NAME}/predict", body, concurrency, key)
            results[("baseline", concurrency)] = load(base_port, "/predict", body, concurrency)
        full_us, predict_us = in_process_us(project, record)
        project.close()
        load1, load5, _ = os.getloadavg()
        print(f"single-row requests, {REQUESTS} per run, load from a separate process, keep-alive "
              f"(machine load average {load1:.1f} / {load5:.1f} on {os.cpu_count()} CPUs)")
        for concurrency in (1, 8):
            k, b = results[("keelml", concurrency)], results[("baseline", concurrency)]
            print(f"concurrency {concurrency}:")
            for label, r in (("keelml  ", k), ("baseline", b)):
                print(f"  {label} {r['rps']:8.0f} req/s   p50 {r['p50_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms"
                      f"   errors {r['errors']}")
            print(f"  throughput ratio keelml/baseline: {k['rps'] / b['rps']:.1f}x  (target >= 3x; "
                  f"keelml p99 target <= 2 ms)")
        print(f"in-process single row: {full_us:.0f} us median with validation and answer formatting, "
              f"{predict_us:.0f} us model only ({model.engine}; target <= 100 us)")
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
