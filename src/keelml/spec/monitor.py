"""The `monitor:` section of pipeline.yaml: drift thresholds, the window, alert rules and actions.

Every monitoring default lives here and is
explained in docs/monitoring.md.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from keelml.spec.base import StrictModel

DISTRIBUTION_STATISTICS = ("wasserstein", "psi", "ks", "jensen_shannon")
SHARE_STATISTICS = ("unseen", "out_of_range", "nulls")
Statistic = Literal["wasserstein", "psi", "ks", "jensen_shannon", "unseen", "out_of_range", "nulls"]
DEFAULT_DECIDE_ON: tuple[Statistic, ...] = ("wasserstein", "psi", "jensen_shannon", "unseen", "out_of_range", "nulls")
_WINDOW = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_window(text: str | int) -> timedelta | int:
    """A window: a duration (``90s``, ``15m``, ``6h``, ``1d``, ``2w``) or a row count (``10000``)."""
    match = _WINDOW.match(str(text))
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"window {text!r} is neither a duration such as 1d, 6h, 15m nor a row count such as 10000")
    number, unit = int(match.group(1)), match.group(2)
    return timedelta(seconds=number * _UNITS[unit]) if unit else number


class DriftThresholds(StrictModel):
    """Effect sizes above which a statistic says "drift" (docs/monitoring.md explains each)."""

    wasserstein: float = Field(0.1, gt=0, description="Wasserstein-1 distance divided by the reference std")
    psi: float = Field(0.2, gt=0, description="population stability index on the reference's bins")
    ks: float = Field(0.1, gt=0, le=1, description="Kolmogorov-Smirnov statistic (largest CDF gap)")
    jensen_shannon: float = Field(0.1, gt=0, le=1, description="Jensen-Shannon distance, base 2")
    unseen: float = Field(0.01, ge=0, le=1, description="share of values the reference never had")
    out_of_range: float = Field(0.01, ge=0, le=1, description="share of numbers outside the contract range")
    nulls: float = Field(0.1, ge=0, le=1, description="increase of the missing share over the reference")


class DriftSpec(StrictModel):
    """How a column's drift verdict is reached: effect size first, significance as a guard."""

    thresholds: DriftThresholds = Field(default_factory=DriftThresholds)
    decide_on: list[Statistic] = Field(
        default_factory=lambda: list(DEFAULT_DECIDE_ON),
        description="statistics whose exceedance makes a column drifted (the others are reported only)")
    require_significance: bool = Field(
        True, description="distribution statistics count only when the column's test (KS or chi-squared) "
                          "is significant after Benjamini-Hochberg across columns")
    fdr: float = Field(0.05, gt=0, lt=1, description="false discovery rate for Benjamini-Hochberg")
    min_rows: int = Field(100, ge=1, description="fewer rows in the window: verdict 'insufficient'")
    exclude: list[str] = Field(default_factory=list, description="columns not compared")


class PerformanceSpec(StrictModel):
    """Live metrics from feedback labels: over the window, per time bucket and per sensitive group."""

    metric: str | None = Field(None, description="default: evaluate.metric, else the task's primary metric")
    interval: str = Field("1d", description="time bucket for metrics over time (a duration)")
    bootstrap_rounds: int = Field(200, ge=0, le=10_000)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 42
    min_rows: int = Field(100, ge=1, description="labelled rows needed before a metric is judged")
    min_group_rows: int = Field(50, ge=1, description="smallest bucket or sensitive group that is scored")

    @field_validator("interval")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not isinstance(parse_window(value), timedelta):
            raise ValueError("interval must be a duration such as 1h or 1d")
        return value


RuleKind = Literal["feature_drift", "drift_share", "performance", "error_rate", "latency_p99"]


