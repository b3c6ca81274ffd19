"""Infra validation: serve a version in a fresh process and check its answers over real HTTP.

Before an alias moves, `infra_validate` starts `python -m keelml.serve.server` for that exact
version on a free loopback port (with a one-time API key, the prediction log off), waits for it to
be ready, sends held-out rows through `POST /v1/models/{name}/predict`, and compares the answers
with the predictions recorded at evaluation. A mismatch, a failed start or any HTTP error fails
the validation with the reason (what TFX calls InfraValidator). The process is always stopped.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keelml.data.contract import Contract
from keelml.registry.project import shared_artifacts
from keelml.serve.auth import PREFIX, hash_key
from keelml.serve.recorded import RecordedSample, compare, recorded_sample
from keelml.serve.server import CONFIG_ENV, ServeConfig

START_TIMEOUT = 120.0
BATCH = 500


@dataclass
class InfraReport:
    """The outcome of one infra validation."""

    name: str
    version: int
    passed: bool
    reason: str
    rows: int = 0
    mismatches: int = 0
    max_abs_diff: float = 0.0
    engine: str = ""
    startup_seconds: float = 0.0
    seconds: float = 0.0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None,
             headers: dict[str, str]) -> tuple[int, Any]:
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data.decode("utf-8", "replace")


def _wait_ready(proc: subprocess.Popen[bytes], port: int, deadline: float) -> str | None:
    """None when the server answers ready, else why not."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"the server process exited with code {proc.returncode} before it was ready"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            status, _ = _request(conn, "GET", "/v2/health/ready", None, {})
            conn.close()
            if status == 200:
                return None
        except OSError:
            pass
        time.sleep(0.1)
    return f"the server was not ready within {START_TIMEOUT:.0f} s"


def _stderr_tail(proc: subprocess.Popen[bytes]) -> str:
    if proc.stderr is None:
        return ""
    text = proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
    return " | ".join(text[-3:])


def infra_validate(project: Any, name: str, version: int, sample: int | None = 200, *,
                   serve: dict[str, Any] | None = None, seed: int = 0, prefer_onnx: bool = True) -> InfraReport:
    """Serve `name` version `version` in a fresh process and compare `sample` held-out answers (None: all)."""
    started = time.monotonic()
    _, bundle = project.registry.bundle(name, version)  # verifies before anything is started
    components = {k: str(v["sha256"]) for k, v in bundle["manifest"]["components"].items()}
    contract = Contract.model_validate(json.loads(project.artifacts.get(components["contract"])))
    columns = [c.name for c in contract.features]
    report = InfraReport(name, version, passed=False, reason="")
    try:
        recorded = recorded_sample(project.artifacts.get, components, columns, contract.task, sample, seed)
    except Exception as exc:
        report.reason = getattr(exc, "what", None) or f"{type(exc).__name__}: {exc}"
        return report
    key = f"{PREFIX}_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
    n_labels = max(1, len(recorded.labels))
    settings = {**(serve or {}), "precision": 6, "top_k": n_labels, "log_predictions": False,
                "poll_seconds": 3600.0, "rate_limit": 1e9, "rate_burst": 1_000_000}
    settings["max_rows"] = min(int(settings.get("max_rows", BATCH)), BATCH)
    settings["max_body_bytes"] = max(int(settings.get("max_body_bytes", 0)), 16 * 1024 * 1024)
    config = ServeConfig(store_root=str(project.root), model=name, version=version,
                         metadata_url=project.metadata.url, serve=settings,
                         artifacts_url=shared_artifacts(project), artifacts_options=project.artifacts.storage_options,
                         smoke_rows=0, prefer_onnx=prefer_onnx,
                         purpose="infra-validation",
                         extra_keys={key.split("_", 2)[1]: ["infra-validation", hash_key(key)]})
    port = free_port()
    env = {**os.environ, CONFIG_ENV: config.to_json(), "KEEL_SERVE_PORT": str(port), "KEEL_SERVE_HOST": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "keelml.serve.server"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        problem = _wait_ready(proc, port, time.monotonic() + START_TIMEOUT)
        report.startup_seconds = round(time.monotonic() - started, 3)
        if problem:
            proc.terminate()
            proc.wait(10)
            report.reason = f"{problem}: {_stderr_tail(proc)}"
            return report
        _check_answers(report, recorded, columns, port, key, settings["max_rows"])
    except (OSError, http.client.HTTPException) as exc:
        report.reason = f"HTTP failure talking to the served model: {type(exc).__name__}: {exc}"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _check_answers(report: InfraReport, recorded: RecordedSample, columns: list[str], port: int, key: str,
                   batch: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    status, info = _request(conn, "GET", f"/v1/models/{report.name}", None, headers)
    if status != 200:
        report.reason = f"GET /v1/models/{report.name} answered {status}"
        return
    report.engine = str(info.get("engine", ""))
    if int(info.get("version", -1)) != report.version:
        report.reason = f"the server answered with version {info.get('version')}, not {report.version}"
        return
    outputs: list[list[float]] = []
    labels: list[str] = []
    for start in range(0, len(recorded.rows), batch):
        chunk = recorded.rows[start:start + batch]
        body = json.dumps({"records": [dict(zip(columns, r, strict=True)) for r in chunk]}).encode()
        status, answer = _request(conn, "POST", f"/v1/models/{report.name}/predict", body, headers)
        if status != 200:
            report.reason = f"predict answered HTTP {status} for rows {start}-{start + len(chunk) - 1}: {answer}"
            return
        if int(answer.get("model_version", -1)) != report.version:
            report.reason = f"predict answered from version {answer.get('model_version')}, not {report.version}"
            return
        for prediction in answer["predictions"]:
            if recorded.task == "regression":
                outputs.append([float(prediction["value"])])
            else:
                probs = {p["class"]: float(p["probability"]) for p in prediction["top_k"]}
                labels = labels or sorted(probs)
                outputs.append([probs.get(c, float("nan")) for c in labels])
    conn.close()
    got = np.asarray(outputs, dtype=np.float64)
    report.rows = len(recorded.rows)
    report.mismatches, report.max_abs_diff, bad = compare(recorded, got, labels)
    report.examples = [{"row": i, "recorded": recorded.expected[i].tolist(), "served": got[i].tolist()} for i in bad]
    if report.mismatches:
        report.reason = (f"{report.mismatches} of {report.rows} held-out rows served over HTTP differ from the "
                         f"predictions recorded at evaluation (largest difference {report.max_abs_diff:.3g})")
    else:
        report.passed = True
        report.reason = (f"{report.rows} held-out rows served over HTTP by the {report.engine} engine match the "
                         f"recorded predictions (largest difference {report.max_abs_diff:.2g})")
