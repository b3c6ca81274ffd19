"""The run report's Security section: audit figures, limits, and how each PII column was handled."""

from __future__ import annotations

import copy

from keelml.report.run_report import render_run_report

CONTRACT = {
    "target": "y", "task": "binary", "classes": ["a", "b"],
    "columns": [
        {"name": "email", "type": "string", "role": "ignore", "pii": "email", "pii_action": "hash"},
        {"name": "phone", "type": "string", "role": "ignore", "pii": "phone", "pii_action": "drop"},
        {"name": "<b>sex</b>", "type": "category", "role": "feature", "categories": ["f", "m"], "sensitive": True},
        {"name": "y", "type": "category", "role": "target", "categories": ["a", "b"]},
    ],
}
SECURITY = {
    "privacy": {
        "membership": {"attack": "loss threshold (cross-entropy)", "auc": 0.8123, "tpr_at_1pct_fpr": 0.05,
                       "advantage": 0.4, "members": 300, "non_members": 300, "max_auc": 0.6},
        "attribute_inference": {"columns": {
            "<b>sex</b>": {"attack_balanced_accuracy": 0.7, "baseline_balanced_accuracy": 0.5, "advantage": 0.2,
                           "flagged": True}}},
    },
    "robustness": {"stability": {"flip_rate": 0.031, "rows": 300, "noise_scale": 0.1, "swap_fraction": 0.1,
                                 "max_flip_rate": None,
                                 "columns": {"<b>sex</b>": {"kind": "swap", "flip_rate": 0.01,
                                                            "flip_rate_changed": 0.1}}},
                   "attack": {"skipped": "adversarial-robustness-toolbox is not installed"}},
}


def render(security: object, contract: object = CONTRACT) -> str:
    return render_run_report(
        run_id="r", pipeline="p", contract=contract, validation={}, cv={}, metrics={}, verdict=None,  # type: ignore[arg-type]
        data_digests={"train": "ab" * 32}, registration=None, security=security)  # type: ignore[arg-type]


def test_security_section_shows_the_audits_and_their_limits() -> None:
    page = render(SECURITY)
    start = page.index("<section id='security'>")
    section = page[start:page.index("</section>", start)]
    assert "ROC AUC <b>0.8123</b>" in section and "above</span> the limit 0.6000" in section
    assert "TPR at 1% FPR <b>0.0500</b>" in section
    assert "flip rate <b>0.0310</b>" in section and "no limit set" in section
    assert "<td>0.2000</td><td><span class='fail'>flagged</span>" in section
    assert "Black-box attack: skipped" in section
    assert "<b>sex</b>" not in section and "&lt;b&gt;sex&lt;/b&gt;" in section  # names are escaped


def test_each_pii_column_and_its_handling_is_listed() -> None:
    section = render(SECURITY).split("<h2>Security</h2>")[1]
    assert "<td>email</td><td>email</td><td>hashed before storage (salted HMAC-SHA256)</td>" in section
    assert "<td>phone</td><td>phone</td><td>dropped before storage</td>" in section
    plain = copy.deepcopy(CONTRACT)
    plain["columns"] = plain["columns"][2:]  # type: ignore[index]
    assert "PII columns: none." in render(SECURITY, plain)


def test_audits_turned_off_say_so() -> None:
    page = render({})
    assert "Privacy audit: off (security.privacy: false)" in page
    assert "Robustness audit: off (security.robustness: false)" in page