class RuleSpec(StrictModel):
    """One alert rule; it fires when what it watches is worse than its threshold.

    feature_drift: a column's verdict is drift (or, with `statistic`, that statistic exceeds
    `threshold`); drift_share: the share of drifted columns exceeds `threshold` (default 0.3);
    performance: the live metric is below `threshold` (above it for losses); error_rate: the share
    of logged errors exceeds `threshold`; latency_p99: the 99th percentile latency exceeds
    `threshold` milliseconds.
    """

    kind: RuleKind
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
    column: str | None = Field(None, description="feature_drift: the column (default: any column)")
    statistic: Statistic | None = Field(None, description="feature_drift: one statistic instead of the verdict")
    threshold: float | None = None
    metric: str | None = Field(None, description="performance: the metric (default: the primary one)")
    actions: list[str] | None = Field(None, description="names of the actions to run (default: all)")

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> RuleSpec:
        if self.kind != "feature_drift" and (self.column is not None or self.statistic is not None):
            raise ValueError(f"column and statistic apply to feature_drift rules, not {self.kind}")
        if self.kind != "performance" and self.metric is not None:
            raise ValueError(f"metric applies to performance rules, not {self.kind}")
        if self.kind in ("performance", "error_rate", "latency_p99") and self.threshold is None:
            raise ValueError(f"a {self.kind} rule needs a threshold")
        if self.kind == "feature_drift" and self.threshold is not None and self.statistic is None:
            raise ValueError("a feature_drift threshold needs a statistic (e.g. statistic: psi)")
        return self

    @property
    def label(self) -> str:
        return self.name or (f"{self.kind}:{self.column}" if self.column else self.kind)


class ActionSpec(StrictModel):
    """What happens when a rule fires: log a line, POST a webhook, or retrain."""

    type: Literal["log", "webhook", "retrain"]
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
    path: str | None = Field(None, description="log: JSON-lines file (default <store>/monitor/alerts.jsonl)")
    url: str | None = Field(None, description="webhook: an https:// URL")
    allow_private: bool = Field(False, description="webhook: allow private, loopback and link-local addresses")
    timeout_seconds: float = Field(5.0, gt=0, le=60)
    ca_file: str | None = Field(None, description="webhook: PEM file of extra certificate authorities to trust")
    secret_env: str | None = Field(
        None, pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="webhook: environment variable holding a key; the body's HMAC-SHA256 goes in X-Keel-Signature")
    promote: bool = Field(True, description="retrain: promote a passing candidate (needs registry aliases)")
    max_regression: float = Field(
        0.0, ge=0, description="retrain: how much worse than the monitored version the candidate may score")

    @model_validator(mode="after")
    def _fields_fit_type(self) -> ActionSpec:
        webhook_only = {"url": self.url, "ca_file": self.ca_file, "secret_env": self.secret_env}
        if self.type == "webhook":
            if not self.url:
                raise ValueError("a webhook action needs url: https://...")
            if not self.url.lower().startswith("https://"):
                raise ValueError("webhook urls must start with https://")
        elif any(v is not None for v in webhook_only.values()) or self.allow_private:
            raise ValueError(f"url, allow_private, ca_file and secret_env apply to webhook actions, not {self.type}")
        if self.type != "log" and self.path is not None:
            raise ValueError("path applies to log actions")
        return self

    @property
    def label(self) -> str:
        return self.name or self.type


class MonitorSpec(StrictModel):
    """`keel monitor`: the window of the prediction log, drift settings, rules and actions."""

    window: str | int = Field("1d", description="a duration (1d, 6h) or the newest N rows (10000)")
    log_path: str | None = Field(None, description="prediction log directory (default <store>/predictions/<name>)")
    drift: DriftSpec = Field(default_factory=DriftSpec)
    performance: PerformanceSpec = Field(default_factory=PerformanceSpec)
    rules: list[RuleSpec] = Field(default_factory=lambda: [RuleSpec(kind="feature_drift")])
    actions: list[ActionSpec] = Field(default_factory=lambda: [ActionSpec(type="log")])

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | int) -> str | int:
        parse_window(value)
        return value

    @model_validator(mode="after")
    def _names(self) -> MonitorSpec:
        actions = [a.label for a in self.actions]
        if len(set(actions)) != len(actions):
            raise ValueError("two actions have the same name: give each a distinct name:")
        rules = [r.label for r in self.rules]
        if len(set(rules)) != len(rules):
            raise ValueError("two rules have the same name: give each a distinct name:")
        for rule in self.rules:
            unknown = sorted(set(rule.actions or []) - set(actions))
            if unknown:
                raise ValueError(f"rule {rule.label} names unknown action(s) {', '.join(unknown)}; "
                                 f"defined: {', '.join(actions) or 'none'}")
        return self
