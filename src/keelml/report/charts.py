"""Inline SVG charts drawn in Python (no JavaScript, no CDN): line charts and horizontal bar charts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from keelml.report.html import e

PALETTE = ("#1a5fb4", "#e66100", "#26a269", "#9141ac", "#c01c28", "#986a44")
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 16, 14, 40


@dataclass(frozen=True)
class Series:
    """One line of a line chart."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    color: str = PALETTE[0]
    markers: bool = False
    dashed: bool = False
    notes: Sequence[str] = field(default_factory=tuple)  # a tooltip per point


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / (count - 1)
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if step * m >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(count + 1) if first + i * step <= high + 1e-9]


def _label(value: float) -> str:
    return f"{value:.10g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


def _span(values: Sequence[float], given: tuple[float, float] | None) -> tuple[float, float]:
    if given is not None:
        return given
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
    return low - pad, high + pad


def line_chart(series: Sequence[Series], *, label: str, x_label: str, y_label: str,
               x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
               diagonal: bool = False, caption: str = "", width: int = 440, height: int = 300) -> str:
    """Lines (and optional point markers) on shared axes, with a legend and a caption."""
    xs = [v for s in series for v in s.x]
    ys = [v for s in series for v in s.y]
    x0, x1 = _span(xs, x_range)
    y0, y1 = _span(ys, y_range)
    pw, ph = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM

    def px(v: float) -> float:
        return _LEFT + (v - x0) / ((x1 - x0) or 1.0) * pw

    def py(v: float) -> float:
        return _TOP + ph - (v - y0) / ((y1 - y0) or 1.0) * ph

    parts = [f'<rect x="{_LEFT}" y="{_TOP}" width="{pw}" height="{ph}" fill="#fbfcfe" stroke="#ccd"/>']
    for t in _ticks(x0, x1):
        parts.append(f'<line x1="{px(t):.1f}" y1="{_TOP + ph}" x2="{px(t):.1f}" y2="{_TOP + ph + 4}" stroke="#889"/>'
                     f'<text x="{px(t):.1f}" y="{_TOP + ph + 16}" font-size="10" text-anchor="middle">'
                     f"{e(_label(t))}</text>")
    for t in _ticks(y0, y1):
        parts.append(f'<line x1="{_LEFT - 4}" y1="{py(t):.1f}" x2="{_LEFT + pw}" y2="{py(t):.1f}" stroke="#eef"/>'
                     f'<text x="{_LEFT - 6}" y="{py(t) + 3:.1f}" font-size="10" text-anchor="end">'
                     f"{e(_label(t))}</text>")
    parts.append(f'<text x="{_LEFT + pw / 2:.1f}" y="{height - 6}" font-size="11" text-anchor="middle">'
                 f"{e(x_label)}</text>"
                 f'<text x="12" y="{_TOP + ph / 2:.1f}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 12 {_TOP + ph / 2:.1f})">{e(y_label)}</text>')
    if diagonal:
        low, high = max(x0, y0), min(x1, y1)
        parts.append(f'<line x1="{px(low):.1f}" y1="{py(low):.1f}" x2="{px(high):.1f}" y2="{py(high):.1f}" '
                     'stroke="#99a" stroke-dasharray="4 3"/>')
    for s in series:
        points = [(px(x), py(y)) for x, y in zip(s.x, s.y, strict=False) if math.isfinite(x) and math.isfinite(y)]
        if not points:
            continue
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>')
        if s.markers:
            for i, (x, y) in enumerate(points):
                tip = s.notes[i] if i < len(s.notes) else f"{s.name}"
                parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{s.color}"><title>{e(tip)}</title>'
                             "</circle>")
    for i, s in enumerate(series):
        y = _TOP + 12 + i * 14
        parts.append(f'<rect x="{_LEFT + 8}" y="{y - 8}" width="10" height="3" fill="{s.color}"/>'
                     f'<text x="{_LEFT + 22}" y="{y - 3}" font-size="10">{e(s.name)}</text>')
    return _figure(parts, width, height, label, caption)


