"""The gate's security checks: membership-attack AUC and prediction flip rate against the spec's limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _check(metric: str, audit: Mapping[str, Any], key: str, limit: float) -> dict[str, Any]:
    """value <= limit passes; an audit that could not measure the value fails the check (a limit was asked for)."""
    if audit.get(key) is None:
        return {"metric": metric, "value": None, "limit": limit, "higher_is_better": False, "passed": False,
                "reason": f"{metric} not measured ({audit.get('skipped', 'audit skipped')}) but a limit is set"}
    value = float(audit[key])
    passed = value <= limit
    return {"metric": metric, "value": value, "limit": limit, "higher_is_better": False, "passed": passed,
            "reason": f"{metric} {value:.4f} {'<=' if passed else '>'} allowed {limit:.4f}"}


def security_checks(params: Mapping[str, Any], privacy: Mapping[str, Any] | None,
                    robustness: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One check per configured limit (security.max_membership_auc, security.max_flip_rate)."""
    checks = []
    auc_limit = params.get("max_membership_auc")
    if auc_limit is not None and privacy is not None:
        checks.append(_check("membership_auc", privacy["membership"], "auc", float(auc_limit)))
    flip_limit = params.get("max_flip_rate")
    if flip_limit is not None and robustness is not None:
        checks.append(_check("flip_rate", robustness["stability"], "flip_rate", float(flip_limit)))
    return checks
