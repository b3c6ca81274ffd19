"""HTML building blocks of the reports: escaping, numbers, tables, sections and the page's CSS."""

from __future__ import annotations

import html
import math
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1080px;
color:#1d2733;padding:0 1rem;line-height:1.4}h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;
border-bottom:1px solid #dde;padding-bottom:.2rem}h3{font-size:1.02rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.88rem}td,th{padding:.22rem .6rem;border-bottom:1px solid #eef;
text-align:left;vertical-align:top}th{background:#f5f7fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#137333;font-weight:600}.fail{color:#b3261e;font-weight:600}.muted,.meta{color:#5f6b7a;font-size:.85rem}
code{background:#f5f7fa;padding:0 .25rem}figure{margin:1rem 0;display:inline-block;vertical-align:top}
figcaption{font-size:.8rem;color:#5f6b7a;max-width:460px}nav a{margin-right:.7rem;font-size:.85rem}
.cards{display:flex;flex-wrap:wrap;gap:.7rem}.card{border:1px solid #dde;border-radius:6px;padding:.5rem .8rem}
.card b{display:block;font-size:1.2rem}details summary{cursor:pointer;color:#1a5fb4}svg text{fill:#1d2733}
"""


def e(value: Any) -> str:
    """Any value as escaped text (quotes too: safe in attributes)."""
    return html.escape(str(value), quote=True)


def num(value: Any, digits: int = 4) -> str:
    """A number for people: floats to `digits` decimals, ints as they are, missing as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return e(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "–"
    if isinstance(value, int):
        return str(value)
    return e(value)


def pct(value: Any, digits: int = 1) -> str:
    return "–" if not isinstance(value, int | float) else f"{100 * float(value):.{digits}f}%"


def table(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """A table of already-escaped cells; columns in `numeric` are right-aligned."""
    numeric = numeric or set()
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class='n'>{c}</td>" if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def section(anchor: str, title: str, body: str) -> str:
    return f"<section id='{e(anchor)}'><h2>{e(title)}</h2>{body}</section>"


def not_run(what: str) -> str:
    return f"<p class='muted'>{e(what)}: not run.</p>"


def verdict_badge(passed: Any) -> str:
    return "<span class='pass'>passed</span>" if passed else "<span class='fail'>failed</span>"
