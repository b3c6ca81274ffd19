"""The gate's checks on a candidate: its primary metric, fairness and the spec's model tests.

Pure functions of the evaluate and model_tests artifacts, so every check (passed or not) is
recorded in the verdict with its value, its limit and a one-line reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_REASONS = 3  # failed checks named in the verdict's one-line reason


def gate_checks(params: Mapping[str, Any], metrics: Mapping[str, Any], analysis: Mapping[str, Any] | None,
                tests: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every check the spec asks for, in order: metric, fairness, model tests."""
    checks: list[dict[str, Any]] = []
    if params.get("min_score") is not None:
        checks.append(metric_check(metrics["primary"], float(params["min_score"])))
    limit = params.get("max_fairness_difference")
    if limit is not None:
        checks += fairness_checks((analysis or {}).get("fairness") or {}, float(limit))
    for result in (tests or {}).get("results", []):
        state = "passed" if result["passed"] else "failed"
        checks.append({"kind": "model_test", "name": f"{result['kind']}: {result['name']}",
                       "value": result.get("value"), "limit": result.get("limit"), "passed": bool(result["passed"]),
                       "reason": f"model test {result['name']} {state}: {result.get('detail', '')}".rstrip(": ")})
    return checks


def metric_check(primary: Mapping[str, Any], floor: float) -> dict[str, Any]:
    """The primary metric against its limit: a minimum for scores, a maximum for losses."""
    value = float(primary["value"])
    higher_is_better = bool(primary.get("greater_is_better", True))
    if higher_is_better:
        passed = value >= floor
        reason = f"{primary['name']} {value:.4f} {'>=' if passed else '<'} required {floor:.4f}"
    else:
        passed = value <= floor
        reason = f"{primary['name']} {value:.4f} {'<=' if passed else '>'} allowed {floor:.4f}"
    return {"kind": "metric", "name": primary["name"], "metric": primary["name"], "value": value, "limit": floor,
            "higher_is_better": higher_is_better, "passed": passed, "reason": reason}


def fairness_checks(fairness: Mapping[str, Any], limit: float) -> list[dict[str, Any]]:
    """One check per gated difference per sensitive column; none measured at all is a failure."""
    columns = fairness.get("columns") or []
    if not columns:
        return [{"kind": "fairness", "name": "fairness", "value": None, "limit": limit, "passed": False,
                 "reason": "gate.max_fairness_difference is set but no sensitive column was evaluated "
                           "(set data.sensitive_columns or sensitive: true in the contract)"}]
    checks = []
    for entry in columns:
        for measure, value in (entry.get("differences") or {}).items():
            name = f"{measure} by {entry['column']}"
            if value is None:
                checks.append({"kind": "fairness", "name": name, "value": None, "limit": limit, "passed": True,
                               "reason": f"{name} not measurable ({entry.get('note') or 'undefined'})"})
                continue
            passed = float(value) <= limit
            checks.append({"kind": "fairness", "name": name, "value": float(value), "limit": limit,
                           "passed": passed,
                           "reason": f"{name} {float(value):.4f} {'<=' if passed else '>'} allowed {limit:.4f}"})
    return checks


def verdict_of(checks: list[dict[str, Any]], *, min_score_set: bool) -> dict[str, Any]:
    """Passed when every check passed; the reason names the failures, or sums up the passes."""
    if not checks:
        return {"passed": True, "reason": "no gate configured (gate.min_score unset)", "checks": []}
    failed = [c for c in checks if not c["passed"]]
    if failed:
        reason = "; ".join(c["reason"] for c in failed[:MAX_REASONS])
        if len(failed) > MAX_REASONS:
            reason += f"; and {len(failed) - MAX_REASONS} more failed check(s)"
        return {"passed": False, "reason": reason, "checks": checks}
    if len(checks) == 1:
        return {"passed": True, "reason": checks[0]["reason"], "checks": checks}
    first = f" ({checks[0]['reason']})" if checks[0]["kind"] == "metric" else ""
    unset = "" if min_score_set else " (gate.min_score unset)"
    return {"passed": True, "reason": f"all {len(checks)} checks passed{first}{unset}", "checks": checks}
