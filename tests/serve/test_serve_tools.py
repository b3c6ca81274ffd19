"""Infra validation, batch scoring, containerisation, the prediction log, TLS, rate limits and API keys."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import io
import json
import ssl
from pathlib import Path

import polars as pl
import pytest
from tests.helpers import keel
from tests.serve.conftest import NAME, Store, ThreadServer, sample_rows, serve_config

from keelml.errors import IntegrityError
from keelml.serve.server import ServeConfig, create_app


def test_infra_validation_serves_held_out_rows_in_a_fresh_process(store: Store) -> None:
    from keelml.serve.infra import infra_validate

    project = store.open()
    try:
        report = infra_validate(project, NAME, 1, sample=300)
    finally:
        project.close()
    assert report.passed, report.reason
    assert report.rows == 300 and report.mismatches == 0 and report.engine == "onnx"
    assert "match the recorded predictions" in report.reason


def test_infra_validation_refuses_a_model_whose_answers_differ(store: Store, tmp_path: Path) -> None:
    """Version 1's recorded predictions against version 2's model: the comparison must fail."""
    from keelml.serve.recorded import compare, recorded_sample

    project = store.open()
    try:
        from keelml.serve.engine import load_registered

        v1 = load_registered(project, NAME, 1)
        v2 = load_registered(project, NAME, 2) if len(project.registry.versions(NAME)) > 1 else None
        sample = recorded_sample(project.artifacts.get, v1.components, v1.columns, v1.task, 200)
    finally:
        project.close()
    assert compare(sample, v1.predictor.rows(sample.rows), v1.labels)[0] == 0
    if v2 is not None:
        mismatches, worst, _ = compare(sample, v2.predictor.rows(sample.rows), v2.labels)
        assert mismatches > 0 and worst > 1e-3


def test_batch_scoring_writes_predictions_and_rejects(store: Store, tmp_path: Path) -> None:
    from keelml.serve.batch import score_file
    from keelml.serve.engine import load_registered

    rows = sample_rows(store, 50)
    frame = pl.DataFrame(rows, infer_schema_length=None).cast(pl.String)
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("old")).otherwise(pl.col("age"))
                               .alias("age"))
    source = tmp_path / "in.csv"
    frame.write_csv(source)
    project = store.open()
    try:
        model = load_registered(project, NAME, 1)
    finally:
        project.close()
    report = score_file(model, source, tmp_path / "out.parquet", chunk_rows=20)
    assert (report.rows_in, report.rows_scored, report.rows_rejected) == (50, 49, 1)
    out = pl.read_parquet(tmp_path / "out.parquet")
    assert out.height == 49 and 3 not in out.get_column("_row").to_list()
    assert {"prediction", "proba_<=50K", "proba_>50K"} <= set(out.columns)
    rejects = pl.read_parquet(tmp_path / "out.rejects.parquet")
    assert rejects.get_column("_row").to_list() == [3]
    assert "age: 'old' is not an integer" in rejects.get_column("_reason")[0]
    lines = tmp_path / "in.jsonl"  # JSON lines streams by blocks of lines, with the same results
    frame.write_ndjson(lines)
    report = score_file(model, lines, tmp_path / "lines.parquet", chunk_rows=7)
    assert (report.rows_in, report.rows_scored, report.rows_rejected) == (50, 49, 1)
    assert pl.read_parquet(tmp_path / "lines.parquet").equals(out)


def test_containerize_writes_a_minimal_secure_build_context(store: Store, tmp_path: Path) -> None:
    result = keel("containerize", f"{NAME}/1", "-o", str(tmp_path / "ctx"), "-f", str(store.spec))
    assert result.returncode == 0, result.stderr
    ctx = tmp_path / "ctx"
    dockerfile = (ctx / "Dockerfile").read_text()
    assert dockerfile.startswith("# keelml model server") and "FROM python:3.11-slim" in dockerfile
    assert "USER keel" in dockerfile and "useradd --system" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/v2/health/ready" in dockerfile
    assert "COPY bundle/ /app/bundle/" in dockerfile and "pip install --no-cache-dir -r" in dockerfile
    requirements = (ctx / "requirements.txt").read_text()
    assert "onnxruntime==" in requirements and "scikit-learn" not in requirements
    assert "pytest" not in requirements and "polars" not in requirements
    compose = (ctx / "compose.yaml").read_text()
    assert '"127.0.0.1:8000:8000"' in compose and "read_only: true" in compose and "keel_api_keys" in compose
    components = list((ctx / "bundle" / "components").iterdir())
    assert len(components) == 3  # contract, engine, onnx: no held-out data, no scikit-learn model
    assert not (ctx / "keelml" / "cli" / "__pycache__").exists()
    from keelml.errors import KeelError
    from keelml.serve.containerize import containerize

    project = store.open()
    try:
        with pytest.raises(KeelError, match="is not empty"):
            containerize(project, NAME, 1, ctx, serve={})
    finally:
        project.close()


def test_exported_bundle_serves_and_refuses_tampering(store: Store, api_key: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from keelml.serve.auth import active_key_hashes, write_hashes_file
    from keelml.serve.exported import export_bundle
    from keelml.store.sealed import LOG_KEY_ENV, log_key_for

    project = store.open()
    try:
        export_bundle(project, NAME, 1, tmp_path / "bundle")
        write_hashes_file(tmp_path / "keys", active_key_hashes(project.metadata))
        signer = project.keys.key_id
        monkeypatch.setenv(LOG_KEY_ENV, base64.b64encode(log_key_for(project.keys)).decode())  # seals the log
    finally:
        project.close()
    config = ServeConfig(store_root=None, model=NAME, bundle_dir=str(tmp_path / "bundle"),
                         keys_file=str(tmp_path / "keys"), trusted_key_id=signer,
                         serve={"log_path": str(tmp_path / "log")})
    with ThreadServer(create_app(config)) as server:
        status, body, _ = server.request("POST", f"/v1/models/{NAME}/predict", {"records": sample_rows(store, 2)},
                                         key=api_key)
        assert status == 200 and body["model_version"] == 1 and body["engine"] == "onnx"
    with pytest.raises(IntegrityError, match="not the trusted key"):
        create_app(ServeConfig(**{**config.__dict__, "trusted_key_id": "ed25519:0000000000000000"}))
    victim = next((tmp_path / "bundle" / "components").iterdir())
    victim.write_bytes(victim.read_bytes() + b" ")
    with pytest.raises(IntegrityError, match="was altered"):
        create_app(config)


def test_prediction_log_and_feedback_are_written_as_parquet(store: Store, api_key: str, tmp_path: Path) -> None:
    from keelml.monitor.window import log_keys, read_prediction_log
    from keelml.store.sealed import open_sealed

    log_dir = tmp_path / "log"
    config = serve_config(store, version=1, serve={"log_path": str(log_dir), "hash_columns": ["native-country"]})
    rows = sample_rows(store, 3)
    with ThreadServer(create_app(config)) as server:
        _, body, _ = server.request("POST", f"/v1/models/{NAME}/predict", {"records": rows}, key=api_key)
        status, _, _ = server.request("POST", f"/v1/models/{NAME}/feedback",
                                      {"request_id": body["request_id"], "row": 0, "label": "<=50K"}, key=api_key)
        assert status == 202
    project = store.open()
    keys = log_keys(project.keys, encrypted=True)
    project.close()
    sealed = next(log_dir.glob("predictions-*.parquet.sealed"))  # encrypted and signed, with the project's keys
    predictions = pl.read_parquet(io.BytesIO(open_sealed(sealed.read_bytes(), keys.rings, where="log")))
    assert predictions.height == 3 and set(predictions.get_column("request_id")) == {body["request_id"]}
    assert predictions.get_column("version").to_list() == [1, 1, 1]
    assert predictions.get_column("age").to_list() == [r["age"] for r in rows]
    hashed = predictions.get_column("native-country").to_list()
    assert all(h is None or (len(h) == 32 and h != r["native-country"]) for h, r in zip(hashed, rows, strict=True))
    feedback = pl.read_parquet(io.BytesIO(open_sealed(next(log_dir.glob("feedback-*.parquet.sealed")).read_bytes(),
                                                      keys.rings, where="log")))
    assert feedback.row(0, named=True)["label"] == "<=50K"
    assert not list(log_dir.glob("*.part"))  # every file finalised at shutdown
    joined = read_prediction_log(log_dir, keys=keys).sort("row")  # what keel monitor and the dashboard read
    assert joined.get_column("label").to_list() == ["<=50K", None, None]


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_tls_and_rate_limit(store: Store, api_key: str, tmp_path: Path) -> None:
    cert, key_file = _self_signed(tmp_path)
    config = serve_config(store, version=1, serve={"rate_limit": 1, "rate_burst": 3, "log_predictions": False})
    with ThreadServer(create_app(config), ssl=(cert, key_file)) as server:
        context = ssl.create_default_context(cafile=cert)
        statuses = []
        for _ in range(5):
            conn = http.client.HTTPSConnection("localhost", server.port, context=context, timeout=10)
            conn.request("GET", f"/v1/models/{NAME}", headers={"Authorization": f"Bearer {api_key}"})
            response = conn.getresponse()
            statuses.append(response.status)
            if response.status == 429:
                assert response.getheader("retry-after") == "1"
                assert json.loads(response.read()) == {"error": "rate limit exceeded"}
            conn.close()
        assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
        plain = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain.request("GET", "/v2/health/live")
            plain.getresponse().read()


def test_api_keys_are_shown_once_and_stored_hashed(store: Store) -> None:
    result = keel("keys", "create-api-key", "--name", "ci", "-f", str(store.spec))
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("keel_") and "not shown again" in result.stderr
    database = (store.root / "keel.db").read_bytes()
    assert key.encode() not in database and key.split("_", 2)[2].encode() not in database
    from keelml.errors import KeelError
    from keelml.serve.auth import KeyChecker, active_key_hashes, create_api_key, list_api_keys, revoke_api_key

    project = store.open()
    try:
        assert KeyChecker(active_key_hashes(project.metadata)).check(key) == "ci"
        assert KeyChecker(active_key_hashes(project.metadata)).check(key + "x") is None
        with pytest.raises(KeelError, match="already exists"):
            create_api_key(project.metadata, "ci")
        revoke_api_key(project.metadata, "ci")
        assert KeyChecker(active_key_hashes(project.metadata)).check(key) is None
        assert [k.revoked_at is not None for k in list_api_keys(project.metadata) if k.name == "ci"] == [True]
    finally:
        project.close()


def test_insecure_mode_opens_the_endpoints(store: Store) -> None:
    config = serve_config(store, version=1, insecure_no_auth=True, serve={"log_predictions": False})
    with ThreadServer(create_app(config)) as server:
        status, body, _ = server.request("POST", f"/v1/models/{NAME}/predict", {"records": sample_rows(store, 1)})
        assert status == 200 and body["model_version"] == 1


def test_serve_command_refuses_bad_arguments_before_starting(store: Store) -> None:
    unknown = keel("serve", "no-such-model", "-f", str(store.spec), "--port", "0")
    assert unknown.returncode == 2 and "no model named 'no-such-model'" in unknown.stderr
    half_tls = keel("serve", f"{NAME}/1", "-f", str(store.spec), "--tls-cert", str(store.spec))
    assert half_tls.returncode == 2 and "--tls-cert and --tls-key go together" in half_tls.stderr
