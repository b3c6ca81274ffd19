"""The run report's Security section: membership and attribute inference, robustness, PII handling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keelml.report.html import e, num, section, table

_PII_ACTIONS = {"drop": "dropped before storage", "hash": "hashed before storage (salted HMAC-SHA256)",
                "keep": "kept as is (declared pii_action: keep)"}


def _limit(value: Any, limit: Any) -> str:
    if limit is None:
        return "no limit set"
    passed = float(value) <= float(limit)
    return (f"<span class='{'pass' if passed else 'fail'}'>{'within' if passed else 'above'}</span> "
            f"the limit {num(limit)}")


def _attributetable(columns: Mapping[str, Any]) -> str:
    rows = []
    for name, entry in columns.items():
        if "skipped" in entry:
            rows.append([e(name), "", "", "", e("skipped: " + str(entry["skipped"]))])
            continue
        flag = "<span class='fail'>flagged</span>" if entry.get("flagged") else "no"
        rows.append([e(name), num(entry.get("attack_balanced_accuracy")),
                     num(entry.get("baseline_balanced_accuracy")), num(entry.get("advantage")), flag])
    if not rows:
        return "<p>Attribute inference: no sensitive columns (data.sensitive_columns) to check.</p>"
    return ("<p>Attribute inference: can the model's outputs reveal a sensitive column? "
            "(cross-validated balanced accuracy of a classifier on the scores)</p>"
            + table(["sensitive column", "attack", "majority baseline", "advantage", "leaks"], rows))


def security_section(security: Mapping[str, Any], contract: Mapping[str, Any]) -> str:
    """Membership and attribute inference, robustness, and how each PII column was handled."""
    parts: list[str] = []
    privacy = security.get("privacy")
    if privacy:
        m = privacy.get("membership", {})
        if "skipped" in m:
            parts.append(f"<p>Membership inference: skipped ({e(m['skipped'])}).</p>")
        else:
            parts.append(
                f"<p>Membership inference ({e(m.get('attack'))} attack, {e(m.get('members'))} training rows vs "
                f"{e(m.get('non_members'))} held-out rows): ROC AUC <b>{num(m.get('auc'))}</b> (0.5 = no leakage; "
                f"{_limit(m.get('auc'), m.get('max_auc'))}), TPR at 1% FPR <b>{num(m.get('tpr_at_1pct_fpr'))}</b>, "
                f"best-threshold advantage {num(m.get('advantage'))}.</p>")
        parts.append(_attributetable(privacy.get("attribute_inference", {}).get("columns", {})))
    else:
        parts.append("<p>Privacy audit: off (security.privacy: false).</p>")
    robustness = security.get("robustness")
    if robustness and "skipped" in robustness.get("stability", {}):
        parts.append(f"<p>Robustness: skipped ({e(robustness['stability']['skipped'])}).</p>")
    elif robustness:
        st = robustness.get("stability", {})
        parts.append(
            f"<p>Robustness: prediction flip rate <b>{num(st.get('flip_rate'))}</b> "
            f"({_limit(st.get('flip_rate'), st.get('max_flip_rate'))}) on {e(st.get('rows'))} held-out rows "
            f"under noise of {num(st.get('noise_scale'), 2)} × IQR on every numeric column and category swaps "
            f"on {float(st.get('swap_fraction') or 0):.0%} of rows, all kept inside the contract.</p>")
        per_column = st.get("columns", {})
        ranked = sorted(per_column, key=lambda c: per_column[c].get("flip_rate", 0), reverse=True)
        parts.append(table(["column (perturbed alone)", "kind", "flip rate", "flip rate of changed rows"],
                            [[e(c), e(per_column[c].get("kind")), num(per_column[c].get("flip_rate")),
                              num(per_column[c].get("flip_rate_changed"))] for c in ranked]))
        attack = robustness.get("attack")
        if attack:
            if "skipped" in attack:
                parts.append(f"<p>Black-box attack: skipped ({e(attack['skipped'])}).</p>")
            else:
                parts.append(f"<p>Black-box attack ({e(attack.get('attack'))}): {e(attack.get('rows'))} rows, "
                             f"success rate {num(attack.get('success_rate'), 2)}, median minimal perturbation "
                             f"{num(attack.get('median_l2'), 3)} IQR units (L2).</p>")
    else:
        parts.append("<p>Robustness audit: off (security.robustness: false).</p>")
    pii = [[e(c["name"]), e(c["pii"]), e(_PII_ACTIONS.get(str(c.get("pii_action")), c.get("pii_action")))]
           for c in contract.get("columns", []) if c.get("pii")]
    if pii:
        parts.append(table(["PII column", "kind", "handling"], pii))
    else:
        parts.append("<p>PII columns: none.</p>")
    return section("security", "Security", "\n".join(parts))
