"""Latency plumbing: the start-up hook, process tuning, the log's eager imports, the predict answer's bytes."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.serve.conftest import NAME, Store, ThreadServer, sample_rows, serve_config

from keelml.serve.server import build_server


def test_on_startup_runs_once_when_the_server_starts(store: Store, api_key: str) -> None:
    calls: list[str] = []
    built = build_server(serve_config(store), on_startup=lambda: calls.append("started"))
    assert calls == []  # building is not starting
    with ThreadServer(built.app) as srv:
        status, body, headers = srv.request("POST", f"/v1/models/{NAME}/predict",
                                            {"records": sample_rows(store, 1)}, key=api_key)
    assert calls == ["started"]
    assert status == 200 and len(body["request_id"]) == 32 and int(body["request_id"], 16) >= 0
    assert headers["x-request-id"] == body["request_id"]


def test_tune_process_and_the_log_import_pyarrow_before_serving(tmp_path: object) -> None:
    """In a fresh interpreter: the log's module imports pyarrow (no import at the first flush, under load);
    tune_process freezes the start-up heap and shortens the interpreter-lock switch interval."""
    script = f"""
import gc, sys, pathlib
assert "pyarrow.parquet" not in sys.modules
from keelml.serve.predlog import PredictionLog
assert "pyarrow.parquet" in sys.modules
from keelml.serve.server import SWITCH_SECONDS, tune_process
log = PredictionLog(pathlib.Path({str(tmp_path)!r}), model="m", columns=[("a", "integer"), ("b", "category")],
                    hash_columns=["b"], hash_key=b"k", roll_bytes=1 << 20, roll_seconds=3600)
log.close()
assert gc.get_freeze_count() == 0
tune_process()
assert gc.get_freeze_count() > 10000, gc.get_freeze_count()
assert sys.getswitchinterval() == SWITCH_SECONDS
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_answer_bytes_equal_the_json_module_output() -> None:
    from keelml.serve.bodies import dumps, stdlib_dumps

    answer = {"model": NAME, "model_version": 3, "engine": "onnx", "request_id": "ab" * 16,
              "predictions": [{"label": ">50K", "top_k": [{"class": ">50K", "probability": 0.873},
                                                          {"class": "<=50K", "probability": 0.127}]}]}
    assert dumps(answer) == stdlib_dumps(answer)
    assert json.loads(dumps(answer)) == answer