def bar_chart(groups: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], *, label: str,
              value_label: str, value_range: tuple[float, float] | None = None, reference: float | None = None,
              intervals: Sequence[tuple[float | None, float | None]] | None = None, caption: str = "",
              width: int = 520, value_labels: bool = True) -> str:
    """Horizontal bars: one row per group, one bar per series; optional reference line and whiskers."""
    bar = 12 if len(series) > 1 else 14
    row = bar * len(series) + 8
    label_w = 170
    height = _TOP + row * len(groups) + _BOTTOM + (14 * len(series) if len(series) > 1 else 0)
    values = [v for _, vs in series for v in vs if v is not None]
    if intervals:
        values += [v for pair in intervals for v in pair if v is not None]
    if reference is not None:
        values.append(reference)
    lo, hi = value_range if value_range is not None else _span(values if reference is not None else [*values, 0.0],
                                                              None)
    pw = width - label_w - _RIGHT

    def px(v: float) -> float:
        return label_w + (min(max(v, lo), hi) - lo) / ((hi - lo) or 1.0) * pw

    base = reference if reference is not None else (0.0 if lo <= 0.0 <= hi else lo)
    plot_h = row * len(groups)
    parts = [f'<rect x="{label_w}" y="{_TOP}" width="{pw}" height="{plot_h}" fill="#fbfcfe" stroke="#ccd"/>']
    for t in _ticks(lo, hi):
        parts.append(f'<line x1="{px(t):.1f}" y1="{_TOP}" x2="{px(t):.1f}" y2="{_TOP + plot_h + 4}" stroke="#eef"/>'
                     f'<text x="{px(t):.1f}" y="{_TOP + plot_h + 16}" font-size="10" text-anchor="middle">'
                     f"{e(_label(t))}</text>")
    for g, group in enumerate(groups):
        top = _TOP + g * row + 4
        short = group if len(group) <= 26 else group[:25] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{top + row / 2:.1f}" font-size="10" text-anchor="end">'
                     f"<title>{e(group)}</title>{e(short)}</text>")
        for k, (name, vals) in enumerate(series):
            value = vals[g]
            if value is None:
                continue
            x_a, x_b = sorted((px(base), px(value)))
            color = PALETTE[k % len(PALETTE)]
            parts.append(f'<rect x="{x_a:.1f}" y="{top + k * bar}" width="{max(x_b - x_a, 1):.1f}" '
                         f'height="{bar - 2}" fill="{color}"><title>{e(group)} · {e(name)}: {value:.4f}</title>'
                         "</rect>")
            if value_labels and not intervals:
                parts.append(_value_label(value, x_a, x_b, px(value) >= px(base), label_w, label_w + pw,
                                          top + k * bar + bar - 4))
        if intervals and intervals[g][0] is not None and intervals[g][1] is not None:
            a, b = px(float(intervals[g][0] or 0.0)), px(float(intervals[g][1] or 0.0))
            mid = top + bar / 2 - 1
            parts.append(f'<line x1="{a:.1f}" y1="{mid:.1f}" x2="{b:.1f}" y2="{mid:.1f}" stroke="#1d2733"/>'
                         f'<line x1="{a:.1f}" y1="{mid - 4:.1f}" x2="{a:.1f}" y2="{mid + 4:.1f}" stroke="#1d2733"/>'
                         f'<line x1="{b:.1f}" y1="{mid - 4:.1f}" x2="{b:.1f}" y2="{mid + 4:.1f}" stroke="#1d2733"/>')
    if reference is not None:
        parts.append(f'<line x1="{px(reference):.1f}" y1="{_TOP}" x2="{px(reference):.1f}" y2="{_TOP + plot_h}" '
                     'stroke="#1d2733" stroke-dasharray="3 2"/>')
    parts.append(f'<text x="{label_w + pw / 2:.1f}" y="{_TOP + plot_h + 30}" font-size="11" '
                 f'text-anchor="middle">{e(value_label)}</text>')
    if len(series) > 1:
        for k, (name, _) in enumerate(series):
            y = _TOP + plot_h + 44 + k * 14
            parts.append(f'<rect x="{label_w}" y="{y - 8}" width="10" height="8" fill="{PALETTE[k % len(PALETTE)]}"/>'
                         f'<text x="{label_w + 14}" y="{y}" font-size="10">{e(name)}</text>')
    return _figure(parts, width, height, label, caption)


def _value_label(value: float, x_a: float, x_b: float, rightward: bool, left: float, right: float,
                 y: float) -> str:
    """The value at the outer end of its bar, or inside the bar (white) where the plot has no room."""
    if rightward:
        outside, x, anchor = x_b + 30 <= right, x_b + 3, "start"
        if not outside:
            x, anchor = x_b - 3, "end"
    else:
        outside, x, anchor = x_a - 30 >= left, x_a - 3, "end"
        if not outside:
            x, anchor = x_a + 3, "start"
    fill = "" if outside else ' style="fill:#fff"'
    return f'<text x="{x:.1f}" y="{y}" font-size="9" text-anchor="{anchor}"{fill}>{value:.3f}</text>'


def _figure(parts: list[str], width: int, height: int, label: str, caption: str) -> str:
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{e(label)}">{"".join(parts)}</svg>')
    return f"<figure>{svg}<figcaption>{e(caption) if caption else e(label)}</figcaption></figure>"
