"""A custom estimator class end to end: `model.family: module:Class` trains through `keel run`, is
registered (not refused by the trust policy), verifies, and is served over HTTP by `keel serve` with the
scikit-learn engine (it has no ONNX form, so the default engine falls back to it), answering exactly as
the model loaded in this process does. A project whose spec does not declare the class refuses to
import a bundle holding it, naming the class; declaring it there makes the same archive import."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import ROOT, keel_here
from tests.serve.conftest import ThreadServer, free_port

from keelml.errors import IntegrityError
from keelml.registry.project import Project, open_project
from keelml.serve.server import ServeConfig, create_app
from keelml.spec.pipeline import load_spec

FAMILY = "tests.model.custom_estimators:ShrunkLinearRegressor"
CLASS = "tests.model.custom_estimators.ShrunkLinearRegressor"  # as skops and the trust policy name it
NAME = "diamonds-custom"
DIAMONDS = ROOT / "examples" / "diamonds" / "diamonds.csv"
# `tests` importable in the `keel serve` process, as a user's own package would be
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def diamonds_project(directory: Path, *, family: str = FAMILY, name: str = NAME) -> Path:
    """Every 100th diamond (540 rows, prices spread over the whole range) and a spec for `family`."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = DIAMONDS.read_text().splitlines()
    (directory / "diamonds.csv").write_text("\n".join([lines[0], *lines[1::100]]) + "\n")
    spec = directory / "pipeline.yaml"
    spec.write_text(
        f"name: {name}\ndata:\n  target: price\n  train:\n    path: diamonds.csv\n"
        "split:\n  test_size: 0.25\n  seed: 7\n"
        f"model:\n  family: {family}\n  params: {{shrink: 0.05}}\n  cv_folds: 2\n  learning_curve:\n    sizes: []\n"
        "evaluate:\n  bootstrap_rounds: 10\ngate:\n  min_score: 0.85\n"
        "security:\n  privacy: false\n  robustness: false\n"
        "serve:\n  rate_limit: 100000\n  rate_burst: 100000\n  log_predictions: false\n")
    return spec


@dataclass
class Trained:
    spec: Path
    outcome: dict[str, Any]

    def open(self) -> Project:
        return open_project(load_spec(self.spec))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    spec = diamonds_project(tmp_path_factory.mktemp("custom") / "project")
    result = keel_here("run", str(spec), "--json")
    assert result.returncode == 0, result.stderr
    return Trained(spec, json.loads(result.stdout))


def test_keel_run_trains_and_registers_the_declared_class(trained: Trained) -> None:
    outcome = trained.outcome
    assert outcome["gate"]["passed"], outcome["gate"]
    assert outcome["primary_metric"]["name"] == "r2" and outcome["primary_metric"]["value"] > 0.85
    model = outcome["model"]
    assert (model["name"], model["version"], model["status"], model["new_version"]) == (NAME, 1, "staging", True)
    project = trained.open()
    try:
        _, bundle = project.registry.bundle(NAME, 1)
        manifest = bundle["manifest"]
        assert manifest["info"]["trust"] == {"functions": [], "classes": [CLASS]}  # recorded in the signed bundle
        assert manifest["info"]["parameters"]["model"]["family"] == FAMILY
        engine = json.loads(project.artifacts.get(manifest["components"]["engine"]["sha256"]))
        assert engine["engine"] == "sklearn" and "ONNX conversion failed" in engine["reason"]  # no ONNX form
        assert project.artifacts.get(manifest["components"]["onnx"]["sha256"]) == b""  # no graph to serve
        loaded = project.registry.load_model(NAME, 1)  # through the project's policy: the spec declares it
        estimator = loaded.model.named_steps["model"]
        assert f"{type(estimator).__module__}.{type(estimator).__qualname__}" == CLASS
        assert estimator.shrink == 0.05 and estimator.coef_.shape == (estimator.n_features_in_,)
    finally:
        project.close()


def test_a_rerun_decodes_the_cached_custom_model_through_the_runner_codec(trained: Trained, tmp_path: Path) -> None:
    """Evaluation settings changed: train comes from the cache, so evaluate reads the stored model back."""
    spec = trained.spec.parent / "reevaluate.yaml"
    spec.write_text(trained.spec.read_text().replace("bootstrap_rounds: 10", "bootstrap_rounds: 12"))
    result = keel_here("run", str(spec), "--json")
    assert result.returncode == 0, result.stderr
    status = {s["name"]: s["status"] for s in json.loads(result.stdout)["steps"]}
    assert status["train"] == "cached" and status["evaluate"] == "ran" and status["export"] == "cached"


