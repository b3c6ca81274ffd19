"""The HTTP surface over real loopback connections: auth, bad payloads, limits, answers, KServe V2, metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tests.serve.conftest import NAME, Store, ThreadServer, sample_rows

PREDICT = f"/v1/models/{NAME}/predict"


def test_no_key_wrong_key_valid_key(server: ThreadServer, store: Store, api_key: str) -> None:
    rows = sample_rows(store, 1)
    status, body, _ = server.request("POST", PREDICT, {"records": rows})
    assert status == 401 and body == {"error": "missing or invalid API key"}
    forged = api_key[:-4] + ("AAAA" if not api_key.endswith("AAAA") else "BBBB")
    assert server.request("POST", PREDICT, {"records": rows}, key=forged)[0] == 401
    assert server.request("POST", PREDICT, {"records": rows}, key="keel_0000000000000000_x")[0] == 401
    status, body, headers = server.request("POST", PREDICT, {"records": rows}, key=api_key)
    assert status == 200, body
    assert body["model_version"] == 1 and headers["x-model-version"] == "1"
    prediction = body["predictions"][0]
    assert set(prediction) == {"label", "top_k"} and len(prediction["top_k"]) == 1  # top_k only, no raw scores
    probability = prediction["top_k"][0]["probability"]
    assert probability == round(probability, 3)
    # the same key in the X-API-Key header; health endpoints need no key
    assert server.request("GET", "/metrics", headers={"X-API-Key": api_key})[0] == 200
    assert server.request("GET", "/metrics")[0] == 401
    assert server.request("GET", "/openapi.json")[0] == 401
    assert server.request("GET", "/v2/health/live")[0] == 200
    assert server.request("GET", "/v2/health/ready")[0] == 200


def _record(store: Store) -> dict[str, object]:
    return dict(sample_rows(store, 1)[0])


BAD_PAYLOADS = {
    "missing field": lambda r: {"records": [{k: v for k, v in r.items() if k != "age"}]},
    "extra field": lambda r: {"records": [{**r, "salary": 1}]},
    "wrong type": lambda r: {"records": [{**r, "age": "forty"}]},
    "float for integer": lambda r: {"records": [{**r, "age": 40.5}]},
    "unknown category": lambda r: {"records": [{**r, "workclass": "Astronaut"}]},
    "out of range": lambda r: {"records": [{**r, "age": 10_000}]},
    "null in required column": lambda r: {"records": [{**r, "education": None}]},
    "no records": lambda r: {"records": []},
    "not an object": lambda r: [r],
}


@pytest.mark.parametrize("case", list(BAD_PAYLOADS))
def test_bad_payloads_are_422_with_field_errors(server: ThreadServer, store: Store, api_key: str, case: str) -> None:
    status, body, _ = server.request("POST", PREDICT, BAD_PAYLOADS[case](_record(store)), key=api_key)
    assert status == 422, (case, body)
    assert body["error"] == "invalid request" and body["detail"]
    assert all("input" not in err for err in body["detail"])  # submitted values are not echoed
    assert server.request("GET", "/v2/health/ready")[0] == 200


def test_nan_inf_big_bodies_many_rows_and_binary_types(server: ThreadServer, store: Store, api_key: str) -> None:
    record = _record(store)
    for token in ("NaN", "Infinity", "-Infinity"):
        raw = json.dumps({"records": [record]}).replace('"hours-per-week": ' + json.dumps(record["hours-per-week"]),
                                                         f'"hours-per-week": {token}').encode()
        assert token.encode() in raw
        status, body, _ = server.request("POST", PREDICT, raw=raw, key=api_key)
        assert status == 422, body
    big = b'{"records": [' + b" " * (10 * 1024 * 1024) + b"]}"
    status, body, _ = server.request("POST", PREDICT, raw=big, key=api_key)
    assert status == 413 and "larger than" in body["error"]
    million = b'{"records": [' + b",".join([b"{}"] * 1_000_000) + b"]}"
    assert server.request("POST", PREDICT, raw=million, key=api_key)[0] == 413
    too_many = {"records": [record] * 1001}  # under the byte limit, over max_rows
    status, body, _ = server.request("POST", PREDICT, too_many, key=api_key)
    assert status == 422 and body["detail"][0]["type"] == "too_long"
    for content_type in ("application/python-pickle", "application/octet-stream", "text/plain"):
        status, body, _ = server.request("POST", PREDICT, raw=b"\x80\x04\x95.", key=api_key,
                                         headers={"Content-Type": content_type})
        assert status == 415, content_type
    status, body, _ = server.request("POST", PREDICT, raw=b"{not json", key=api_key)
    assert status == 422 and body["detail"][0]["type"] == "json_invalid"
    assert server.request("GET", "/v2/health/ready")[0] == 200
    status, _, _ = server.request("POST", PREDICT, {"records": [record]}, key=api_key)
    assert status == 200  # still serving


def test_served_answers_equal_offline_predictions_on_the_whole_test_set(
        server: ThreadServer, store: Store, api_key: str) -> None:
    """JSON null reaches the model as the training missing marker: served == offline, row for row."""
    import polars as pl

    from keelml.model.persist import load_model

    rows = sample_rows(store)
    assert any(v is None for r in rows for v in r.values()), "the test set should contain missing values"
    project = store.open()
    try:
        _, bundle = project.registry.bundle(NAME, 1)
        model = load_model(project.artifacts.get(bundle["manifest"]["components"]["model"]["sha256"]))
    finally:
        project.close()
    offline = model.predict_proba(pl.DataFrame(rows, infer_schema_length=None).to_pandas())
    served: list[float] = []
    for start in range(0, len(rows), 500):
        status, body, _ = server.request("POST", PREDICT, {"records": rows[start:start + 500]}, key=api_key)
        assert status == 200, body
        for p in body["predictions"]:
            top = p["top_k"][0]
            served.append(top["probability"] if top["class"] == model.classes_[1] else 1 - top["probability"])
    assert len(served) == len(rows)
    assert np.max(np.abs(np.asarray(served) - offline[:, 1])) <= 0.0005 + 1e-9  # 3-decimal rounding only


def test_kserve_v2_metadata_and_infer(server: ThreadServer, store: Store, api_key: str) -> None:
    rows = sample_rows(store, 3)
    status, meta, _ = server.request("GET", f"/v2/models/{NAME}", key=api_key)
    assert status == 200 and meta["versions"] == ["1"] and meta["platform"] == "keelml-onnx"
    kinds = {i["name"]: i["datatype"] for i in meta["inputs"]}
    inputs = [{"name": c, "shape": [3], "datatype": kinds[c], "data": [r[c] for r in rows]} for c in rows[0]]
    status, body, _ = server.request("POST", f"/v2/models/{NAME}/infer", {"id": "abc", "inputs": inputs}, key=api_key)
    assert status == 200, body
    assert body["model_version"] == "1" and body["id"] == "abc"
    _, v1, _ = server.request("POST", PREDICT, {"records": rows}, key=api_key)
    assert body["outputs"][0]["data"] == [p["label"] for p in v1["predictions"]]
    bad = [dict(i, data=["x", "y", "z"]) if i["name"] == "age" else i for i in inputs]
    status, body, _ = server.request("POST", f"/v2/models/{NAME}/infer", {"inputs": bad}, key=api_key)
    assert status == 422 and body["detail"][0]["loc"][:2] == ["inputs", "age"]
    status, body, _ = server.request("POST", f"/v2/models/{NAME}/infer", {"inputs": inputs[1:]}, key=api_key)
    assert status == 422 and "missing" in body["detail"][0]["msg"]


def test_feedback_metrics_and_unknown_model(server: ThreadServer, store: Store, api_key: str) -> None:
    _, body, _ = server.request("POST", PREDICT, {"records": sample_rows(store, 2)}, key=api_key)
    request_id = body["request_id"]
    status, body, _ = server.request("POST", f"/v1/models/{NAME}/feedback",
                                     {"request_id": request_id, "row": 1, "label": ">50K"}, key=api_key)
    assert status == 202 and body["accepted"]
    assert server.request("POST", f"/v1/models/{NAME}/feedback", {"request_id": request_id, "label": "rich"},
                          key=api_key)[0] == 422
    assert server.request("POST", "/v1/models/other/predict", {"records": []}, key=api_key)[0] == 404
    status, text, headers = server.request("GET", "/metrics", key=api_key)
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert f'keel_model_version{{model="{NAME}",engine="onnx"}} 1' in text
    assert 'keel_requests_total{endpoint="predict",code="200"}' in text
    assert 'keel_request_duration_seconds_bucket{endpoint="predict",le="+Inf"}' in text
    assert "keel_model_swap_failures_total" in text
    rows = float(text.split("\nkeel_rows_total ")[1].split()[0])
    assert rows >= 2 and not math.isnan(rows)
