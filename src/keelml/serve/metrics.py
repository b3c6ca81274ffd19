"""Server metrics in the Prometheus text format, kept in plain dicts (updated on the event loop only)."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Requests, latency histogram, rows, errors, the live model version, swaps and their failures."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency_counts: dict[str, list[int]] = {}
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.rows = 0
        self.errors: dict[str, int] = defaultdict(int)
        self.version = 0
        self.engine = ""
        self.swaps = 0
        self.swap_failures = 0
        self.refused_version = 0  # the version the registry names but this server refused (0: none)
        self.log_dropped = 0
        self.log_rows = 0
        self.extra: list[Callable[[], list[str]]] = []  # more Prometheus lines (extraction alerts)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests[(endpoint, status)] += 1
        counts = self.latency_counts.get(endpoint)
        if counts is None:
            counts = self.latency_counts[endpoint] = [0] * (len(BUCKETS) + 1)
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum[endpoint] += seconds

    def render(self) -> str:
        lines = [
            "# HELP keel_requests_total HTTP requests by endpoint and status code.",
            "# TYPE keel_requests_total counter",
        ]
        for (endpoint, status), n in sorted(self.requests.items()):
            lines.append(f'keel_requests_total{{endpoint="{endpoint}",code="{status}"}} {n}')
        lines += ["# HELP keel_request_duration_seconds Request latency, from the first byte in to the response.",
                  "# TYPE keel_request_duration_seconds histogram"]
        for endpoint, counts in sorted(self.latency_counts.items()):
            total = 0
            for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
                total += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'keel_request_duration_seconds_bucket{{endpoint="{endpoint}",le="{le}"}} {total}')
            lines.append(f'keel_request_duration_seconds_sum{{endpoint="{endpoint}"}} {self.latency_sum[endpoint]}')
            lines.append(f'keel_request_duration_seconds_count{{endpoint="{endpoint}"}} {total}')
        lines += ["# HELP keel_errors_total Rejected or failed requests by kind.", "# TYPE keel_errors_total counter"]
        lines += [f'keel_errors_total{{kind="{kind}"}} {n}' for kind, n in sorted(self.errors.items())]
        model = f'model="{self.model}"'
        lines += [
            "# HELP keel_rows_total Rows predicted.", "# TYPE keel_rows_total counter", f"keel_rows_total {self.rows}",
            "# HELP keel_model_version The model version answering requests.", "# TYPE keel_model_version gauge",
            f'keel_model_version{{{model},engine="{self.engine}"}} {self.version}',
            "# HELP keel_model_swaps_total Versions switched to while running.",
            "# TYPE keel_model_swaps_total counter",
            f"keel_model_swaps_total{{{model}}} {self.swaps}",
            "# HELP keel_model_swap_failures_total Versions refused (verification or smoke prediction failed).",
            "# TYPE keel_model_swap_failures_total counter",
            f"keel_model_swap_failures_total{{{model}}} {self.swap_failures}",
            "# HELP keel_model_refused_version The version the registry names that this server refused to switch to "
            "(0: it serves the version the registry names).",
            "# TYPE keel_model_refused_version gauge",
            f"keel_model_refused_version{{{model}}} {self.refused_version}",
            "# HELP keel_prediction_log_rows_total Rows written to the prediction log.",
            "# TYPE keel_prediction_log_rows_total counter", f"keel_prediction_log_rows_total {self.log_rows}",
            "# HELP keel_prediction_log_dropped_total Log entries dropped (queue full or write error).",
            "# TYPE keel_prediction_log_dropped_total counter", f"keel_prediction_log_dropped_total {self.log_dropped}",
        ]
        for more in self.extra:
            lines += more()
        return "\n".join(lines) + "\n"
