"""Servers that follow an alias: promote and rollback under load, staging side by side, refused versions.

Each test works on a private copy of the serving store (the `aliased` fixture: versions 1, 2 and a
version 3 whose recorded predictions are not its own). Servers are real uvicorn servers on loopback;
the load comes from another process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.serve.conftest import NAME, Aliased, ThreadServer, components, sample_rows, serve_config

from keelml.errors import IntegrityError
from keelml.serve.server import build_server, create_app

CLIENT = Path(__file__).with_name("load_client.py")


def _config(aliased: Aliased, alias: str, **serve: Any) -> Any:
    return serve_config(aliased.store, alias=alias, serve={"log_predictions": False, **serve})


def _wait_for_version(server: ThreadServer, key: str, version: int, client: subprocess.Popen[str] | None = None,
                      timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while server.request("GET", f"/v1/models/{NAME}", key=key)[1]["version"] != version:
        assert time.monotonic() < deadline, f"the server did not switch to version {version}"
        assert client is None or client.poll() is None, "the load ended before the alias changes were seen"
        time.sleep(0.05)


def _is_subsequence(seen: list[str], history: list[str]) -> bool:
    position = iter(history)
    return all(any(v == h for h in position) for v in seen)


def test_promote_and_rollback_under_concurrent_load(aliased: Aliased, api_key: str, tmp_path: Path) -> None:
    """10,016 requests at concurrency 32 from another process while production goes v1 -> v2 -> v1."""
    registry = aliased.project.registry
    registry.promote(NAME, 1, alias="production", reason="first release")
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"records": sample_rows(aliased.store, 1)}))
    (tmp_path / "body.json.path").write_text(json.dumps(f"/v1/models/{NAME}/predict"))
    concurrency, per_thread = 32, 313
    with ThreadServer(create_app(_config(aliased, "production"))) as server:
        client = subprocess.Popen([sys.executable, str(CLIENT), str(server.port), api_key, str(concurrency),
                                   str(per_thread), str(body)], stdout=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while server.request("GET", "/metrics", key=api_key)[1].count('endpoint="predict",code="200"') == 0:
                assert time.monotonic() < deadline and client.poll() is None, "load did not start"
                time.sleep(0.05)
            registry.promote(NAME, 2, alias="production", reason="better", actor="ci-bot")
            _wait_for_version(server, api_key, 2, client)
            registry.rollback(NAME, alias="production", reason="too slow")
            _wait_for_version(server, api_key, 1, client)
            output, _ = client.communicate(timeout=300)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        metrics = server.request("GET", "/metrics", key=api_key)[1]
    summary = json.loads(output)
    assert summary["failed"] == 0, summary["failures"]
    assert summary["ok"] == concurrency * per_thread
    history = [str(h["to_version"]) for h in registry.alias_history(NAME) if h["alias"] == "production"]
    assert history == ["1", "2", "1"]
    assert set(summary["versions"]) == {"1", "2"}
    # each connection saw the versions in the order the alias moved (no answer from a stale version)
    assert all(_is_subsequence(seen, history) for seen in summary["sequences"]), summary["sequences"]
    assert any(seen[-2:] == ["2", "1"] for seen in summary["sequences"])
    assert f'keel_model_swaps_total{{model="{NAME}"}} 2' in metrics
    swaps = aliased.events("serve.swap")
    assert [(s["from_version"], s["to_version"], s["ref"]) for s in swaps] == [(1, 2, "production"),
                                                                              (2, 1, "production")]


def test_staging_is_served_side_by_side(aliased: Aliased, api_key: str) -> None:
    registry = aliased.project.registry
    registry.promote(NAME, 1, alias="production", reason="first release")
    registry.promote(NAME, 2, alias="staging", reason="try it")
    rows = {"records": sample_rows(aliased.store, 2)}
    with ThreadServer(create_app(_config(aliased, "production"))) as production, \
            ThreadServer(create_app(_config(aliased, "staging"))) as staging:
        for server, version in ((production, 1), (staging, 2)):
            status, answer, headers = server.request("POST", f"/v1/models/{NAME}/predict", rows, key=api_key)
            assert status == 200 and answer["model_version"] == version and headers["x-model-version"] == str(version)
        assert production.request("POST", f"/v1/models/{NAME}/predict", rows, key=api_key)[1]["predictions"] != \
            staging.request("POST", f"/v1/models/{NAME}/predict", rows, key=api_key)[1]["predictions"]


def test_a_tampered_promoted_version_is_refused_and_the_old_one_keeps_serving(aliased: Aliased,
                                                                              api_key: str) -> None:
    """Issue 5: flip one byte of a component of the newly promoted version under the store."""
    project, registry = aliased.project, aliased.project.registry
    registry.promote(NAME, 1, alias="production", reason="first release")
    built = build_server(_config(aliased, "production", poll_seconds=3600.0))  # polled by hand below
    rows = {"records": sample_rows(aliased.store, 3)}
    with ThreadServer(built.app) as server:
        registry.promote(NAME, 2, alias="production", reason="verified now; its bytes change before servers load it")
        ours = components(project, 2)["onnx"]["sha256"]
        assert ours not in {e["sha256"] for e in components(project, 1).values()}  # only version 2 uses it
        victim = aliased.store.root / "store" / "objects" / ours[:2] / ours
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
        assert built.holder.poll_once() is False
        status, info, _ = server.request("GET", f"/v1/models/{NAME}", key=api_key)
        assert status == 200 and info["version"] == 1
        assert "version 2 refused, still serving version 1" in info["last_swap_error"]
        assert "component 'onnx'" in info["last_swap_error"]
        status, answer, headers = server.request("POST", f"/v1/models/{NAME}/predict", rows, key=api_key)
        assert status == 200 and answer["model_version"] == 1 and headers["x-model-version"] == "1"
        metrics = server.request("GET", "/metrics", key=api_key)[1]
        assert f'keel_model_swap_failures_total{{model="{NAME}"}} 1' in metrics
        assert f'keel_model_refused_version{{model="{NAME}"}} 2' in metrics
        assert built.holder.poll_once() is False  # not retried at once, and reported once
    refused = aliased.events("serve.swap_refused")
    assert len(refused) == 1 and refused[0]["version"] == 2 and refused[0]["still_serving"] == 1
    assert "component 'onnx'" in refused[0]["problem"] and refused[0]["ref"] == "production"
    assert any(v["version"] == 2 for v in aliased.events("verification_failure"))
    with pytest.raises(IntegrityError, match="component 'onnx'"):  # and it can no longer be promoted anywhere
        registry.promote(NAME, 2, alias="staging", reason="again")


def test_a_version_failing_its_smoke_prediction_is_not_switched_to(aliased: Aliased, api_key: str) -> None:
    registry = aliased.project.registry
    registry.promote(NAME, 1, alias="production", reason="first release")
    built = build_server(_config(aliased, "production", poll_seconds=3600.0))
    with ThreadServer(built.app) as server:
        registry.promote(NAME, 3, alias="production", reason="library promotion: no infra validation")
        assert built.holder.poll_once() is False
        info = server.request("GET", f"/v1/models/{NAME}", key=api_key)[1]
        assert info["version"] == 1 and "smoke prediction failed" in info["last_swap_error"]
        registry.rollback(NAME, alias="production")
        assert built.holder.poll_once() is False  # back on the version it serves: nothing to do
        metrics = server.request("GET", "/metrics", key=api_key)[1]
        assert f'keel_model_refused_version{{model="{NAME}"}} 0' in metrics
    assert [r["version"] for r in aliased.events("serve.swap_refused")] == [3]
    assert aliased.events("serve.swap") == []
