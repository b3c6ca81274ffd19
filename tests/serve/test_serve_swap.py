"""Hot swap: a new version registered under load is switched to without a failed request; bad versions are refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.serve.conftest import NAME, Store, ThreadServer, sample_rows, serve_config

from keelml.errors import IntegrityError
from keelml.serve.metrics import Metrics
from keelml.serve.server import create_app
from keelml.serve.swap import ModelHolder

CLIENT = Path(__file__).with_name("load_client.py")


def test_new_version_under_concurrent_load(store: Store, api_key: str, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"records": sample_rows(store, 1)}))
    (tmp_path / "body.json.path").write_text(json.dumps(f"/v1/models/{NAME}/predict"))
    with ThreadServer(create_app(serve_config(store))) as server:
        client = subprocess.Popen([sys.executable, str(CLIENT), str(server.port), api_key, "32", "80", str(body)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while server.request("GET", "/metrics", key=api_key)[1].count('endpoint="predict",code="200"') == 0:
                assert time.monotonic() < deadline and client.poll() is None, "load did not start"
                time.sleep(0.05)
            project = store.open()
            try:  # register version 2 while requests are in flight
                registration = project.registry.register(NAME, store.v2_bundle, run_id=store.v2_run, summary={})
            finally:
                project.close()
            assert registration.version == 2
            output, _ = client.communicate(timeout=240)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        summary = json.loads(output)
        assert summary["failed"] == 0, summary["failures"]
        assert summary["ok"] == 32 * 80
        assert set(summary["versions"]) <= {"1", "2"}
        deadline = time.monotonic() + 10
        while server.request("GET", f"/v1/models/{NAME}", key=api_key)[1]["version"] != 2:
            assert time.monotonic() < deadline, "the server did not switch to version 2"
            time.sleep(0.1)
        status, body_after, headers = server.request("POST", f"/v1/models/{NAME}/predict",
                                                     {"records": sample_rows(store, 1)}, key=api_key)
        assert status == 200 and body_after["model_version"] == 2 and headers["x-model-version"] == "2"
        metrics = server.request("GET", "/metrics", key=api_key)[1]
        assert f"keel_model_swaps_total{{model=\"{NAME}\"}} 1" in metrics


def test_a_version_that_fails_verification_is_not_switched_to() -> None:
    """The holder keeps serving the old version, counts the failure, and does not retry at once."""
    metrics = Metrics("m")
    wanted = [1]
    loads: list[int] = []

    def loader(version: int) -> object:
        loads.append(version)
        if version == 2:
            raise IntegrityError("m version 2: bundle signature is invalid")
        return _Served(version)

    holder = ModelHolder(resolver=lambda: wanted[0], loader=loader, metrics=metrics,  # type: ignore[arg-type]
                         poll_seconds=0.01, retry_seconds=3600)
    holder.start()
    wanted[0] = 2
    assert holder.poll_once() is False
    assert holder.current.model.version == 1  # type: ignore[union-attr]
    assert metrics.swap_failures == 1 and "signature is invalid" in (holder.last_error or "")
    assert holder.poll_once() is False and loads == [1, 2]  # not retried within retry_seconds
    wanted[0] = 3
    assert holder.poll_once() is True and holder.current.model.version == 3  # type: ignore[union-attr]
    assert metrics.swaps == 1 and metrics.version == 3


class _Model:
    def __init__(self, version: int) -> None:
        self.version, self.name, self.engine = version, "m", "onnx"


class _Served:
    def __init__(self, version: int) -> None:
        self.model = _Model(version)


def test_serving_a_missing_version_fails_before_start(store: Store) -> None:
    from keelml.errors import NotFoundError

    with pytest.raises(NotFoundError, match="has no version 99"):
        create_app(serve_config(store, version=99))
