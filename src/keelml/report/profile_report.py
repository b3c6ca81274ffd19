"""A data profile for people: one-line column summaries, a short HTML table and a full offline page.

Every value that comes from the data (column names, categories) is escaped: the data is hostile.
The page is self-contained: inline CSS and inline SVG charts, no scripts, nothing fetched.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d2733;padding:0 1rem}h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #dde;
overflow-wrap:anywhere}table{border-collapse:collapse;margin:.5rem 0;font-size:.88rem}td,th{padding:.2rem .6rem;
border-bottom:1px solid #eef;text-align:left;overflow-wrap:anywhere;max-width:40rem}th{background:#f5f7fa}
.meta{color:#5f6b7a;font-size:.85rem}.col{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start}
figure{margin:.5rem 0}figcaption{font-size:.8rem;color:#5f6b7a;max-width:560px}code{background:#f5f7fa;padding:0 .25rem}
"""
_MAX_BARS = 20
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _e(value: Any) -> str:
    """Escaped for HTML text and attributes; control characters shown as \\xNN."""
    shown = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))
    return html.escape(shown, quote=True)


def number(value: Any) -> str:
    """A statistic for people: integers as is, other numbers to 6 significant digits, missing as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"
    return str(value)


def percent(fraction: float) -> str:
    if fraction == 0:
        return "0%"
    return "<0.1%" if fraction < 0.001 else f"{fraction:.1%}"


def column_summary(entry: Mapping[str, Any], *, width: int = 60) -> str:
    """One line about a column: the quantile spread of numbers, or the most frequent values."""
    if "histogram" in entry:
        quantiles = entry.get("quantiles") or {}
        text = (f"median {number(quantiles.get('0.5'))}, 1%-99% {number(quantiles.get('0.01'))} .. "
                f"{number(quantiles.get('0.99'))}, range {number(entry.get('min'))} .. {number(entry.get('max'))}")
        odd = [f"{entry[k]} {label}" for k, label in (("nan", "NaN"), ("pos_inf", "+inf"), ("neg_inf", "-inf"))
               if entry.get(k)]
        return text + (f" ({', '.join(odd)})" if odd else "")
    count = int(entry.get("count") or 0)
    parts = []
    for item in entry.get("top", [])[:3]:
        value = _shorten(str(item["value"]), 24)
        parts.append(f"{value} {percent(item['count'] / count) if count else '0%'}")
    if entry.get("outside_domain"):
        parts.append(f"{entry['outside_domain']} outside the contract's categories")
    return _shorten(", ".join(parts), width) if parts else "-"


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table; ``rows`` cells must already be escaped."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def profile_table_html(profile: Mapping[str, Any]) -> str:
    """The short per-column table (column, type, missing, distinct, summary), escaped."""
    rows = [[_e(c["name"]), _e(c["type"]), _e(percent(float(c["null_fraction"]))), _e(c["distinct"]),
             _e(column_summary(c, width=90))] for c in profile.get("columns", [])]
    return _table(["column", "type", "missing", "distinct", "summary"], rows)


def _svg(width: int, height: int, label: str, shapes: list[str], caption: str) -> str:
    return (f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="{_e(label)}">{"".join(shapes)}</svg><figcaption>{_e(caption)}</figcaption></figure>')


def _histogram(entry: Mapping[str, Any]) -> str:
    """Bins drawn at their true position and width between the smallest and largest value; height = density."""
    edges = [float(e) for e in entry["histogram"]["edges"]]
    counts = [int(c) for c in entry["histogram"]["counts"]]
    low, high = entry.get("min"), entry.get("max")
    if low is None or high is None or not any(counts):
        return ""
    low, high = float(low), float(high)
    span = (high - low) or 1.0
    bounds = [low, *edges, high]
    widths = [max(bounds[k + 1] - bounds[k], span / 200) for k in range(len(counts))]
    density = [c / w for c, w in zip(counts, widths, strict=True)]
    peak = max(density) or 1.0
    width, height, pad, plot = 560, 170, 20, 520
    text = ["-inf", *(number(e) for e in edges), "+inf"]
    shapes = []
    for k, count in enumerate(counts):
        if not count:
            continue
        x = 20 + (max(bounds[k], low) - low) / span * plot
        w = max(widths[k] / span * plot, 1.5)
        h = (height - 2 * pad) * density[k] / peak
        shapes.append(f'<rect x="{x:.1f}" y="{height - pad - h:.1f}" width="{w:.1f}" height="{h:.1f}" '
                      f'fill="#1a5fb4" stroke="#fff" stroke-width="0.5"><title>[{_e(text[k])}, {_e(text[k + 1])}): '
                      f"{count}</title></rect>")
    shapes.append(f'<text x="20" y="{height - 4}" font-size="10">{_e(number(entry.get("min")))}</text>'
                  f'<text x="{20 + plot}" y="{height - 4}" font-size="10" text-anchor="end">'
                  f'{_e(number(entry.get("max")))}</text>')
    return _svg(width, height, f"histogram of {entry['name']}", shapes,
                f"{len(counts)} bins with quantile edges, drawn at their true width from the minimum to the "
                "maximum; bar height is count per unit. Hover a bar for its bounds and count.")


def _categories(entry: Mapping[str, Any]) -> str:
    """A horizontal bar per frequent value, labelled with the value and its count."""
    top = list(entry.get("top", []))[:_MAX_BARS]
    if not top:
        return ""
    peak = max(int(item["count"]) for item in top) or 1
    row, label_w, bar_w = 18, 170, 300
    shapes = []
    for k, item in enumerate(top):
        y, count = 4 + k * row, int(item["count"])
        value = str(item["value"])
        w = max(bar_w * count / peak, 1.0)
        shapes.append(f'<text x="{label_w - 6}" y="{y + 12}" font-size="11" text-anchor="end">'
                      f"{_e(_shorten(value, 26))}<title>{_e(value)}</title></text>"
                      f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row - 5}" fill="#1a5fb4">'
                      f"<title>{_e(value)}: {count}</title></rect>"
                      f'<text x="{label_w + w + 4:.1f}" y="{y + 12}" font-size="10">{count}</text>')
    more = len(entry.get("top", [])) - len(top)
    caption = f"the {len(top)} most frequent values" + (f" ({more} more in the JSON profile)" if more else "")
    if entry.get("other"):
        caption += f"; {entry['other']} values are not among the listed ones"
    return _svg(label_w + bar_w + 60, len(top) * row + 10, f"most frequent values of {entry['name']}", shapes,
                caption)


def _column_section(index: int, entry: Mapping[str, Any]) -> str:
    facts = [("type", entry["type"]), ("role", entry.get("role") or "-"), ("values", entry["count"]),
             ("missing", f"{entry['nulls']} ({percent(float(entry['null_fraction']))})"),
             ("distinct", entry["distinct"])]
    if "histogram" in entry:
        facts += [(k, number(entry.get(k))) for k in ("min", "max", "mean", "std")]
        facts += [(f"q{k}", number(v)) for k, v in (entry.get("quantiles") or {}).items()]
        facts += [(k, entry[k]) for k in ("nan", "pos_inf", "neg_inf") if entry.get(k)]
        chart = _histogram(entry)
    else:
        chart = _categories(entry)
    rows = [[_e(k), _e(v)] for k, v in facts]
    if "domain" in entry:
        domain = ", ".join(f"{name}: {count}" for name, count in entry["domain"].items())
        rows.append([_e("contract categories"), _e(_shorten(domain, 400))])
        rows.append([_e("outside the categories"), _e(entry.get("outside_domain", 0))])
    return (f"<h2 id='col-{index}'>{_e(entry['name'])}</h2><div class='col'>"
            f"{_table(['statistic', 'value'], rows)}{chart}</div>")


def render_profile_page(profile: Mapping[str, Any], *, source: str) -> str:
    """A self-contained HTML page for a profile (inline CSS and SVG, no scripts)."""
    columns = list(profile.get("columns", []))
    version = profile.get("contract_version")
    meta = (f"{_e(profile.get('rows'))} rows, {len(columns)} columns · {_e(profile.get('format'))}"
            + (f" · contract <code>{_e(version)}</code>" if version else ""))
    index = [[f"<a href='#col-{i}'>{_e(c['name'])}</a>", _e(c["type"]), _e(percent(float(c["null_fraction"]))),
              _e(c["distinct"]), _e(column_summary(c, width=90))] for i, c in enumerate(columns)]
    body = "\n".join([
        f"<h1>Data profile: {_e(source)}</h1><p class='meta'>{meta}</p>",
        _table(["column", "type", "missing", "distinct", "summary"], index),
        *(_column_section(i, c) for i, c in enumerate(columns)),
    ])
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>keelml profile: {_e(source)}</title><style>{_CSS}</style></head><body>{body}</body></html>")
