"""The dashboard's browser access: the key once as ?key= on the page, then a session cookie bound to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keelml.serve
from keelml.serve.auth import DASHBOARD_COOKIE, DashboardSessions, KeyChecker, browser_key, hash_key, session_cookie

KEY = "keel_0123456789abcdef_secret"


def scope(method: str, path: str, query: bytes = b"", cookie: str | None = None) -> dict[str, Any]:
    headers = [(b"cookie", cookie.encode())] if cookie is not None else []
    return {"type": "http", "method": method, "path": path, "query_string": query, "headers": headers}


def test_query_key_only_on_the_page_and_cookie_only_for_dashboard_gets() -> None:
    cookie = f"other=1; {DASHBOARD_COOKIE}=abc.def"
    assert browser_key(scope("GET", "/dashboard", b"key=" + KEY.encode())) == KEY
    assert browser_key(scope("GET", "/dashboard/data", b"key=" + KEY.encode())) is None
    assert browser_key(scope("GET", "/dashboard", cookie=f"{DASHBOARD_COOKIE}={KEY}")) is None  # a cookie is no key
    assert session_cookie(scope("GET", "/dashboard/data", cookie=cookie)) == "abc.def"
    assert session_cookie(scope("GET", "/dashboard", cookie=cookie)) == "abc.def"
    for method, path in [("POST", "/dashboard"), ("POST", "/v1/models/m/predict"), ("GET", "/v1/models/m"),
                         ("GET", "/metrics"), ("GET", "/dashboardx"), ("POST", "/v1/models/m/feedback")]:
        assert browser_key(scope(method, path, b"key=" + KEY.encode(), cookie=cookie)) is None, (method, path)
        assert session_cookie(scope(method, path, cookie=cookie)) is None, (method, path)
    assert session_cookie(scope("GET", "/dashboard", cookie="keel_dashboard=")) is None


def test_a_session_is_bound_to_its_key_expires_and_never_holds_the_key() -> None:
    now = [1_000_000.0]
    checker = KeyChecker({"0123456789abcdef": ("browser", hash_key(KEY))})
    sessions = DashboardSessions(checker, seconds=600, secret=b"s" * 32, clock=lambda: now[0])
    token = sessions.open(KEY)
    assert token is not None and KEY.split("_")[2] not in token and hash_key(KEY) not in token
    assert sessions.open(KEY) != token  # a random id per session
    assert sessions.check(token) == "browser"
    assert checker.check(token) is None  # a session is not a key
    assert sessions.check(KEY) is None and sessions.open("keel_0123456789abcdef_wrong") is None
    sid, ident, expires, seal = token.split(".")
    assert sessions.check(f"{sid}.{ident}.{int(expires) + 3600}.{seal}") is None  # a longer life is not sealed
    assert DashboardSessions(checker, seconds=600, secret=b"t" * 32, clock=lambda: now[0]).check(token) is None
    now[0] += 599
    assert sessions.check(token) == "browser"
    now[0] += 2
    assert sessions.check(token) is None  # expired
    now[0] -= 2
    checker.replace({})  # the key was revoked (the server reloads its key table every poll)
    assert sessions.check(token) is None
    checker.replace({"0123456789abcdef": ("browser", hash_key(KEY))})
    assert sessions.check(token) == "browser"
    checker.replace({"0123456789abcdef": ("browser", hash_key(KEY + "x"))})  # another key under that id
    assert sessions.check(token) is None


def test_the_page_script_never_writes_html() -> None:
    assets = Path(keelml.serve.__file__).parent / "assets"
    script = (assets / "dashboard.js").read_text()
    page = (assets / "dashboard.html").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert "<script>" not in page and "http://" not in page.replace('"http://www.w3.org', "")
    assert "https://" not in page + script  # nothing from a CDN
