"""The monitor: section of pipeline.yaml: defaults, windows, rules and actions checked at load time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from keelml.errors import SpecError
from keelml.spec.monitor import parse_window
from keelml.spec.pipeline import parse_spec

BASE = "name: m\ndata: {train: {path: a.csv}, target: y}\n"


def test_defaults() -> None:
    monitor = parse_spec(BASE).monitor
    assert monitor.window == "1d" and monitor.log_path is None
    assert monitor.drift.thresholds.wasserstein == 0.1 and monitor.drift.thresholds.psi == 0.2
    assert monitor.drift.fdr == 0.05 and monitor.drift.require_significance
    assert [r.kind for r in monitor.rules] == ["feature_drift"] and [a.type for a in monitor.actions] == ["log"]
    assert parse_spec(BASE + "monitor:\n").monitor == monitor  # an empty section means the defaults


@pytest.mark.parametrize(("text", "expected"), [("1d", timedelta(days=1)), ("6h", timedelta(hours=6)),
                                                ("15m", timedelta(minutes=15)), ("90s", timedelta(seconds=90)),
                                                ("2w", timedelta(weeks=2)), ("10000", 10000), (500, 500)])
def test_windows(text: str | int, expected: timedelta | int) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize(("section", "message"), [
    ("window: yesterday", "neither a duration"),
    ("window: 0", "neither a duration"),
    ("rules: [{kind: performance}]", "needs a threshold"),
    ("rules: [{kind: drift_share, column: age}]", "apply to feature_drift rules"),
    ("rules: [{kind: feature_drift, threshold: 0.3}]", "needs a statistic"),
    ("rules: [{kind: feature_drift, statistic: entropy}]", "statistic"),
    ("rules: [{kind: feature_drift, actions: [pager]}]", "unknown action(s) pager"),
    ("actions: [{type: webhook, url: 'http://example.com'}]", "must start with https://"),
    ("actions: [{type: webhook}]", "needs url"),
    ("actions: [{type: log, url: 'https://example.com'}]", "apply to webhook actions"),
    ("actions: [{type: log}, {type: log}]", "same name"),
    ("drift: {fdr: 1.5}", "fdr"),
    ("drift: {thresholds: {psi: -1}}", "psi"),
    ("performance: {interval: '500'}", "interval must be a duration"),
])
def test_invalid_sections(section: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(BASE + "monitor:\n  " + section + "\n")
    assert message in caught.value.render()


def test_unknown_keys_get_a_suggestion() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(BASE + "monitor:\n  rules: [{kind: feature_drift, colum: age}]\n")
    assert "did you mean 'column'" in caught.value.render()