def test_keel_models_verify_allowlists_the_declared_class(trained: Trained) -> None:
    result = keel_here("models", "verify", f"{NAME}/1", "-f", str(trained.spec), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["version"] == 1 and report["model_types"] >= 1
    text = keel_here("models", "verify", f"{NAME}/1", "-f", str(trained.spec))
    assert text.returncode == 0 and f"{NAME} v1: verified" in text.stdout


# keel serve over loopback ---------------------------------------------------------------------------------

def _request(port: int, method: str, path: str, key: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    conn.request(method, path, body=None if body is None else json.dumps(body).encode(), headers=headers)
    response = conn.getresponse()
    payload = json.loads(response.read())
    conn.close()
    return response.status, payload


@dataclass
class Server:
    """A server on a loopback port: `keel serve` in its own process, or the same app in a thread."""

    port: int
    process: subprocess.Popen[str] | None = None


def _ready(server: Server, key: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        process = server.process
        if process is not None and process.poll() is not None:
            raise AssertionError(f"keel serve exited {process.returncode}: {process.communicate()[1]}")
        assert time.monotonic() < deadline, "keel serve did not become ready"
        try:
            status, body = _request(server.port, "GET", f"/v1/models/{NAME}", key)
            if status == 200:
                return dict(body)
        except OSError:
            pass
        time.sleep(0.1)


@pytest.fixture(scope="module")
def servers(trained: Trained) -> Iterator[tuple[str, dict[str, Server]]]:
    """`keel serve` (the default engine: ONNX when the bundle validated it) in a child process, and the
    server `keel serve --engine sklearn` runs, in a thread of this process."""
    created = keel_here("keys", "create-api-key", "--name", "e2e", "-f", str(trained.spec))
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "keelml", "serve", f"{NAME}/1", "-f", str(trained.spec),
                                "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env={**ENV, "NO_COLOR": "1", "COLUMNS": "200"})
    project = trained.open()
    root = project.root
    project.close()
    config = ServeConfig(store_root=str(root), model=NAME, version=1, prefer_onnx=False,
                         serve={"rate_limit": 100000, "rate_burst": 100000, "log_predictions": False})
    try:
        with ThreadServer(create_app(config)) as threaded:
            yield key, {"auto": Server(port, process), "sklearn": Server(threaded.port)}
    finally:
        process.terminate()
        stderr = process.communicate(timeout=30)[1]
        assert f"serving {NAME} v1 (version 1) on http://127.0.0.1:{port}" in stderr, stderr


def _records(project: Project, n: int) -> list[dict[str, Any]]:
    """Held-out rows recorded in the bundle, as JSON records."""
    from keelml.data.contract import Contract
    from keelml.serve.recorded import recorded_sample

    _, bundle = project.registry.bundle(NAME, 1)
    components = {k: v["sha256"] for k, v in bundle["manifest"]["components"].items()}
    contract = Contract.model_validate(json.loads(project.artifacts.get(components["contract"])))
    columns = [c.name for c in contract.features]
    sample = recorded_sample(project.artifacts.get, components, columns, contract.task, n)
    return [dict(zip(columns, row, strict=True)) for row in sample.rows]


@pytest.mark.parametrize("engine", ["sklearn", "auto"])
def test_keel_serve_answers_as_the_model_in_this_process(trained: Trained, servers: tuple[str, dict[str, Server]],
                                                         engine: str) -> None:
    import pandas as pd

    key, started = servers
    served = started[engine]
    described = _ready(served, key)
    assert described["version"] == 1 and described["task"] == "regression"
    assert described["engine"] == "sklearn"  # the declared class, loaded through the bundle's trust policy
    if engine == "auto":  # ONNX preferred, but the bundle has none for this class
        assert "ONNX conversion failed" in described["engine_reason"], described
    else:
        assert described["engine_reason"] == "scikit-learn engine requested"
    project = trained.open()
    try:
        records = _records(project, 25)
        model = project.registry.load_model(NAME, 1).model
    finally:
        project.close()
    assert len(records) == 25
    offline = model.predict(pd.DataFrame(records)).tolist()
    status, body = _request(served.port, "POST", f"/v1/models/{NAME}/predict", key, {"records": records})
    assert status == 200, body
    assert body["model_version"] == 1
    assert [p["value"] for p in body["predictions"]] == offline
    assert len(set(offline)) > 20  # real predictions, not a constant
    status, _ = _request(served.port, "POST", f"/v1/models/{NAME}/predict", key + "x", {"records": records[:1]})
    assert status == 401


# the negative: another project that does not declare the class --------------------------------------------

def test_a_project_that_does_not_declare_the_class_refuses_its_bundle(trained: Trained, tmp_path: Path) -> None:
    archive = tmp_path / "custom.keel"
    spec = str(trained.spec)
    exported = keel_here("models", "export", f"{NAME}/1", "-o", str(archive), "-f", spec)
    assert exported.returncode == 0, exported.stderr
    initialised = keel_here("init", str(tmp_path / "other"))  # a project with keys, then its own spec
    assert initialised.returncode == 0, initialised.stderr
    other = diamonds_project(tmp_path / "other", family="linear", name="other-diamonds")
    pem = tmp_path / "origin.pem"
    shown = keel_here("keys", "show-public", "-f", spec)
    assert shown.returncode == 0, shown.stderr
    pem.write_text(shown.stdout)
    trusted = keel_here("keys", "trust", str(pem), "--name", "origin", "-f", str(other))
    assert trusted.returncode == 0, trusted.stderr

    refused = keel_here("models", "import", str(archive), "-f", str(other))
    assert refused.returncode == 3, (refused.stdout, refused.stderr)
    assert CLASS in refused.stderr and "components/model" in refused.stderr
    project = open_project(load_spec(other))
    try:  # the API says the same, and nothing was registered
        with pytest.raises(IntegrityError, match=CLASS.replace(".", r"\.")):
            project.registry.import_bundle(archive, project.trust)
        assert project.registry.models() == []
    finally:
        project.close()

    # the same archive imports once the receiving spec declares the family: the refusal was the policy's
    other.write_text(other.read_text().replace("family: linear", f"family: {FAMILY}"))
    accepted = keel_here("models", "import", str(archive), "-f", str(other), "--json")
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["version"] == 1
