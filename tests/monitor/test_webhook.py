"""Webhooks: refusals before anything is sent, and delivery to a real HTTPS server on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from tests.monitor.tls_server import https_server

from keelml.monitor.actions import ActionContext, run_actions
from keelml.monitor.webhook import WebhookRefused, post_json
from keelml.spec.monitor import ActionSpec

PAYLOAD = {"event": "test", "value": 1}


@pytest.mark.parametrize(("url", "allow_private", "reason"), [
    ("file:///etc/passwd", True, "only https:// URLs"),
    ("http://169.254.169.254/latest/meta-data/", True, "only https:// URLs"),
    ("http://example.com/hook", False, "only https:// URLs"),
    ("https://169.254.169.254/latest/meta-data/", True, "cloud metadata address"),
    ("https://[fd00:ec2::254]/", True, "cloud metadata address"),
    ("https://127.0.0.1:8443/hook", False, "127.0.0.1 is a loopback address"),
    ("https://localhost/hook", False, "loopback address"),
    ("https://[::1]/hook", False, "::1 is a loopback address"),
    ("https://[::ffff:127.0.0.1]/hook", False, "127.0.0.1 is a loopback address"),
    ("https://[64:ff9b::a9fe:a9fe]/hook", True, "169.254.169.254 is a cloud metadata address"),
    ("https://[64:ff9b::a00:1]/hook", False, "10.0.0.1 is a private address"),
    ("https://[2002:c0a8:1::1]/hook", False, "192.168.0.1 is a private address"),
    ("https://2130706433/hook", False, "127.0.0.1 is a loopback address"),
    ("https://10.1.2.3/hook", False, "10.1.2.3 is a private address"),
    ("https://192.168.0.10/hook", False, "private address"),
    ("https://169.254.10.10/hook", False, "link-local address"),
    ("https://100.64.0.1/hook", False, "not public"),
    ("https://0.0.0.0/hook", True, "not a unicast address"),
    ("https://user:secret@example.com/hook", False, "credentials in the URL"),
    ("https:///no-host", False, "no host"),
])
def test_refusals(url: str, allow_private: bool, reason: str) -> None:
    with pytest.raises(WebhookRefused, match=reason):
        post_json(url, PAYLOAD, allow_private=allow_private)


def test_a_name_resolving_to_any_private_address_is_refused() -> None:
    def resolver(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        assert host == "hooks.example.com" and port == 443
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]

    with pytest.raises(WebhookRefused, match="10.0.0.7 is a private address"):
        post_json("https://hooks.example.com/x", PAYLOAD, resolver=resolver)


def test_loopback_is_refused_without_allow_private_and_nothing_is_sent(tmp_path: Path) -> None:
    with https_server(tmp_path) as (base, ca, received):
        with pytest.raises(WebhookRefused, match="loopback"):
            post_json(f"{base}/ok", PAYLOAD, ca_file=str(ca))
        assert received.requests == []


def test_delivers_signed_json_to_a_loopback_server_when_allowed(tmp_path: Path) -> None:
    with https_server(tmp_path) as (base, ca, received):
        result = post_json(f"{base}/ok?team=ml", PAYLOAD, allow_private=True, ca_file=str(ca), secret=b"k3y")
        assert result == {"ok": True, "status": 200, "detail": "delivered (200)"}
        [request] = received.requests
        assert request["path"] == "/ok?team=ml" and json.loads(request["body"]) == PAYLOAD
        assert request["headers"]["Content-Type"] == "application/json"
        expected = "sha256=" + hmac.new(b"k3y", request["body"], hashlib.sha256).hexdigest()
        assert request["headers"]["X-Keel-Signature"] == expected


def test_redirects_are_not_followed(tmp_path: Path) -> None:
    with https_server(tmp_path) as (base, ca, received):
        result = post_json(f"{base}/redirect", PAYLOAD, allow_private=True, ca_file=str(ca))
        assert not result["ok"] and result["status"] == 302 and "not followed" in result["detail"]
        assert received.paths() == ["/redirect"]  # /ok was never requested


def test_tls_is_verified_errors_and_timeouts_are_reported(tmp_path: Path) -> None:
    with https_server(tmp_path) as (base, ca, received):
        untrusted = post_json(f"{base}/ok", PAYLOAD, allow_private=True)  # the system CAs do not know it
        assert not untrusted["ok"] and "CERTIFICATE_VERIFY_FAILED" in untrusted["detail"]
        assert received.requests == []
        failed = post_json(f"{base}/fail", PAYLOAD, allow_private=True, ca_file=str(ca))
        assert not failed["ok"] and failed["status"] == 500
        slow = post_json(f"{base}/slow", PAYLOAD, allow_private=True, ca_file=str(ca), timeout=0.3)
        assert not slow["ok"] and "timed out" in slow["detail"]


def test_webhook_action_sends_the_alert_and_records_it(tmp_path: Path) -> None:
    audit: list[tuple[str, dict[str, Any]]] = []
    with https_server(tmp_path) as (base, ca, received):
        actions = [ActionSpec(type="webhook", name="pager", url=f"{base}/ok", allow_private=True, ca_file=str(ca),
                              secret_env="KEEL_TEST_HOOK_KEY"),
                   ActionSpec(type="webhook", name="blocked", url=f"{base}/ok"),
                   ActionSpec(type="log", name="unused")]
        fired = [{"rule": "feature_drift", "kind": "feature_drift", "value": 2, "threshold": 0, "detail": "age",
                  "actions": ["pager", "blocked"]}]
        ctx = ActionContext(model="m", version=3, default_log=tmp_path / "alerts.jsonl", base_dir=tmp_path,
                            audit=lambda event, **details: audit.append((event, details)),
                            environ={"KEEL_TEST_HOOK_KEY": "s3cret"})
        outcomes = run_actions(actions, fired, {"rows": 10, "drifted_columns": ["age"]}, ctx)
        body = json.loads(received.requests[0]["body"])
    assert [o["status"] for o in outcomes] == ["done", "refused", "not triggered"]
    assert "loopback" in outcomes[1]["detail"]
    assert body["model"] == "m" and body["version"] == 3 and body["drifted_columns"] == ["age"]
    assert body["alerts"][0]["rule"] == "feature_drift"
    assert [e for e, _ in audit] == ["monitor_alert", "monitor_action", "monitor_action"]
    assert all("s3cret" not in json.dumps(d) for _, d in audit)
