"""End to end over real loopback HTTP: a served Adult model, shifted traffic, feedback, the dashboard
in Debian's Chromium, then `keel monitor` firing, retraining, gating and auditing.

The server is a real uvicorn in a subprocess (`python -m keelml.serve.server`); its prediction log
is the default `<store>/predictions/<name>`, which is where `keel monitor` reads.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from tests.helpers import ADULT, small_adult_project

from keelml.pipeline import run
from keelml.registry.project import open_store
from keelml.serve.auth import create_api_key
from keelml.serve.server import CONFIG_ENV, ServeConfig

NAME = "adult-income"
CHROMIUM = Path("/usr/bin/chromium")
KEEL = str(Path(sys.executable).parent / "keel")
COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
           "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", "income"]
INTEGERS = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
MONITOR = """
monitor:
  window: 1h
  actions: [{type: log}, {type: retrain, max_regression: 0.05}]
serve:
  poll_seconds: 0.5
  rate_limit: 100000
  rate_burst: 100000
  log_roll_seconds: 1
"""


@dataclass
class Served:
    spec: Path
    root: Path
    port: int
    key: str
    process: subprocess.Popen[bytes]
    request_ids: list[tuple[str, int, str]]  # (request id, row, true label)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Authorization": f"Bearer {self.key}",
                                                       "Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        conn.close()
        return response.status, json.loads(payload) if payload.startswith((b"{", b"[")) else payload

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: uvicorn shuts down and the log's open files are completed
            self.process.wait(30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shifted_rows(n: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Adult test rows drawn from a shifted distribution: older people, all self-employed (incorporated)."""
    raw = pl.read_csv(ADULT / "adult.test", has_header=False, new_columns=COLUMNS, skip_rows=1, n_rows=n,
                      null_values=[" ?"]).with_columns(pl.col(pl.String).str.strip_chars())
    labels = raw["income"].str.replace(r"\.$", "").to_list()
    raw = raw.drop("income").with_columns((pl.col("age") + 20).clip(upper_bound=90),
                                          pl.lit("Self-emp-inc").alias("workclass"))
    raw = raw.with_columns(pl.col(c).cast(pl.Int64) for c in INTEGERS)
    return raw.to_dicts(), labels


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("e2e")
    spec = small_adult_project(directory, train_rows=1500, test_rows=600, cv_folds=2, bootstrap_rounds=20,
                               extra=MONITOR)
    text = spec.read_text().replace("family: hist_gradient_boosting", "family: logistic_regression")
    spec.write_text(text[:text.index("# Model tests")] + text[text.index("store:"):])  # fast: no model tests
    assert run(spec).registration is not None
    root = directory / ".keel"
    project = open_store(root)
    try:
        key = create_api_key(project.metadata, "e2e")
        project.registry.promote(NAME, 1, alias="production", reason="first version")
    finally:
        project.close()
    port = _free_port()
    serve = {"poll_seconds": 0.5, "rate_limit": 100000, "rate_burst": 100000, "log_roll_seconds": 1}
    config = ServeConfig(store_root=str(root), model=NAME, serve=serve)
    env = {**os.environ, CONFIG_ENV: config.to_json(), "KEEL_SERVE_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", "keelml.serve.server"], env=env, cwd=directory,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    server = Served(spec, root, port, key, process, [])
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else "server died"
            try:
                if server.request("GET", "/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        rows, labels = shifted_rows(600)
        for start in range(0, len(rows), 20):  # 30 requests of 20 rows, a little apart in time
            batch = list(zip(rows[start:start + 20], labels[start:start + 20], strict=True))
            status, answer = server.request("POST", f"/v1/models/{NAME}/predict", {"records": [r for r, _ in batch]})
            if status == 422:  # categories the contract never saw (rare countries): drop those rows
                bad = {e["loc"][1] for e in answer["detail"]}
                batch = [b for i, b in enumerate(batch) if i not in bad]
                status, answer = server.request("POST", f"/v1/models/{NAME}/predict",
                                                {"records": [r for r, _ in batch]})
            assert status == 200, answer
            server.request_ids += [(answer["request_id"], i, label) for i, (_, label) in enumerate(batch)]
            time.sleep(0.02)
        log_dir = root / "predictions" / NAME
        deadline = time.monotonic() + 20
        while not list(log_dir.glob("predictions-*.parquet.sealed")):  # rolled after ~1 s: complete files only
            assert time.monotonic() < deadline, "the prediction log was not written"
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


def test_dashboard_renders_in_chromium(served: Served, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright

    base = f"http://127.0.0.1:{served.port}"
    status, _ = Served(served.spec, served.root, served.port, "keel_0000000000000000_wrong", served.process,
                       []).request("GET", "/dashboard/data")
    assert status == 401
    errors: list[str] = []
    failed: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.goto(f"{base}/dashboard?key={served.key}")
            assert page.url == f"{base}/dashboard"  # the key left the address bar for an HttpOnly cookie
            [cookie] = page.context.cookies()
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard"
            page.wait_for_selector("#drift svg circle.point", timeout=30_000)
            traffic = page.locator("#traffic svg circle.point").count()
            drift = page.locator("#drift svg circle.point").count()
            latency = page.locator("#latency svg circle.point").count()
            assert traffic > 0 and drift > 0 and latency > 0
            assert page.locator("#drift svg polyline").count() >= 10  # one line per feature
            legend = page.locator("#drift-legend").inner_text()
            assert "age (drift)" in legend and "workclass (drift)" in legend
            assert "fired" in page.locator("#rules").inner_text()
            assert page.locator("#versions tr").count() == 2  # header + version 1
            assert "production" in page.locator("#aliases").inner_text()
            assert page.locator("#model").inner_text() == f"{NAME} v1"
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert errors == [] and failed == []
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    status, _ = Served(served.spec, served.root, served.port, "", served.process, []).request(
        "POST", f"/v1/models/{NAME}/predict", {"records": []})
    assert status == 401  # no key, and the dashboard cookie never authorises a prediction


def test_shifted_traffic_fires_retrains_gates_and_audits(served: Served) -> None:
    for request_id, row, label in served.request_ids[:300]:
        status, answer = served.request("POST", f"/v1/models/{NAME}/feedback",
                                        {"request_id": request_id, "row": row, "label": label})
        assert status == 202, answer
    served.stop()  # completes the log's open files
    rows = (ADULT / "adult.data").read_text().splitlines()  # newer data arrives: 300 more training rows
    (served.spec.parent / "adult.data").write_text("\n".join(rows[:1800]) + "\n")
    done = subprocess.run([KEEL, "monitor", NAME, "-f", str(served.spec),
                           "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["log"] == str(served.root / "predictions" / NAME)
    assert report["rows"] == len(served.request_ids) > 550 and {"age", "workclass"} <= set(report["drift"]["drifted"])
    assert report["performance"]["available"] and report["performance"]["n_labelled"] == 300
    assert [r["rule"] for r in report["fired"]] == ["feature_drift"]
    log_action, retrain = report["actions"]
    assert log_action["status"] == "done"
    assert retrain["gate"]["passed"] and retrain["candidate"]["version"] == 2
    assert retrain["status"] == "promoted" and retrain["comparison"]["passed"]

    audit = subprocess.run([KEEL, "audit", "-f", str(served.spec), "--json"],
                           capture_output=True, text=True, timeout=60, check=True)
    records = json.loads(audit.stdout)
    records = records["records"] if isinstance(records, dict) else records
    events = [(r.get("event"), next((d[k] for d in [r.get("details") or {}] for k in ("version", "to_version", "to")
                                     if d.get(k) is not None), None)) for r in records]
    kinds = [e for e, _ in events]
    assert kinds.count("monitor_alert") == 1 and kinds.count("monitor_action") == 2, kinds
    after = events[kinds.index("monitor_alert"):]
    assert ("registration", 2) in after and ("promotion", 2) in after, after
