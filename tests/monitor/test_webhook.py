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


# Every IPv6 form that carries an IPv4 address is judged as that address: each form once with loopback
# (refused as private) and once with the metadata address (refused even with allow_private). Python's
# `is_global` says True for the IPv4-compatible, translated, local-use NAT64 and site-local ones.
EMBEDDED = [  # (form, loopback 127.0.0.1 in that form, metadata 169.254.169.254 in that form)
    ("IPv4-compatible ::a.b.c.d", "::127.0.0.1", "::169.254.169.254"),
    ("IPv4-mapped ::ffff:a.b.c.d", "::ffff:127.0.0.1", "::ffff:169.254.169.254"),
    ("IPv4-translated ::ffff:0:a.b.c.d", "::ffff:0:7f00:1", "::ffff:0:a9fe:a9fe"),
    ("NAT64 64:ff9b::/96", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe"),
    ("local-use NAT64 64:ff9b:1::/48, /96 form", "64:ff9b:1::7f00:1", "64:ff9b:1::a9fe:a9fe"),
    ("6to4 2002::/16", "2002:7f00:1::1", "2002:a9fe:a9fe::1"),
    ("Teredo 2001::/32, inverted client", "2001:0:4136:e378:8000:63bf:80ff:fffe",
     "2001:0:4136:e378:8000:63bf:5601:5601"),
]


@pytest.mark.parametrize(("form", "loopback", "metadata"), EMBEDDED, ids=[e[0].split()[0] for e in EMBEDDED])
def test_every_embedded_ipv4_form_is_judged_as_its_ipv4_address(form: str, loopback: str, metadata: str) -> None:
    with pytest.raises(WebhookRefused, match=r"^127\.0\.0\.1 is a loopback address"):
        post_json(f"https://[{loopback}]/hook", PAYLOAD)
    with pytest.raises(WebhookRefused, match=r"^169\.254\.169\.254 is a cloud metadata address"):
        post_json(f"https://[{metadata}]/hook", PAYLOAD, allow_private=True)


@pytest.mark.parametrize(("address", "reason"), [
    ("fec0::1", "fec0::1 is a site-local address"),  # deprecated site-local: Python calls it global
    ("feff:ffff::1", "is a site-local address"),  # the top of fec0::/10
    ("64:ff9b:1:7f00:0:100::", "is a local-use NAT64 address"),  # 127.0.0.1 after a /48 prefix (RFC 6052)
    ("64:ff9b:1::808:808", "is a local-use NAT64 address"),  # translated as the local network decides
])
def test_site_local_and_local_use_nat64_are_refused(address: str, reason: str) -> None:
    with pytest.raises(WebhookRefused, match=reason):
        post_json(f"https://[{address}]/hook", PAYLOAD)


def test_local_use_nat64_is_checked_at_every_rfc6052_position() -> None:
    """169.254.169.254 after a /48 prefix (bits 64-71 skipped): refused even with allow_private."""
    with pytest.raises(WebhookRefused, match="may translate to 169.254.169.254, a cloud metadata address"):
        post_json("https://[64:ff9b:1:a9fe:a9:fe00::]/hook", PAYLOAD, allow_private=True)


def test_public_ipv6_and_forms_of_public_ipv4_pass_the_address_check() -> None:
    from keelml.monitor.webhook import check_address

    for address in ("2606:4700:4700::1111", "2002:808:808::1", "64:ff9b::808:808", "::ffff:8.8.8.8"):
        assert check_address(address, allow_private=False)
    assert str(check_address("::ffff:8.8.8.8", allow_private=False)) == "8.8.8.8"  # connects over IPv4


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
