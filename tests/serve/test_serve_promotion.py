"""`keel models promote` with infra validation, `keel serve NAME@ALIAS`, `keel score NAME@ALIAS`, and the
audit records of serving (serve.start, serve.swap) and API keys (api_key.create, api_key.revoke)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from tests.helpers import keel_here
from tests.serve.conftest import NAME, Aliased, components, free_port, sample_rows

from keelml.registry import build_bundle


def _fails(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_promote_validates_over_http_before_the_alias_moves(aliased: Aliased) -> None:
    spec, registry, audit = str(aliased.store.spec), aliased.project.registry, aliased.project.audit
    refused = keel_here("models", "promote", NAME, "3", "--to", "staging", "--reason", "candidate", "-f", spec)
    _fails(refused, 3, f"promotion of {NAME} v3 to staging refused: infra validation failed",
           "differ from the predictions recorded at evaluation", "--skip-infra-validation")
    assert registry.aliases(NAME) == {}
    [failed] = aliased.events("infra_validation")
    assert (failed["version"], failed["alias"], failed["passed"], failed["outcome"]) == (
        3, "staging", False, "promotion refused")
    assert failed["mismatches"] > 0 and failed["rows"] == 200

    done = keel_here("models", "promote", NAME, "2", "--to", "staging", "--reason", "candidate", "--actor", "ci-bot",
                     "--json", "-f", spec)
    assert done.returncode == 0, done.stderr
    change = json.loads(done.stdout)
    assert (change["to_version"], change["alias"], change["actor"]) == (2, "staging", "ci-bot")
    assert change["infra_validation"]["passed"] and change["infra_validation"]["mismatches"] == 0
    promotion = audit.records(event="promotion")[-1]["details"]
    assert promotion["to_version"] == 2 and promotion["infra_validation"]["passed"] is True
    starts = [s for s in aliased.events("serve.start") if s["purpose"] == "infra-validation"]
    assert [(s["ref"], s["version"], s["auth"], s["host"]) for s in starts] == [("3", 3, "on", "127.0.0.1"),
                                                                               ("2", 2, "on", "127.0.0.1")]

    skipped = keel_here("models", "promote", NAME, "3", "--to", "staging", "--reason", "hotfix",
                        "--skip-infra-validation", "-f", spec)
    assert skipped.returncode == 0, skipped.stderr
    assert "WARNING: infra validation skipped" in skipped.stderr
    assert registry.alias_history(NAME)[-1]["reason"] == "hotfix [infra validation skipped]"
    assert audit.records(event="promotion")[-1]["details"]["infra_validation"] == (
        "infra validation skipped (--skip-infra-validation)")

    back = keel_here("models", "rollback", NAME, "--alias", "staging", "--reason", "the hotfix misbehaves",
                     "-f", spec)
    assert back.returncode == 0 and f"{NAME}@staging: v3 -> v2 (rollback" in back.stdout, back.stderr
    again = keel_here("models", "promote", NAME, "2", "--to", "staging", "--reason", "same", "-f", spec)
    assert again.returncode == 0 and "already v2: nothing changed" in again.stdout
    assert len(aliased.events("infra_validation")) == 2  # neither the rollback nor the no-op validated
    assert audit.verify().ok


def test_a_promotion_that_cannot_be_validated_is_refused_with_exit_2(aliased: Aliased) -> None:
    project = aliased.project
    _, bundle = project.registry.bundle(NAME, 2)
    manifest = bundle["manifest"]
    kept = {p: e for p, e in manifest["components"].items() if p != "predictions"}
    old = build_bundle(name=NAME, components={p: e["sha256"] for p, e in kept.items()},
                       codecs={p: e["codec"] for p, e in kept.items()}, info=manifest["info"], keys=project.keys)
    version = project.registry.register(NAME, project.artifacts.put(json.dumps(old).encode(), codec="json"),
                                        run_id=aliased.store.v2_run, summary={}).version
    result = keel_here("models", "promote", NAME, str(version), "--reason", "old bundle", "-f", str(aliased.store.spec))
    _fails(result, 2, "infra validation failed: the bundle carries no held-out rows with recorded predictions")
    assert project.registry.aliases(NAME) == {}
    assert aliased.events("infra_validation")[-1]["outcome"] == "promotion refused"


def _get(port: int, path: str, key: str) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    return response.status, body


def test_keel_serve_follows_an_alias_and_records_its_start(aliased: Aliased, api_key: str) -> None:
    spec, registry = str(aliased.store.spec), aliased.project.registry
    registry.promote(NAME, 2, alias="staging", reason="try it")
    _fails(keel_here("serve", f"{NAME}@nope", "-f", spec), 2, f"model '{NAME}' has no alias 'nope'", "staging (v2)")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "keelml", "serve", f"{NAME}@staging", "-f", spec, "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "keel serve did not become ready"
            try:
                if _get(port, f"/v1/models/{NAME}", api_key)[1].get("version") == 2:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        registry.promote(NAME, 1, alias="staging", reason="back to the released one")
        while _get(port, f"/v1/models/{NAME}", api_key)[1].get("version") != 1:
            assert time.monotonic() < deadline, "keel serve did not follow the alias"
            time.sleep(0.1)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert f"serving {NAME} v2 (@staging, following it) on http://127.0.0.1:{port}" in stderr
    [start] = [s for s in aliased.events("serve.start") if s["purpose"] == "serve"]
    assert {k: start[k] for k in ("model", "ref", "version", "host", "port", "auth", "tls", "workers")} == {
        "model": NAME, "ref": "staging", "version": 2, "host": "127.0.0.1", "port": port, "auth": "on",
        "tls": "off", "workers": 1}
    [swap] = [s for s in aliased.events("serve.swap") if s["ref"] == "staging"]  # not a session server's swap
    assert (swap["from_version"], swap["to_version"], swap["ref"], swap["pid"]) == (2, 1, "staging", proc.pid)
    records = json.dumps(aliased.project.audit.records())
    assert api_key not in records and api_key.split("_", 2)[2] not in records


def test_score_resolves_an_alias(aliased: Aliased, tmp_path: Path) -> None:
    aliased.project.registry.promote(NAME, 2, alias="production", reason="release")
    source = tmp_path / "in.csv"
    pl.DataFrame(sample_rows(aliased.store, 20), infer_schema_length=None).cast(pl.String).write_csv(source)
    result = keel_here("score", f"{NAME}@production", str(source), str(tmp_path / "out.parquet"), "--json",
                       "-f", str(aliased.store.spec))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["version"] == 2 and report["rows_scored"] == 20
    _fails(keel_here("score", f"{NAME}@staging", str(source), str(tmp_path / "x.parquet"), "-f",
                     str(aliased.store.spec)), 2, "has no alias 'staging'")
    assert components(aliased.project, 2)  # the version scored is intact


def test_api_keys_are_audited_but_never_the_key(aliased: Aliased) -> None:
    spec = str(aliased.store.spec)
    created = keel_here("keys", "create-api-key", "--name", "deployer", "--actor", "ops", "-f", spec)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert keel_here("keys", "revoke-api-key", "deployer", "-f", spec).returncode == 0
    [made] = aliased.project.audit.records(event="api_key.create")
    [revoked] = aliased.project.audit.records(event="api_key.revoke")
    assert made["actor"] == "ops" and made["details"] == {"key_name": "deployer", "key_id": key.split("_")[1]}
    assert revoked["details"] == made["details"]
    _fails(keel_here("keys", "revoke-api-key", "deployer", "-f", spec), 2, "no active API key named 'deployer'")
    assert len(aliased.project.audit.records(event="api_key.revoke")) == 1
    records = json.dumps(aliased.project.audit.records())
    assert key not in records and key.split("_", 2)[2] not in records
    assert key.split("_", 2)[2].encode() not in (aliased.store.root / "keel.db").read_bytes()
