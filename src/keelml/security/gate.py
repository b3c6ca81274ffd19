"""The gate's security checks: membership-attack AUC and prediction flip rate against the spec's limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _check(metric: str, value: float, limit: float) -> dict[str, Any]:
    passed = value <= limit
    return {"metric": metric, "value": value, "limit": limit, "higher_is_better": False, "passed": passed,
            "reason": f"{metric} {value:.4f} {'<=' if passed else '>'} allowed {limit:.4f}"}


def security_checks(params: Mapping[str, Any], privacy: Mapping[str, Any] | None,
                    robustness: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One check per configured limit (security.max_membership_auc, security.max_flip_rate)."""
    checks = []
    auc_limit = params.get("max_membership_auc")
    if auc_limit is not None and privacy is not None:
        checks.append(_check("membership_auc", float(privacy["membership"]["auc"]), float(auc_limit)))
    flip_limit = params.get("max_flip_rate")
    if flip_limit is not None and robustness is not None:
        checks.append(_check("flip_rate", float(robustness["stability"]["flip_rate"]), float(flip_limit)))
    return checks
