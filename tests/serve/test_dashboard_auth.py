"""The dashboard's browser key: only GET under /dashboard, from ?key= on the page or its cookie."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keelml.serve
from keelml.serve.auth import DASHBOARD_COOKIE, KeyChecker, browser_key, hash_key

KEY = "keel_0123456789abcdef_secret"


def scope(method: str, path: str, query: bytes = b"", cookie: str | None = None) -> dict[str, Any]:
    headers = [(b"cookie", cookie.encode())] if cookie is not None else []
    return {"type": "http", "method": method, "path": path, "query_string": query, "headers": headers}


def test_query_key_only_on_the_page_and_cookie_only_for_dashboard_gets() -> None:
    cookie = f"other=1; {DASHBOARD_COOKIE}={KEY}"
    assert browser_key(scope("GET", "/dashboard", b"key=" + KEY.encode())) == KEY
    assert browser_key(scope("GET", "/dashboard/data", b"key=" + KEY.encode())) is None
    assert browser_key(scope("GET", "/dashboard/data", cookie=cookie)) == KEY
    assert browser_key(scope("GET", "/dashboard", cookie=cookie)) == KEY
    for method, path in [("POST", "/dashboard"), ("POST", "/v1/models/m/predict"), ("GET", "/v1/models/m"),
                         ("GET", "/metrics"), ("GET", "/dashboardx"), ("POST", "/v1/models/m/feedback")]:
        assert browser_key(scope(method, path, b"key=" + KEY.encode(), cookie=cookie)) is None, (method, path)
    assert browser_key(scope("GET", "/dashboard", cookie="keel_dashboard=")) is None
    checker = KeyChecker({"0123456789abcdef": ("browser", hash_key(KEY))})
    assert checker.check(browser_key(scope("GET", "/dashboard/data", cookie=cookie))) == "browser"
    assert checker.check(browser_key(scope("GET", "/dashboard/data", cookie=f"{DASHBOARD_COOKIE}=x"))) is None


def test_the_page_script_never_writes_html() -> None:
    assets = Path(keelml.serve.__file__).parent / "assets"
    script = (assets / "dashboard.js").read_text()
    page = (assets / "dashboard.html").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert "<script>" not in page and "http://" not in page.replace('"http://www.w3.org', "")
    assert "https://" not in page + script  # nothing from a CDN
