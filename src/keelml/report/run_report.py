"""A run's self-contained HTML report: one offline page (inline CSS and SVG, no script, no CDN).

Sections: summary, data quality, tuning, learning curves, cross-validation, held-out metrics, ROC
and PR curves, calibration, confusion matrix, slices, fairness, error analysis, model tests, the
gate's verdict, the data contract and the lineage. Every value from the data is HTML-escaped, and a
category seen fewer than `report.min_category_count` times in training is not printed at all, here
or in the contract.yaml beside the page (`categories.py`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keelml.data.contract import Contract
from keelml.report import evaluation, training
from keelml.report.categories import Categories
from keelml.report.html import CSS, e, num, section, table
from keelml.report.profile_report import profile_table_html
from keelml.report.security import security_section
from keelml.spec.report import DEFAULT_MIN_CATEGORY_COUNT
from keelml.store.atomic import atomic_write_bytes

SECTIONS = (
    ("summary", "Summary"), ("data-quality", "Data quality"), ("tuning", "Tuning"),
    ("learning-curves", "Learning curves"), ("cross-validation", "Cross-validation"), ("metrics", "Metrics"),
    ("curves", "ROC / PR"), ("calibration", "Calibration"), ("confusion-matrix", "Confusion matrix"),
    ("slices", "Slices"), ("fairness", "Fairness"), ("error-analysis", "Errors"), ("model-tests", "Model tests"),
    ("security", "Security"), ("gate", "Gate"), ("contract", "Contract"), ("lineage", "Lineage"),
)


def _bound(value: float) -> str:
    """A contract bound for people: whole numbers with thousands separators, else 6 significant digits."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.6g}"


def _summary(run_id: str, pipeline: str, metrics: Mapping[str, Any], verdict: Mapping[str, Any] | None,
             registration: tuple[str, int] | None, provenance: str) -> str:
    primary = metrics.get("primary") or {}
    cards = []
    if primary:
        cards.append(f"<div class='card'>{e(primary.get('name'))}<b>{num(primary.get('value'))}</b>"
                     f"<span class='muted'>CI [{num(primary.get('ci_low'))}, {num(primary.get('ci_high'))}]"
                     "</span></div>")
    cards.append(f"<div class='card'>held-out rows<b>{e(metrics.get('n_test'))}</b></div>")
    if verdict is not None:
        state = "<span class='pass'>passed</span>" if verdict.get("passed") else "<span class='fail'>refused</span>"
        count = len(verdict.get("checks") or [])
        cards.append(f"<div class='card'>gate<b>{state}</b><span class='muted'>{count} "
                     f"check{'' if count == 1 else 's'}</span></div>")
    cards.append(f"<div class='card'>model<b>{e(f'{registration[0]} v{registration[1]}') if registration else '–'}"
                 f"</b><span class='muted'>{_registered(registration is not None, verdict)}</span></div>")
    lines = [f"<div class='cards'>{''.join(cards)}</div>", f"<p class='meta'>{provenance}</p>"]
    if verdict is not None:
        lines.append(f"<p>Gate: {e(verdict.get('reason'))}</p>")
    if registration:
        lines.append(f"<p>Registered as <code>{e(registration[0])}</code> version {e(registration[1])}.</p>")
    return section("summary", f"Run {run_id} of {pipeline}", "".join(lines))


def _expected(anomaly: Mapping[str, Any]) -> Any:
    """What the contract expected; a category list is not repeated here (it is in contract.yaml)."""
    return "one of the contract's categories (contract.yaml)" if anomaly.get("kind") == "domain" \
        else anomaly.get("expected")


def _data_quality(validation: Mapping[str, Any], profile: Mapping[str, Any] | None) -> str:
    rows = [[e(source), e(rep.get("rows_in")), e(rep.get("rows_valid")), e(rep.get("rows_quarantined"))]
            for source, rep in validation.items() if isinstance(rep, Mapping)]
    body = table(["source", "rows in", "accepted", "quarantined (kept with reason)"], rows, numeric={1, 2, 3})
    anomalies = [[e(source), e(a.get("column") or "(rows)"), e(a.get("kind")), e(a.get("count")),
                  e(_expected(a)), e(a.get("observed"))]
                 for source, rep in validation.items() if isinstance(rep, Mapping)
                 for a in rep.get("anomalies", []) if isinstance(a, Mapping)]
    if anomalies:
        body += "<h3>Anomalies</h3>" + table(["source", "column", "kind", "count", "expected", "observed"],
                                             anomalies, numeric={3})
    if profile:
        body += (f"<h3>Training data profile</h3>{profile_table_html(profile)}<p class='meta'>"
                 f"{e(profile.get('rows'))} valid training rows. The full profile (quantiles, histograms, "
                 "category counts) ships in the model bundle as component <code>profile</code>.</p>")
    return section("data-quality", "Data quality", body)


def _contract(contract: Mapping[str, Any], categories: Categories) -> str:
    rows = []
    withheld = categories.withheld()
    for col in contract.get("columns", []):
        low, high = col.get("min"), col.get("max")
        held = f" ({withheld[col['name']]} withheld)" if col["name"] in withheld else ""
        domain = (f"{len(col['categories'])} categories{held}" if col.get("categories")
                  else f"[{'-inf' if low is None else _bound(low)}, {'inf' if high is None else _bound(high)}]"
                  if low is not None or high is not None else "")
        rows.append([e(col["name"]), e(col["type"]), e(col["role"]), e("yes" if col.get("nullable") else "no"),
                     e(domain), e("yes" if col.get("sensitive") else "")])
    return section("contract", "Data contract",
                   table(["column", "type", "role", "nullable", "domain", "sensitive"], rows)
                   + f"<p class='meta'>task {e(contract.get('task'))}, target <code>{e(contract.get('target'))}"
                     "</code>. The contract is in contract.yaml next to this page.</p>"
                   + (f"<p class='meta'>{e(categories.note())}</p>" if withheld else ""))


