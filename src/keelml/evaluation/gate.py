"""The gate's checks on a candidate: its primary metric, fairness, the spec's model tests, and the
comparison with the production version (overall, per slice, agreement).

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


RELATIVE_KEYS = ("max_metric_drop", "max_slice_drop", "min_agreement")
SHOWN_SLICES = 3  # worse slices named in a failed slice check's reason


def compares_with_production(params: Mapping[str, Any]) -> bool:
    """True when the spec sets any limit relative to the production version."""
    return any(params.get(key) is not None for key in RELATIVE_KEYS)


def _drop(candidate: float, production: float, higher_is_better: bool) -> float:
    """How much worse the candidate is than production (negative when better), in metric units."""
    return production - candidate if higher_is_better else candidate - production


def production_checks(params: Mapping[str, Any], comparison: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The candidate against the production version: overall metric, slices, agreement (each a limit)."""
    if not compares_with_production(params) or comparison is None:
        return []
    reference = comparison.get("reference")
    if reference is None or not comparison.get("comparable", False):
        why = ("no production version to compare with" if reference is None
               else f"not compared with production v{reference['version']}: {comparison.get('reason')}")
        return [{"kind": "production", "name": "production comparison", "value": None, "limit": None,
                 "passed": True, "reason": why}]
    version = f"production v{reference['version']}"
    name, higher = comparison["metric"], bool(comparison["greater_is_better"])
    checks: list[dict[str, Any]] = []
    limit = params.get("max_metric_drop")
    if limit is not None:
        mine, theirs = float(comparison["candidate"]), float(comparison["production"])
        drop = _drop(mine, theirs, higher)
        passed = drop <= float(limit) + 1e-12
        worst = theirs - float(limit) if higher else theirs + float(limit)  # the worst value allowed
        checks.append({"kind": "production", "name": f"{name} vs {version}", "value": mine, "limit": worst,
                       "production": theirs, "drop": drop, "allowed_drop": float(limit), "passed": passed,
                       "reason": f"{name} {mine:.4f} vs {version} {theirs:.4f} on the same {comparison['rows']} "
                                 f"held-out rows: {abs(drop):.4f} {'worse' if drop > 0 else 'better or equal'} "
                                 f"(allowed drop {float(limit):.4f})"})
    limit = params.get("max_slice_drop")
    if limit is not None:
        checks.append(_slice_check(comparison, float(limit), version, name, higher))
    floor = params.get("min_agreement")
    if floor is not None:
        share = float(comparison["agreement"])
        passed = share >= float(floor)
        checks.append({"kind": "production", "name": f"agreement with {version}", "value": share,
                       "limit": float(floor), "passed": passed,
                       "reason": f"agreement with {version} {share:.4f} {'>=' if passed else '<'} required "
                                 f"{float(floor):.4f} (share of held-out rows with the same prediction)"})
    return checks


def _slice_check(comparison: Mapping[str, Any], limit: float, version: str, name: str,
                 higher: bool) -> dict[str, Any]:
    """Every slice of at least min_slice_rows rows may be at most `limit` worse than production."""
    measured = [s for s in comparison["slices"] if s["candidate"] is not None and s["production"] is not None]
    drops = sorted(((_drop(float(s["candidate"]), float(s["production"]), higher), s) for s in measured),
                   key=lambda pair: -pair[0])
    worse = [(d, s) for d, s in drops if d > limit + 1e-12]
    worst = drops[0][0] if drops else None
    size = f"{len(measured)} slices of >= {comparison['min_slice_rows']} rows"
    if worse:
        shown = "; ".join(f"{s['column']} = {s['slice']} ({s['n']} rows) {float(s['candidate']):.4f} vs "
                          f"{float(s['production']):.4f}" for _, s in worse[:SHOWN_SLICES])
        more = f"; and {len(worse) - SHOWN_SLICES} more" if len(worse) > SHOWN_SLICES else ""
        reason = (f"{name} worse than {version} by more than {limit:.4f} on {len(worse)} of {size}: "
                  f"{shown}{more}")
    else:
        reason = f"{name} on {size} within {limit:.4f} of {version}" + (
            f" (largest drop {worst:.4f})" if worst is not None else "")
    return {"kind": "production", "name": f"{name} by slice vs {version}", "value": worst, "limit": limit,
            "passed": not worse, "reason": reason,
            "worse_slices": [{**s, "drop": d} for d, s in worse]}


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
