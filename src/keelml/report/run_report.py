"""A run's self-contained HTML report: data quality, contract, cross-validation, held-out metrics."""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keelml.store.atomic import atomic_write_bytes

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1000px;
color:#1d2733;padding:0 1rem}h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #dde}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}td,th{padding:.25rem .7rem;border-bottom:1px solid #eef;
text-align:left}th{background:#f5f7fa}.pass{color:#137333;font-weight:600}.fail{color:#b3261e;font-weight:600}
.meta{color:#5f6b7a;font-size:.85rem}code{background:#f5f7fa;padding:0 .25rem}figure{margin:1rem 0}
figcaption{font-size:.8rem;color:#5f6b7a}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return _e(value)
    if isinstance(value, int | float):
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return _e(value)


def _bound(value: float) -> str:
    """A contract bound for people: whole numbers with thousands separators, else 6 significant digits."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.6g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fold_chart(name: str, test: list[float], train: list[float], caption: str) -> str:
    """An inline SVG bar chart of per-fold train and validation scores."""
    if not test:
        return ""
    width, height, pad = 60 * len(test) + 60, 180, 30
    low = min([*test, *train]) if train else min(test)
    high = max([*test, *train]) if train else max(test)
    span = (high - low) or 1.0
    base = low - span * 0.5

    def y(v: float) -> float:
        return height - pad - (v - base) / (high - base) * (height - 2 * pad)

    bars = []
    for i, value in enumerate(test):
        x = 40 + i * 60
        if train:
            bars.append(f'<rect x="{x}" y="{y(train[i]):.1f}" width="20" height="{height - pad - y(train[i]):.1f}" '
                        f'fill="#9ab6d8"><title>fold {i + 1} train {train[i]:.4f}</title></rect>')
        bars.append(f'<rect x="{x + 22}" y="{y(value):.1f}" width="20" height="{height - pad - y(value):.1f}" '
                    f'fill="#1a5fb4"><title>fold {i + 1} validation {value:.4f}</title></rect>'
                    f'<text x="{x + 20}" y="{y(value) - 4:.1f}" font-size="9" text-anchor="middle">{value:.3f}</text>'
                    f'<text x="{x + 10}" y="{height - 10}" font-size="11">fold {i + 1}</text>')
    return (f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="{_e(name)} per fold">{"".join(bars)}</svg>'
            f"<figcaption>{_e(name)} per fold: light = train, dark = validation; bars start at {base:.3f}, "
            f"not 0. {caption}</figcaption></figure>")


_PII_ACTIONS = {"drop": "dropped before storage", "hash": "hashed before storage (salted HMAC-SHA256)",
                "keep": "kept as is (declared pii_action: keep)"}


def _limit(value: Any, limit: Any) -> str:
    if limit is None:
        return "no limit set"
    passed = float(value) <= float(limit)
    return (f"<span class='{'pass' if passed else 'fail'}'>{'within' if passed else 'above'}</span> "
            f"the limit {_num(limit)}")


def _attribute_table(columns: Mapping[str, Any]) -> str:
    rows = []
    for name, entry in columns.items():
        if "skipped" in entry:
            rows.append([_e(name), "", "", "", _e("skipped: " + str(entry["skipped"]))])
            continue
        flag = "<span class='fail'>flagged</span>" if entry.get("flagged") else "no"
        rows.append([_e(name), _num(entry.get("attack_balanced_accuracy")),
                     _num(entry.get("baseline_balanced_accuracy")), _num(entry.get("advantage")), flag])
    if not rows:
        return "<p>Attribute inference: no sensitive columns (data.sensitive_columns) to check.</p>"
    return ("<p>Attribute inference: can the model's outputs reveal a sensitive column? "
            "(cross-validated balanced accuracy of a classifier on the scores)</p>"
            + _table(["sensitive column", "attack", "majority baseline", "advantage", "leaks"], rows))


def _security_section(security: Mapping[str, Any], contract: Mapping[str, Any]) -> str:
    """Membership and attribute inference, robustness, and how each PII column was handled."""
    parts = ["<h2>Security</h2>"]
    privacy = security.get("privacy")
    if privacy:
        m = privacy.get("membership", {})
        if "skipped" in m:
            parts.append(f"<p>Membership inference: skipped ({_e(m['skipped'])}).</p>")
        else:
            parts.append(
                f"<p>Membership inference ({_e(m.get('attack'))} attack, {_e(m.get('members'))} training rows vs "
                f"{_e(m.get('non_members'))} held-out rows): ROC AUC <b>{_num(m.get('auc'))}</b> (0.5 = no leakage; "
                f"{_limit(m.get('auc'), m.get('max_auc'))}), TPR at 1% FPR <b>{_num(m.get('tpr_at_1pct_fpr'))}</b>, "
                f"best-threshold advantage {_num(m.get('advantage'))}.</p>")
        parts.append(_attribute_table(privacy.get("attribute_inference", {}).get("columns", {})))
    else:
        parts.append("<p>Privacy audit: off (security.privacy: false).</p>")
    robustness = security.get("robustness")
    if robustness and "skipped" in robustness.get("stability", {}):
        parts.append(f"<p>Robustness: skipped ({_e(robustness['stability']['skipped'])}).</p>")
    elif robustness:
        st = robustness.get("stability", {})
        parts.append(
            f"<p>Robustness: prediction flip rate <b>{_num(st.get('flip_rate'))}</b> "
            f"({_limit(st.get('flip_rate'), st.get('max_flip_rate'))}) on {_e(st.get('rows'))} held-out rows "
            f"under noise of {_num(st.get('noise_scale'), 2)} × IQR on every numeric column and category swaps "
            f"on {float(st.get('swap_fraction') or 0):.0%} of rows, all kept inside the contract.</p>")
        per_column = st.get("columns", {})
        ranked = sorted(per_column, key=lambda c: per_column[c].get("flip_rate", 0), reverse=True)
        parts.append(_table(["column (perturbed alone)", "kind", "flip rate", "flip rate of changed rows"],
                            [[_e(c), _e(per_column[c].get("kind")), _num(per_column[c].get("flip_rate")),
                              _num(per_column[c].get("flip_rate_changed"))] for c in ranked]))
        attack = robustness.get("attack")
        if attack:
            if "skipped" in attack:
                parts.append(f"<p>Black-box attack: skipped ({_e(attack['skipped'])}).</p>")
            else:
                parts.append(f"<p>Black-box attack ({_e(attack.get('attack'))}): {_e(attack.get('rows'))} rows, "
                             f"success rate {_num(attack.get('success_rate'), 2)}, median minimal perturbation "
                             f"{_num(attack.get('median_l2'), 3)} IQR units (L2).</p>")
    else:
        parts.append("<p>Robustness audit: off (security.robustness: false).</p>")
    pii = [[_e(c["name"]), _e(c["pii"]), _e(_PII_ACTIONS.get(str(c.get("pii_action")), c.get("pii_action")))]
           for c in contract.get("columns", []) if c.get("pii")]
    if pii:
        parts.append(_table(["PII column", "kind", "handling"], pii))
    else:
        parts.append("<p>PII columns: none.</p>")
    return "\n".join(parts)


def render_run_report(*, run_id: str, pipeline: str, contract: Mapping[str, Any],
                      validation: Mapping[str, Any], cv: Mapping[str, Any], metrics: Mapping[str, Any],
                      verdict: Mapping[str, Any] | None, data_digests: Mapping[str, str],
                      registration: tuple[str, int] | None, security: Mapping[str, Any] | None = None) -> str:
    """Pure function: the report's HTML from the run's artifacts."""
    from keelml.data.contract import Contract

    version = Contract.model_validate(dict(contract)).version
    provenance = (f"run <code>{_e(run_id)}</code> · data " +
                  ", ".join(f"{_e(k)} <code>{_e(v[:12])}</code>" for k, v in data_digests.items()) +
                  f" · contract <code>{_e(version)}</code>")
    primary = metrics.get("primary", {})
    parts = [f"<h1>keelml run report: {_e(pipeline)}</h1><p class='meta'>{provenance}</p>"]
    if verdict is not None:
        cls = "pass" if verdict.get("passed") else "fail"
        parts.append(f"<p>Gate: <span class='{cls}'>{'passed' if verdict.get('passed') else 'refused'}</span>"
                     f" ({_e(verdict.get('reason'))})</p>")
    if registration:
        parts.append(f"<p>Registered as <code>{_e(registration[0])}</code> version {registration[1]}.</p>")
    parts.append("<h2>Held-out evaluation</h2>")
    if primary:
        parts.append(f"<p>Primary metric <b>{_e(primary.get('name'))} = {_num(primary.get('value'))}</b>, "
                     f"{float(primary.get('confidence', 0.95)):.0%} bootstrap interval "
                     f"[{_num(primary.get('ci_low'))}, {_num(primary.get('ci_high'))}] over "
                     f"{_e(metrics.get('n_test'))} rows. <span class='meta'>{provenance}</span></p>")
    scalar = [[_e(k), _num(v)] for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    parts.append(_table(["metric", "value"], scalar))
    parts.append("<h2>Cross-validation on the training split</h2>")
    scores = cv.get("cv", {}) if isinstance(cv.get("cv"), dict) else {}
    cv_rows = []
    for metric, entry in scores.items():
        if isinstance(entry, dict):
            cv_rows.append([_e(metric), _num(entry.get("mean")), _num(entry.get("std")),
                            _num(entry.get("train_mean"))])
    if cv_rows:
        parts.append(_table(["metric", "validation mean", "std", "train mean"], cv_rows))
    chart_metric = str(cv.get("primary_metric") or next(iter(scores), ""))
    entry = scores.get(chart_metric)
    if isinstance(entry, dict):
        parts.append(_fold_chart(chart_metric, [float(v) for v in entry.get("test", [])],
                                 [float(v) for v in entry.get("train", [])], provenance))
    parts.append(f"<p class='meta'>model family {_e(cv.get('family'))}, {_e(cv.get('folds'))} folds, "
                 f"{_e(cv.get('n_train'))} training rows; train-validation gap {_num(cv.get('fit_gap'))}</p>")
    if security is not None:
        parts.append(_security_section(security, contract))
    parts.append("<h2>Data quality</h2>")
    rows = []
    for source, rep in validation.items():
        if isinstance(rep, dict):
            rows.append([_e(source), _e(rep.get("rows_in")), _e(rep.get("rows_valid")),
                         _e(rep.get("rows_quarantined"))])
    parts.append(_table(["source", "rows in", "valid", "quarantined (kept with reason)"], rows))
    parts.append("<h2>Data contract</h2>")
    col_rows = []
    for col in contract.get("columns", []):
        low, high = col.get("min"), col.get("max")
        domain = (f"{len(col['categories'])} categories" if col.get("categories")
                  else f"[{'-inf' if low is None else _bound(low)}, {'inf' if high is None else _bound(high)}]"
                  if low is not None or high is not None else "")
        col_rows.append([_e(col["name"]), _e(col["type"]), _e(col["role"]),
                         _e("yes" if col.get("nullable") else "no"), _e(domain),
                         _e("yes" if col.get("sensitive") else "")])
    parts.append(_table(["column", "type", "role", "nullable", "domain", "sensitive"], col_rows))
    parts.append(f"<p class='meta'>task {_e(contract.get('task'))}, target <code>{_e(contract.get('target'))}"
                 f"</code>. The full contract is in contract.yaml next to this page.</p>")
    body = "\n".join(parts)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>keelml: {_e(pipeline)}"
            f"</title><style>{_CSS}</style></head><body>{body}</body></html>")


def write_run_report(directory: Path, **context: Any) -> Path:
    """Write index.html and contract.yaml for a run; returns the HTML path."""
    from keelml.data.contract import Contract, contract_to_yaml

    page = render_run_report(**context)
    atomic_write_bytes(directory / "index.html", page.encode("utf-8"))
    contract = Contract.model_validate(dict(context["contract"]))
    atomic_write_bytes(directory / "contract.yaml", contract_to_yaml(contract).encode("utf-8"))
    return directory / "index.html"
