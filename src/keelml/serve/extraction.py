"""Model-extraction and inversion detection: per-API-key query statistics, kept cheap on the hot path.

For every key the server counts requests and rows, the distinct rows it asked about (a bounded set
of row hashes), the rows whose answer lies near the decision boundary (the two most probable classes
within ``2 * margin`` of each other: for a binary model, a probability within ``margin`` of 0.5), and
consecutive rows that differ in exactly one column (a systematic sweep). A key is *suspected* when
it exceeds its row quota, or when, after ``min_rows`` rows, the near-boundary share or the
one-column-variation share reaches ``share``. Each update is O(columns) per row, O(1) per request
amortised; a suspected key raises one alert (``on_alert``) and, with ``block``, is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("keelml.serve")

MAX_DISTINCT = 100_000
"""Row hashes remembered per key (beyond this the distinct count stops growing)."""
MAX_KEYS = 10_000
"""Keys tracked at once (insecure mode names callers by IP address; this bounds memory)."""


@dataclass
class KeyStats:
    """What one key asked so far."""

    requests: int = 0
    rows: int = 0
    near_boundary: int = 0
    one_column_steps: int = 0
    suspected: str | None = None  # the reason, once suspected
    last_row: tuple[Any, ...] | None = None
    distinct_hashes: set[int] = field(default_factory=set)

    @property
    def distinct(self) -> int:
        return len(self.distinct_hashes)

    def summary(self) -> dict[str, Any]:
        steps = max(self.rows - 1, 1)
        return {"requests": self.requests, "rows": self.rows, "distinct_rows": self.distinct,
                "near_boundary_share": round(self.near_boundary / max(self.rows, 1), 4),
                "one_column_share": round(self.one_column_steps / steps, 4)}


@dataclass(frozen=True)
class ExtractionSettings:
    quota_rows: int | None = None
    min_rows: int = 200
    margin: float = 0.05
    share: float = 0.5
    block: bool = False


Alert = Callable[[str, str, dict[str, Any]], None]


class ExtractionMonitor:
    """Per-key statistics and the suspicion rule; `observe` after each answer, `blocked` before each request."""

    def __init__(self, settings: ExtractionSettings, on_alert: Alert | None = None) -> None:
        self.settings = settings
        self.stats: dict[str, KeyStats] = {}
        self._on_alert = on_alert

    def blocked(self, caller: str) -> bool:
        stats = self.stats.get(caller)
        return self.settings.block and stats is not None and stats.suspected is not None

    @property
    def suspected(self) -> dict[str, str]:
        return {k: s.suspected for k, s in self.stats.items() if s.suspected is not None}

    def observe(self, caller: str, rows: Sequence[Sequence[Any]], margins: Sequence[float | None]) -> None:
        """Record one answered request: its rows and, per row, the gap between the two top probabilities."""
        stats = self.stats.get(caller)
        if stats is None:
            if len(self.stats) >= MAX_KEYS:
                self.stats = {k: s for k, s in self.stats.items() if s.suspected is not None}
            stats = self.stats[caller] = KeyStats()
        stats.requests += 1
        limit = 2 * self.settings.margin
        for row, gap in zip(rows, margins, strict=True):
            values = tuple(row)
            stats.rows += 1
            if len(stats.distinct_hashes) < MAX_DISTINCT:
                stats.distinct_hashes.add(hash(values))
            if gap is not None and gap <= limit:
                stats.near_boundary += 1
            last = stats.last_row
            if (last is not None and len(last) == len(values)
                    and sum(1 for a, b in zip(last, values, strict=True) if a != b) == 1):
                stats.one_column_steps += 1
            stats.last_row = values
        if stats.suspected is None:
            reason = self._reason(stats)
            if reason is not None:
                stats.suspected = reason
                log.warning("model extraction suspected for API key %r: %s", caller, reason)
                if self._on_alert is not None:
                    try:
                        self._on_alert(caller, reason, stats.summary())
                    except Exception as exc:  # an alert sink failing must not fail the request
                        log.error("extraction alert failed: %s: %s", type(exc).__name__, exc)

    def _reason(self, stats: KeyStats) -> str | None:
        s = self.settings
        if s.quota_rows is not None and stats.rows > s.quota_rows:
            return f"over its quota ({stats.rows} rows > {s.quota_rows})"
        if stats.rows < s.min_rows:
            return None
        boundary = stats.near_boundary / stats.rows
        if boundary >= s.share:
            return f"{boundary:.0%} of its rows lie near the decision boundary"
        sweep = stats.one_column_steps / (stats.rows - 1)
        if sweep >= s.share:
            return f"{sweep:.0%} of its consecutive rows differ in exactly one column (a sweep)"
        return None

    def render(self) -> list[str]:
        """Prometheus lines: suspected keys (gauge) and rows per key."""
        lines = ["# HELP keel_extraction_suspected API keys suspected of model extraction (1 = suspected).",
                 "# TYPE keel_extraction_suspected gauge"]
        lines += [f'keel_extraction_suspected{{key="{_label(k)}"}} 1' for k in sorted(self.suspected)]
        lines += ["# HELP keel_extraction_suspected_keys Keys currently suspected of model extraction.",
                  "# TYPE keel_extraction_suspected_keys gauge",
                  f"keel_extraction_suspected_keys {len(self.suspected)}"]
        return lines


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def boundary_gaps(out: Any) -> list[float | None]:
    """Per row, the gap between the two most probable classes (None for regression outputs)."""
    if out.ndim != 2 or out.shape[1] < 2:
        return [None] * len(out)
    if out.shape[1] == 2:  # binary: no sort needed
        return [abs(a - b) for a, b in out.tolist()]
    top2 = np.sort(out, axis=1)[:, -2:]
    return [float(v) for v in (top2[:, 1] - top2[:, 0]).tolist()]