def _lineage(run_id: str, version: str, data_digests: Mapping[str, str], cv: Mapping[str, Any],
             lineage: Mapping[str, Any] | None) -> str:
    lineage = lineage or {}
    rows = [["run", f"<code>{e(run_id)}</code>"], ["contract version", f"<code>{e(version)}</code>"]]
    rows += [[f"data digest ({e(k)})", f"<code>{e(v)}</code>"] for k, v in data_digests.items()]
    if lineage.get("code_version"):
        rows.append(["code version", f"keelml <code>{e(lineage['code_version'])}</code>"])
    if lineage.get("spec_digest"):
        rows.append(["spec", f"{e(lineage.get('spec_path', ''))} <code>{e(lineage['spec_digest'][:16])}</code>"])
    rows.append(["model", f"{e(cv.get('family'))} <code>{e(json.dumps(cv.get('params') or {}, default=str))}</code>"])
    for name, params in (lineage.get("parameters") or {}).items():
        rows.append([f"parameters: {e(name)}", f"<code>{e(json.dumps(params, default=str))}</code>"])
    body = table(["what", "value"], rows)
    steps = lineage.get("steps") or []
    if steps:
        body += table(["step", "status", "cache key"],
                      [[e(s.get("name")), e(s.get("status")), f"<code>{e(str(s.get('cache_key'))[:16])}</code>"]
                       for s in steps])
    return section("lineage", "Lineage", body)


def render_run_report(*, run_id: str, pipeline: str, contract: Mapping[str, Any],
                      validation: Mapping[str, Any], cv: Mapping[str, Any], metrics: Mapping[str, Any],
                      verdict: Mapping[str, Any] | None, data_digests: Mapping[str, str],
                      registration: tuple[str, int] | None, analysis: Mapping[str, Any] | None = None,
                      tests: Mapping[str, Any] | None = None, lineage: Mapping[str, Any] | None = None,
                      profile: Mapping[str, Any] | None = None, security: Mapping[str, Any] | None = None,
                      timings: Mapping[str, Any] | None = None,
                      min_category_count: int = DEFAULT_MIN_CATEGORY_COUNT) -> str:
    """Pure function: the report's HTML from the run's artifacts.

    A feature's category seen fewer than `min_category_count` times in the training profile (every
    category when there is no profile, unless it is 0) is printed nowhere on the page.
    """
    version = Contract.model_validate(dict(contract)).version
    categories = Categories.of(contract, profile, min_category_count)
    analysis = categories.analysis(analysis)
    profile = categories.profile(profile) if profile else profile
    provenance = (f"run <code>{e(run_id)}</code> · data " +
                  ", ".join(f"{e(k)} <code>{e(v[:12])}</code>" for k, v in data_digests.items()) +
                  f" · contract <code>{e(version)}</code>")
    nav = "<nav>" + "".join(f"<a href='#{a}'>{e(t)}</a>" for a, t in SECTIONS) + "</nav>"
    parts = [
        f"<h1>keelml run report: {e(pipeline)}</h1>", nav,
        _summary(run_id, pipeline, metrics, verdict, registration, provenance),
        _data_quality(validation, profile),
        training.tuning_section(cv), training.learning_section(cv), training.cv_section(cv, timings or {}),
        evaluation.metrics_section(metrics), evaluation.curves_section(metrics), evaluation.confusion_section(metrics),
        evaluation.slices_section(analysis), evaluation.fairness_section(analysis),
        evaluation.errors_section(analysis), evaluation.tests_section(tests), evaluation.gate_section(verdict),
        security_section(security or {}, contract),
        _contract(contract, categories), _lineage(run_id, version, data_digests, cv, lineage),
    ]
    body = "\n".join(parts)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'><link rel='icon' href='data:,'>"
            f"<title>keelml: {e(pipeline)}</title><style>{CSS}</style></head><body>{body}</body></html>")


def write_run_report(directory: Path, *, min_category_count: int = DEFAULT_MIN_CATEGORY_COUNT,
                     **context: Any) -> Path:
    """Write index.html and contract.yaml for a run (0600 files in a 0700 directory); returns the HTML path.

    Both leave out the categories seen fewer than `min_category_count` times in training.
    """
    page = render_run_report(min_category_count=min_category_count, **context)
    atomic_write_bytes(directory / "index.html", page.encode("utf-8"))
    categories = Categories.of(context["contract"], context.get("profile"), min_category_count)
    atomic_write_bytes(directory / "contract.yaml", categories.contract_yaml(context["contract"]).encode("utf-8"))
    return directory / "index.html"


def _registered(registered: bool, verdict: Mapping[str, Any] | None) -> str:
    """How the run's model entered the registry: accepted, kept as rejected, or not at all."""
    if not registered:
        return "not registered"
    return "registered as rejected (never promotable)" if verdict is not None and not verdict.get("passed") \
        else "registered"
