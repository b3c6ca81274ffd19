"""Model extraction at serving: a key sweeping the input space is flagged, alerted, audited and blocked;
normal traffic is not. PII columns of requests never reach the prediction log in clear."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tests.serve.conftest import NAME, Store, ThreadServer, sample_rows, serve_config

from keelml.data.contract import Contract
from keelml.data.pii import hash_value, pii_key
from keelml.serve.auth import create_api_key
from keelml.serve.extraction import ExtractionMonitor, ExtractionSettings
from keelml.serve.predlog import LogEntry, PredictionLog
from keelml.serve.server import create_app
from keelml.serve.wiring import pii_columns


def _keys(store: Store, *names: str) -> list[str]:
    project = store.open()
    try:
        return [create_api_key(project.metadata, n) for n in names]
    finally:
        project.close()


def _sweep(row: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """One real row with one numeric column stepped through n values: a systematic one-column sweep."""
    column = next(k for k, v in row.items() if isinstance(v, int) and not isinstance(v, bool))
    return [{**row, column: int(row[column]) + i} for i in range(n)]


def test_sweep_is_flagged_audited_and_blocked_normal_traffic_is_not(store: Store) -> None:
    normal_key, sweep_key = _keys(store, "normal-client", "sweeper")
    serve = {"block_suspected_extraction": True, "extraction_min_rows": 50, "log_predictions": False}
    rows = sample_rows(store, 200)
    with ThreadServer(create_app(serve_config(store, serve=serve))) as srv:
        for i in range(0, 200, 10):
            status, _, _ = srv.request("POST", f"/v1/models/{NAME}/predict", {"records": rows[i:i + 10]},
                                       key=normal_key)
            assert status == 200
        sweep = _sweep(rows[0], 80)
        for i in range(0, 80, 10):
            status, _, _ = srv.request("POST", f"/v1/models/{NAME}/predict", {"records": sweep[i:i + 10]},
                                       key=sweep_key)
            assert status in (200, 403)
        status, body, _ = srv.request("POST", f"/v1/models/{NAME}/predict", {"records": rows[:1]}, key=sweep_key)
        assert status == 403 and "extraction" in body["error"]
        assert srv.request("POST", f"/v1/models/{NAME}/predict", {"records": rows[:1]}, key=normal_key)[0] == 200
        _, metrics, _ = srv.request("GET", "/metrics", key=normal_key)
    assert 'keel_extraction_suspected{key="sweeper"} 1' in metrics
    assert "normal-client" not in metrics and "keel_extraction_suspected_keys 1" in metrics
    project = store.open()
    try:
        events = project.audit.records(event="extraction_suspected")
        assert project.audit.verify().problem is None
    finally:
        project.close()
    assert [e["details"]["caller"] for e in events] == ["sweeper"]
    assert events[0]["details"]["one_column_share"] > 0.9 and events[0]["details"]["blocked"] is True


def test_quota_exceeded_without_blocking_alerts_but_answers(store: Store) -> None:
    (key,) = _keys(store, "quota-client")
    serve = {"query_quota_rows": 20, "log_predictions": False}
    rows = sample_rows(store, 30)
    with ThreadServer(create_app(serve_config(store, serve=serve))) as srv:
        for i in range(0, 30, 10):
            assert srv.request("POST", f"/v1/models/{NAME}/predict", {"records": rows[i:i + 10]}, key=key)[0] == 200
        _, metrics, _ = srv.request("GET", "/metrics", key=key)
    assert 'keel_extraction_suspected{key="quota-client"} 1' in metrics


def test_boundary_probing_is_flagged() -> None:
    alerts: list[tuple[str, str]] = []
    monitor = ExtractionMonitor(ExtractionSettings(min_rows=20, margin=0.05, share=0.5),
                                on_alert=lambda key, reason, _stats: alerts.append((key, reason)))
    for i in range(30):  # distinct rows in many columns, each answered near p = 0.5
        monitor.observe("prober", [(i, i * 2, f"c{i}")], [0.04])
        monitor.observe("honest", [(i, i * 3, f"d{i}")], [0.6])
    assert [k for k, _ in alerts] == ["prober"] and "decision boundary" in alerts[0][1]
    assert monitor.stats["prober"].distinct == 30 and not monitor.blocked("prober")  # alert only


def test_monitor_memory_is_bounded_per_key() -> None:
    monitor = ExtractionMonitor(ExtractionSettings(min_rows=10))
    monitor.observe("k", [(i, -i) for i in range(1000)], [None] * 1000)
    stats = monitor.stats["k"]
    assert stats.rows == 1000 and stats.distinct == 1000 and stats.last_row == (999, -999)


@pytest.fixture
def pii_contract(store: Store) -> Contract:
    """The served contract with one feature flagged as personal data (kept) and one to be dropped."""
    import json

    project = store.open()
    try:
        _, bundle = project.registry.bundle(NAME, 1)
        data = project.artifacts.get(bundle["manifest"]["components"]["contract"]["sha256"])
    finally:
        project.close()
    contract = Contract.model_validate(json.loads(data))
    texts = [c.name for c in contract.features if c.type in ("category", "string")]
    columns = [c.model_copy(update={"pii": "person_name", "pii_action": "keep"}) if c.name == texts[0] else
               c.model_copy(update={"pii": "email", "pii_action": "drop"}) if c.name == texts[1] else c
               for c in contract.columns]
    return contract.model_copy(update={"columns": columns})


def test_pii_columns_are_hashed_or_dropped_in_the_prediction_log(pii_contract: Contract, store: Store,
                                                                  tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    hashed, dropped = pii_columns(pii_contract, [])
    assert len(hashed) == 1 and len(dropped) == 1
    features = pii_contract.features
    key = pii_key(b"k" * 32)
    log = PredictionLog(tmp_path, model=NAME, columns=[(c.name, c.type) for c in features], hash_columns=hashed,
                        drop_columns=dropped, hash_key=key, roll_bytes=1 << 20, roll_seconds=3600)
    rows = sample_rows(store, 5)
    secret = "Jane Q. Secretperson"
    values = [tuple(secret if c.name in hashed + dropped else r[c.name] for c in features) for r in rows]
    log.put(LogEntry("r1", time.time(), 1, values, ["x"] * 5, [0.9] * 5, 1.0))
    log.close()
    files = list(tmp_path.glob("predictions-*.parquet"))
    assert len(files) == 1 and secret.encode() not in files[0].read_bytes()
    table = pq.read_table(files[0]).to_pydict()
    assert table[dropped[0]] == [None] * 5
    assert len(set(table[hashed[0]])) == 1 and table[hashed[0]][0] != secret
    assert table[hashed[0]][0] != hash_value(secret, b"another key")[:32]
