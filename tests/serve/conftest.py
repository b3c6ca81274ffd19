"""Serving fixtures: one small Adult store with two model versions, and real uvicorn servers on loopback."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import json_request, small_adult_project

from keelml.pipeline import run
from keelml.registry import build_bundle
from keelml.registry.project import Project, open_store
from keelml.serve.auth import create_api_key
from keelml.serve.server import ServeConfig, create_app

NAME = "adult-income"


@dataclass
class Store:
    spec: Path
    root: Path
    v2_bundle: str
    v2_run: str

    def open(self) -> Project:
        return open_store(self.root)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Version 1 registered; version 2 trained and signed but unregistered (tests register it)."""
    directory = tmp_path_factory.mktemp("serve")
    spec = small_adult_project(directory, train_rows=1500, test_rows=600, cv_folds=2, bootstrap_rounds=0,
                               extra="serve:\n  poll_seconds: 0.2\n  rate_burst: 100000\n  rate_limit: 100000\n")
    text = spec.read_text()
    spec.write_text(text.replace("cv_folds: 2", "cv_folds: 2\n  params: {max_iter: 40}"))
    first = run(spec)
    assert first.registration is not None and first.registration.version == 1
    spec.write_text(text.replace("cv_folds: 2", "cv_folds: 2\n  params: {max_iter: 25}"))
    second = run(spec)
    assert second.registration is not None and second.registration.version == 2
    project = open_store(directory / ".keel")
    # un-register version 2 (the tests register it again while serving): its row, status and lineage
    project.registry.repository.delete_version(NAME, 2)
    project.close()
    return Store(spec, directory / ".keel", second.registration.bundle_id, second.run_id)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadServer:
    """uvicorn serving an app in a background thread on a free loopback port, with `keel serve`'s options
    (keelml's HTTP protocol with its connection limits; `serve` settings at their defaults)."""

    def __init__(self, app: Any, *, ssl: tuple[str, str] | None = None) -> None:
        import uvicorn

        from keelml.serve.server import uvicorn_options
        from keelml.spec.serve import ServeSpec

        self.port = free_port()
        config = uvicorn.Config(app, **uvicorn_options(ServeSpec(), port=self.port, tls_cert=ssl[0] if ssl else None,
                                                       tls_key=ssl[1] if ssl else None))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            assert self.thread.is_alive(), "server thread died"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)

    def request(self, method: str, path: str, body: Any = None, *, key: str | None = None,
                headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        status, parsed, answer_headers = json_request(conn, method, path, body, key=key, headers=headers, raw=raw)
        if isinstance(parsed, bytes):
            parsed = parsed.decode("utf-8", "replace")
        return status, parsed, answer_headers


def serve_config(store: Store, **overrides: Any) -> ServeConfig:
    serve = {"poll_seconds": 0.2, "rate_limit": 100000, "rate_burst": 100000, **overrides.pop("serve", {})}
    return ServeConfig(store_root=str(store.root), model=NAME, serve=serve, **overrides)


@pytest.fixture(scope="session")
def api_key(store: Store) -> str:
    project = store.open()
    try:
        return create_api_key(project.metadata, "tests")
    finally:
        project.close()


@pytest.fixture(scope="module")
def server(store: Store, api_key: str) -> Iterator[ThreadServer]:
    with ThreadServer(create_app(serve_config(store))) as srv:
        yield srv


@dataclass
class Aliased:
    store: Store
    project: Project

    def events(self, event: str) -> list[dict[str, Any]]:
        return [r["details"] for r in self.project.audit.records(event=event)]


def components(project: Project, version: int) -> dict[str, dict[str, str]]:
    _, bundle = project.registry.bundle(NAME, version)
    return dict(bundle["manifest"]["components"])


@pytest.fixture
def aliased(store: Store, api_key: str, tmp_path: Path) -> Iterator[Aliased]:
    """A private copy of the serving store with version 2 registered and a version 3: version 2's model
    signed with version 1's recorded predictions (its answers differ from those recorded at evaluation,
    as a broken serving environment would make them)."""
    copy = tmp_path / "p"
    shutil.copytree(store.spec.parent, copy, symlinks=True, ignore=shutil.ignore_patterns("predictions"))
    private = Store(copy / "pipeline.yaml", copy / ".keel", store.v2_bundle, store.v2_run)
    project = private.open()
    registry = project.registry
    assert registry.register(NAME, store.v2_bundle, run_id=store.v2_run, summary={}).version == 2
    _, bundle = registry.bundle(NAME, 2)
    manifest = bundle["manifest"]
    parts = {part: entry["sha256"] for part, entry in manifest["components"].items()}
    parts["predictions"] = components(project, 1)["predictions"]["sha256"]
    forged = build_bundle(name=NAME, components=parts,
                          codecs={part: entry["codec"] for part, entry in manifest["components"].items()},
                          info={**manifest["info"], "note": "v2's model with v1's recorded predictions"},
                          keys=project.keys)
    forged_id = project.artifacts.put(json.dumps(forged).encode(), codec="json")
    assert registry.register(NAME, forged_id, run_id=store.v2_run, summary={}).version == 3
    try:
        yield Aliased(private, project)
    finally:
        project.close()


def sample_rows(store: Store, n: int | None = None) -> list[dict[str, Any]]:
    """Held-out rows of version 1 as JSON records (None for missing values)."""
    from keelml.serve.recorded import recorded_sample

    project = store.open()
    try:
        _, bundle = project.registry.bundle(NAME, 1)
        components = {k: v["sha256"] for k, v in bundle["manifest"]["components"].items()}
        from keelml.data.contract import Contract

        contract = Contract.model_validate(json.loads(project.artifacts.get(components["contract"])))
        columns = [c.name for c in contract.features]
        sample = recorded_sample(project.artifacts.get, components, columns, contract.task, n)
    finally:
        project.close()
    return [dict(zip(columns, row, strict=True)) for row in sample.rows]
