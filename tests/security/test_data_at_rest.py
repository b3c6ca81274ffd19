"""Data at rest (issue 13, finding 8), tried on a real project: `keel run`, `keel serve` on loopback, a
prediction carrying a canary value, feedback, the dashboard, `keel monitor`; then every file is read back.

The canary is a country that one training row holds and that a prediction sends again: it must be in
no file under the store, the prediction log or the reports in plaintext, and the plaintext report
(and its contract.yaml) must not list it, since it was seen only once. Every command runs under
umask 000, so a file or directory created without an explicit mode would show up world-writable.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helpers import keel, keel_here, small_adult_project

NAME = "adult-income"
CANARY = "Canary-Zq7Xv"
COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
           "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country"]
INTEGERS = {"age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"}
EXTRA = "serve:\n  log_roll_seconds: 1\n  poll_seconds: 0.5\n"


@dataclass
class Lived:
    """A project after run, serve, predictions, feedback, the dashboard and monitor."""

    spec: Path
    root: Path
    reports: Path
    dashboard: tuple[int, Any]  # status and body of GET /dashboard/data
    monitor: subprocess.CompletedProcess[str]
    request_id: str
    key: str
    rows: list[dict[str, Any]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(port: int, method: str, path: str, key: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=None if body is None else json.dumps(body).encode(),
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, json.loads(payload) if payload[:1] in (b"{", b"[") else payload


def _stop_and_fail(server: subprocess.Popen[str], what: Any) -> None:
    server.send_signal(signal.SIGTERM)
    raise AssertionError(f"{what}: {server.communicate(timeout=60)[1][-3000:]}")


def _record(line: str) -> dict[str, Any]:
    values = [v.strip() for v in line.split(",")]
    return {c: (None if v == "?" else int(v) if c in INTEGERS else v) for c, v in zip(COLUMNS, values, strict=False)}


def _plant_canary(directory: Path) -> list[str]:
    """Give one training row a country no other row has; returns it and the four rows after it."""
    lines = (directory / "adult.data").read_text().splitlines()
    fields = lines[10].split(", ")
    fields[13] = CANARY
    lines[10] = ", ".join(fields)
    (directory / "adult.data").write_text("\n".join(lines) + "\n")
    return lines[10:15]


@pytest.fixture(scope="module")
def lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lived]:
    directory = tmp_path_factory.mktemp("at-rest")
    spec = small_adult_project(directory, train_rows=1500, test_rows=600, cv_folds=2, bootstrap_rounds=0,
                               extra=EXTRA)
    rows = _plant_canary(directory)
    previous = os.umask(0)  # every process below inherits it: only explicit modes protect a file
    try:
        done = keel("run", str(spec))
        assert done.returncode == 0, done.stderr
        created = keel("keys", "create-api-key", "--name", "tests", "-f", str(spec))
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "keelml", "serve", NAME, "-f", str(spec), "--port",
                                   str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "NO_COLOR": "1"})
    finally:
        os.umask(previous)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "keel serve did not become ready"
            try:
                if _http(port, "GET", "/v2/health/ready", key)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        status, answer = _http(port, "POST", f"/v1/models/{NAME}/predict", key, {"records": [_record(r) for r in rows]})
        if status != 200:
            _stop_and_fail(server, answer)
        for i, line in enumerate(rows):
            status, _ = _http(port, "POST", f"/v1/models/{NAME}/feedback", key,
                              {"request_id": answer["request_id"], "row": i, "label": line.split(", ")[-1]})
            assert status == 202
        log_dir = directory / ".keel" / "predictions" / NAME
        while not [p for p in log_dir.glob("predictions-*") if not p.name.endswith(".part")]:
            assert time.monotonic() < deadline, "the prediction log was not rolled"
            time.sleep(0.2)
        time.sleep(2.5)  # the dashboard caches its data for 2 s
        dashboard = _http(port, "GET", "/dashboard/data", key)  # checked by a test below
    finally:
        server.send_signal(signal.SIGTERM)  # uvicorn stops and the log's open files are completed
        server.communicate(timeout=60)
    previous = os.umask(0)
    try:
        monitored = keel("monitor", NAME, "-f", str(spec), "--json", "--window", "1000")
    finally:
        os.umask(previous)
    yield Lived(spec, directory / ".keel", directory / ".keel-reports", dashboard, monitored, answer["request_id"], key,
                [_record(r) for r in rows])


def _files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_canary_sent_through_a_prediction_is_in_no_file_in_plaintext(lived: Lived) -> None:
    files = _files(lived.root, lived.reports)
    holding = [str(p.relative_to(lived.root.parent)) for p in files if CANARY.encode() in p.read_bytes()]
    assert len(files) > 20 and any("predictions" in str(p) for p in files)
    assert holding == [], f"{len(holding)} of {len(files)} files hold the canary in plaintext: {holding}"


def test_every_file_keelml_created_is_0600_and_every_directory_0700(lived: Lived) -> None:
    wrong = []
    paths = [p for root in (lived.root, lived.reports) for p in [root, *root.rglob("*")]]
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        if mode != wanted:
            wrong.append(f"{path.relative_to(lived.root.parent)} {oct(mode)}")
    assert {p.name for p in lived.root.iterdir()} >= {"keel.db", "keys", "store", "predictions"}
    assert wrong == [], f"{len(wrong)} of {len(paths)} paths have the wrong mode: {wrong}"


def test_monitor_dashboard_and_python_api_read_the_encrypted_log(lived: Lived) -> None:
    import keelml

    assert lived.monitor.returncode in (0, 1), lived.monitor.stderr
    assert json.loads(lived.monitor.stdout)["rows"] == 5
    assert lived.dashboard[0] == 200 and lived.dashboard[1]["log_rows_in_window"] == 5, lived.dashboard
    frame = keelml.read_predictions(lived.spec, window=1000).sort("row")
    assert frame.height == 5 and frame.row(0, named=True)["native-country"] == CANARY
    assert set(frame["request_id"]) == {lived.request_id} and frame["label"].null_count() == 0
    log_dir = lived.root / "predictions" / NAME
    sealed = sorted(p.name for p in log_dir.iterdir())
    assert sealed and all(name.endswith(".parquet.sealed") for name in sealed)
    assert all(not (log_dir / name).read_bytes().startswith(b"PAR1") for name in sealed)


def test_a_category_seen_once_is_withheld_from_the_plaintext_report(lived: Lived) -> None:
    [run_dir] = [p for p in lived.reports.iterdir() if p.is_dir()]
    document = (run_dir / "contract.yaml").read_text()
    shown = yaml.safe_load(document)
    countries = next(c for c in shown["columns"] if c["name"] == "native-country")["categories"]
    assert CANARY not in countries and "United-States" in countries
    assert "report.min_category_count" in document and "withheld" in document
    page = (run_dir / "index.html").read_text()
    assert CANARY not in page and "report.min_category_count" in page
    import keelml

    with keelml.open_registry(lived.spec) as project:  # the contract inside the encrypted store keeps it
        _, bundle = project.registry.bundle(NAME, 1)
        digest = bundle["manifest"]["components"]["contract"]["sha256"]
        full = json.loads(project.artifacts.get(digest))
        profile = json.loads(project.artifacts.get(bundle["manifest"]["components"]["profile"]["sha256"]))
    kept = next(c for c in full["columns"] if c["name"] == "native-country")["categories"]
    assert CANARY in kept
    counts = next(c for c in profile["columns"] if c["name"] == "native-country")["domain"]
    rare = sorted(v for v, n in counts.items() if n < 5)
    assert CANARY in rare and not set(rare) & set(countries)
    assert set(countries) == {v for v, n in counts.items() if n >= 5}
    assert f"{len(rare)} categories of native-country" in document or f"native-country: {len(rare)}" in document


def _copy(lived: Lived, tmp_path: Path) -> Path:
    """A private copy of the project (the tests below change it); returns its spec."""
    shutil.copytree(lived.spec.parent, tmp_path / "p", symlinks=True)
    return tmp_path / "p" / "pipeline.yaml"


def test_an_altered_foreign_or_planted_log_file_is_refused(lived: Lived, tmp_path: Path) -> None:
    import polars as pl

    from keelml.store.keys import KeyRing
    from keelml.store.sealed import log_ring, seal_file

    spec = _copy(lived, tmp_path)
    log_dir = spec.parent / ".keel" / "predictions" / NAME
    [sealed] = list(log_dir.glob("predictions-*.parquet.sealed"))
    blob = bytearray(sealed.read_bytes())
    blob[-40] ^= 1  # one bit of the ciphertext
    sealed.write_bytes(bytes(blob))
    done = keel_here("monitor", NAME, "-f", str(spec), "--window", "1000", "--no-actions")
    assert done.returncode == 3 and "payload digest mismatch" in done.stderr, done.stderr
    stranger: KeyRing = log_ring(os.urandom(32))  # rows forged under a key this project does not hold
    forged = io.BytesIO()
    pl.DataFrame([{**r, "prediction": "<=50K", "ts": time.time()} for r in lived.rows]).write_parquet(forged)
    sealed.write_bytes(seal_file(forged.getvalue(), stranger, codec="parquet"))
    done = keel_here("monitor", NAME, "-f", str(spec), "--window", "1000", "--no-actions")
    assert done.returncode == 3 and "sealed by a key this project does not hold" in done.stderr, done.stderr
    sealed.unlink()
    pl.DataFrame([{**r, "prediction": "<=50K", "ts": time.time()} for r in lived.rows]).write_parquet(
        log_dir / "predictions-planted.parquet")  # plaintext rows planted in the encrypted log
    done = keel_here("monitor", NAME, "-f", str(spec), "--window", "1000", "--no-actions")
    assert done.returncode == 3 and "plaintext file in an encrypted prediction log" in done.stderr, done.stderr
    done = keel_here("monitor", NAME, "-f", str(spec), "--window", "1000", "--no-actions", "--log", str(log_dir))
    assert done.returncode in (0, 1), done.stderr  # named explicitly, plain Parquet files are read


def test_a_server_without_a_store_seals_its_log_with_the_key_containerize_writes(
        lived: Lived, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.serve.conftest import ThreadServer

    import keelml
    from keelml.errors import KeyMaterialError
    from keelml.serve.auth import active_key_hashes, write_hashes_file
    from keelml.serve.server import ServeConfig, create_app
    from keelml.store.sealed import LOG_KEY_ENV, LOG_KEY_FILE_ENV

    assert keel("containerize", f"{NAME}/1", "-o", str(tmp_path / "ctx"), "-f", str(lived.spec)).returncode == 0
    context = tmp_path / "ctx"
    assert "keel_log_key" in (context / "compose.yaml").read_text() and LOG_KEY_FILE_ENV in (
        context / "Dockerfile").read_text()
    modes = {stat.S_IMODE(p.stat().st_mode) for p in [context, *context.rglob("*")]
             if not str(p.relative_to(context)).startswith("keelml")}
    assert modes == {0o600, 0o700}
    with keelml.open_registry(lived.spec) as project:
        write_hashes_file(tmp_path / "keys", active_key_hashes(project.metadata))
        signer = project.keys.key_id
    config = ServeConfig(store_root=None, model=NAME, bundle_dir=str(context / "bundle"),
                         keys_file=str(tmp_path / "keys"), trusted_key_id=signer,
                         serve={"log_path": str(tmp_path / "log"), "poll_seconds": 0.2})
    monkeypatch.delenv(LOG_KEY_ENV, raising=False)
    monkeypatch.delenv(LOG_KEY_FILE_ENV, raising=False)
    with pytest.raises(KeyMaterialError, match=LOG_KEY_FILE_ENV):
        create_app(config)  # no store, no log key: the encrypted log cannot be written, so it does not start
    create_app(ServeConfig(**{**config.__dict__, "serve": {"log_predictions": False}}))  # no log, no key needed
    monkeypatch.setenv(LOG_KEY_FILE_ENV, str(context / "secrets" / "keel_log_key"))
    with ThreadServer(create_app(config)) as server:
        status, answer, _ = server.request("POST", f"/v1/models/{NAME}/predict", {"records": lived.rows},
                                           key=lived.key)
        assert status == 200, answer
    files = list((tmp_path / "log").iterdir())
    assert [f.name.endswith(".parquet.sealed") for f in files] == [True]
    assert CANARY.encode() not in files[0].read_bytes()
    monkeypatch.delenv(LOG_KEY_FILE_ENV)  # the project reads it with its own keys (the log key derives from them)
    frame = keelml.read_predictions(lived.spec, window=1000, log=tmp_path / "log")
    assert frame.height == 5 and CANARY in frame["native-country"].to_list()


def test_with_encryption_off_the_log_is_plain_parquet_still_private(lived: Lived, tmp_path: Path) -> None:
    import polars as pl
    from tests.serve.conftest import ThreadServer

    from keelml.serve.server import ServeConfig, create_app

    spec = _copy(lived, tmp_path)  # serving unencrypted re-seals nothing, but keep the shared project untouched
    log_dir = tmp_path / "plain" / "log"
    config = ServeConfig(store_root=str(spec.parent / ".keel"), model=NAME, encryption=False,
                         serve={"log_path": str(log_dir), "poll_seconds": 0.2})
    previous = os.umask(0)
    try:
        with ThreadServer(create_app(config)) as server:
            status, answer, _ = server.request("POST", f"/v1/models/{NAME}/predict", {"records": lived.rows},
                                               key=lived.key)
            assert status == 200, answer
    finally:
        os.umask(previous)
    [plain] = list(log_dir.iterdir())
    assert plain.name.endswith(".parquet") and pl.read_parquet(plain).height == 5
    assert {stat.S_IMODE(p.stat().st_mode) for p in (plain, log_dir, log_dir.parent)} == {0o600, 0o700}


def test_files_written_on_request_are_private_too(lived: Lived, tmp_path: Path) -> None:
    """`keel score` output and rejects, `keel contract infer -o`: data written where the user asks, 0600."""
    import polars as pl

    source = tmp_path / "in.csv"
    pl.DataFrame([*lived.rows, {**lived.rows[0], "age": "old"}], infer_schema_length=None).cast(pl.String).write_csv(
        source)
    previous = os.umask(0)
    try:
        scored = keel_here("score", NAME, str(source), str(tmp_path / "out" / "scores.parquet"), "-f", str(lived.spec))
        inferred = keel_here("contract", "infer", "--spec", str(lived.spec), "-o", str(tmp_path / "c.yaml"))
    finally:
        os.umask(previous)
    assert scored.returncode == 0, scored.stderr
    assert inferred.returncode == 0, inferred.stderr
    written = sorted(p for p in tmp_path.rglob("*") if p != source)
    assert {p.name for p in written} >= {"out", "scores.parquet", "c.yaml"} and len(written) >= 4
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {
        p.name: "0o700" if p.is_dir() else "0o600" for p in written}
