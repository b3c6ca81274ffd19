"""Artifacts on a shared directory and on an S3-compatible server (moto), keys and reports kept local."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers import keel, keel_here
from tests.shared.conftest import small_project

from keelml.pipeline import run
from keelml.registry.project import open_store
from keelml.serve.server import ServeConfig
from keelml.store.artifacts import OWNER


def _objects(root: Path) -> list[Path]:
    return sorted(p for p in (root / "objects").rglob("*") if p.is_file())


def test_two_projects_share_an_artifact_directory(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    store = f"  path: .keel\n  metadata_url: sqlite:///{shared / 'keel.db'}\n  artifacts_url: {shared}\n"
    shared.mkdir()
    first = run(small_project(tmp_path / "a", store=store))
    assert first.registration is not None and first.registration.version == 1
    a_store = tmp_path / "a" / ".keel"
    assert (a_store / "keys" / "signing.key").is_file() and not (a_store / "store").exists()  # keys stay local
    assert first.report_path is not None and first.report_path.is_relative_to(tmp_path / "a" / ".keel-reports")
    objects = _objects(shared)
    assert objects and json.loads((shared / OWNER).read_text())["signed_by"].startswith("ed25519:")

    # A second project on another checkout: the same keys (from the environment), another process.
    env = {**os.environ, "KEEL_MASTER_KEY": (a_store / "keys" / "master.key").read_text().strip(),
           "KEEL_SIGNING_KEY": (a_store / "keys" / "signing.key").read_text().strip()}
    spec_b = small_project(tmp_path / "b", store=store)
    second = keel("run", str(spec_b), cwd=spec_b.parent, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert " ran " not in second.stdout and "cached" in second.stdout  # every step came from the shared cache
    assert "already registered as shared v1" in second.stdout
    assert _objects(shared) == objects
    verified = keel("verify", str(spec_b), cwd=spec_b.parent, env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # A project with its own keys must not overwrite (re-sign) the shared artifacts.
    spec_c = small_project(tmp_path / "c", store=f"  path: .keel\n  artifacts_url: {shared}\n")
    foreign = keel("run", str(spec_c), cwd=spec_c.parent)
    assert foreign.returncode == 2, foreign.stdout + foreign.stderr
    assert "belongs to another project" in foreign.stderr and "store.artifacts_url" in foreign.stderr
    assert _objects(shared) == objects


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3-compatible server (moto) on loopback with a fresh bucket `keel-test`; credentials only in env."""
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install -e '.[s3]')")
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed (the dev extra has it)")
    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "keel-test", "AWS_SECRET_ACCESS_KEY": "keel-test-secret",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="keel-test")
        yield endpoint
    finally:
        server.stop()


def test_artifacts_on_s3_compatible_storage(tmp_path: Path, s3_endpoint: str) -> None:
    import boto3

    store = (f"  path: .keel\n  artifacts_url: s3://keel-test/team-a\n"
             f"  artifacts_options: {{endpoint_url: \"{s3_endpoint}\"}}\n")
    spec = small_project(tmp_path, store=store)
    outcome = run(spec)
    assert outcome.registration is not None and outcome.registration.version == 1
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="keel-test", Prefix="team-a/")["Contents"]]
    objects = [k for k in keys if k.startswith("team-a/objects/")]
    assert f"team-a/{OWNER}" in keys and len(objects) >= 10
    assert not (tmp_path / ".keel" / "store").exists() and (tmp_path / ".keel" / "keel.db").is_file()
    assert (tmp_path / ".keel" / "keys" / "master.key").is_file()
    assert outcome.report_path is not None and outcome.report_path.is_relative_to(tmp_path / ".keel-reports")

    # What `keel serve` does in its server process: open the store from plain config, load the model.
    config = ServeConfig(store_root=str(tmp_path / ".keel"), model="shared", artifacts_url="s3://keel-test/team-a",
                         artifacts_options={"endpoint_url": s3_endpoint})
    served = open_store(Path(str(config.store_root)), artifacts_url=config.artifacts_url,
                        artifacts_options=ServeConfig.from_json(config.to_json()).artifacts_options)
    try:
        assert served.registry.load_model("shared").version == 1
    finally:
        served.close()

    verified = keel_here("verify", str(spec), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["artifacts_checked"] == len(objects)

    # One flipped byte in one object on the server: `keel verify` finds it.
    blob = bytearray(client.get_object(Bucket="keel-test", Key=objects[0])["Body"].read())
    blob[-1] ^= 1
    client.put_object(Bucket="keel-test", Key=objects[0], Body=bytes(blob))
    damaged = keel_here("verify", str(spec))
    assert damaged.returncode == 3, damaged.stdout + damaged.stderr
    assert objects[0].rsplit("/", 1)[-1][:12] in damaged.stderr
