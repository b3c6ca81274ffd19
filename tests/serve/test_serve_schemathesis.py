"""Property-based requests generated from the server's own OpenAPI document never get a 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from tests.serve.conftest import NAME, Store, ThreadServer


def test_openapi_fuzzing_finds_no_server_error(server: ThreadServer, store: Store, api_key: str) -> None:
    status, document, _ = server.request("GET", "/openapi.json", key=api_key)
    assert status == 200
    record = next(v for k, v in document["components"]["schemas"].items() if k.endswith("Record"))
    assert record["additionalProperties"] is False and "enum" in str(record["properties"]["workclass"])
    assert record["properties"]["age"]["anyOf"][0]["type"] == "integer" if "anyOf" in record["properties"]["age"] \
        else record["properties"]["age"]["type"] == "integer"
    schema = schemathesis.openapi.from_dict(document)
    base_url = f"http://127.0.0.1:{server.port}"
    headers = {"Authorization": f"Bearer {api_key}"}
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if "{name}" in operation.path:
            strategy = operation.as_strategy(path_parameters={"name": NAME})
        else:
            strategy = operation.as_strategy()

        @given(case=strategy)
        @settings(max_examples=5, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, headers=headers)
            case.validate_response(response, checks=(not_a_server_error,))

        check()
        checked += 1
    assert checked >= 7
    assert server.request("GET", "/v2/health/ready")[0] == 200
