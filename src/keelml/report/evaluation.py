"""Report sections about the held-out evaluation: metrics, curves, slices, fairness, errors, tests, gate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keelml.report.charts import PALETTE, Series, bar_chart, line_chart
from keelml.report.html import e, not_run, num, pct, section, table, verdict_badge

CHART_SLICES = 15  # slices drawn in the slice chart (all of them are in the table)


def metrics_section(metrics: Mapping[str, Any]) -> str:
    primary = metrics.get("primary") or {}
    intervals = metrics.get("intervals") or {}
    confidence = float(primary.get("confidence", 0.95))
    body = []
    if primary:
        body.append(f"<p>Primary metric <b>{e(primary.get('name'))} = {num(primary.get('value'))}</b>, "
                    f"{confidence:.0%} bootstrap interval [{num(primary.get('ci_low'))}, "
                    f"{num(primary.get('ci_high'))}] over {e(metrics.get('n_test'))} held-out rows "
                    f"({e(primary.get('bootstrap_rounds_used'))} resamples).</p>")
    rows = []
    for name, value in metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and name != "n_test":
            band = intervals.get(name) or {}
            rows.append([e(name), num(value), num(band.get("low")), num(band.get("high"))])
    body.append(table(["metric", "value", f"{confidence:.0%} CI low", "high"], rows, numeric={1, 2, 3}))
    if metrics.get("class_balance"):
        body.append("<p class='muted'>Class shares of the held-out rows: " + ", ".join(
            f"{e(k)} {pct(v)}" for k, v in metrics["class_balance"].items()) + "</p>")
    return section("metrics", "Held-out metrics", "".join(body))


def curves_section(metrics: Mapping[str, Any]) -> str:
    curves = metrics.get("curves")
    if not curves:
        only = "<p class='muted'>Drawn for binary classification only.</p>"
        return section("curves", "ROC and precision-recall curves", only) + section("calibration", "Calibration", only)
    charts = []
    roc, pr = curves.get("roc"), curves.get("pr")
    if roc:
        charts.append(line_chart([Series(f"model (AUC {num(metrics.get('roc_auc'), 3)})", roc["fpr"], roc["tpr"])],
                                 label="ROC curve", x_label="false positive rate", y_label="true positive rate",
                                 x_range=(0, 1), y_range=(0, 1), diagonal=True,
                                 caption="ROC curve on the held-out rows; dashed: a random model."))
    if pr:
        base = float(pr.get("prevalence", 0.0))
        charts.append(line_chart([Series(f"model (AP {num(metrics.get('pr_auc'), 3)})", pr["recall"], pr["precision"]),
                                  Series(f"base rate {base:.3f}", [0, 1], [base, base], PALETTE[1], dashed=True)],
                                 label="Precision-recall curve", x_label="recall", y_label="precision",
                                 x_range=(0, 1), y_range=(0, 1),
                                 caption="Precision-recall curve; dashed: the positive share (a random model)."))
    body = "".join(charts) or "<p class='muted'>Undefined: the held-out rows hold a single class.</p>"
    calibration = curves.get("calibration") or []
    cal = ""
    if calibration:
        notes = [f"{b['low']:.1f}-{b['high']:.1f}: predicted {b['mean_predicted']:.3f}, observed "
                 f"{b['observed_rate']:.3f}, {b['count']} rows" for b in calibration]
        cal = line_chart([Series("model", [b["mean_predicted"] for b in calibration],
                                 [b["observed_rate"] for b in calibration], markers=True, notes=notes)],
                         label="Calibration curve", x_label="mean predicted probability",
                         y_label="observed positive rate", x_range=(0, 1), y_range=(0, 1), diagonal=True,
                         caption="Calibration in 10 equal-width bins of the predicted probability; dashed: perfect.")
        cal += table(["bin", "rows", "mean predicted", "observed rate"],
                     [[f"{b['low']:.1f}–{b['high']:.1f}", e(b["count"]), num(b["mean_predicted"], 3),
                       num(b["observed_rate"], 3)] for b in calibration], numeric={1, 2, 3})
    return (section("curves", "ROC and precision-recall curves", body)
            + section("calibration", "Calibration", cal or "<p class='muted'>No calibration data.</p>"))


def confusion_section(metrics: Mapping[str, Any]) -> str:
    cm = metrics.get("confusion_matrix")
    if not cm:
        return section("confusion-matrix", "Confusion matrix", "<p class='muted'>Regression: no confusion matrix.</p>")
    labels, matrix = cm["labels"], cm["matrix"]
    top = max((v for row in matrix for v in row), default=0) or 1
    head = "<tr><th>actual \\ predicted</th>" + "".join(f"<th>{e(c)}</th>" for c in labels) + "</tr>"
    body = ""
    for label, row in zip(labels, matrix, strict=False):
        total = sum(row) or 1
        cells = "".join(f"<td class='n' style='background:rgba(26,95,180,{0.08 + 0.6 * v / top:.2f})'>"
                        f"{v} <span class='muted'>({v / total:.0%})</span></td>" for v in row)
        body += f"<tr><th>{e(label)}</th>{cells}</tr>"
    return section("confusion-matrix", "Confusion matrix",
                   f"<table>{head}{body}</table><p class='muted'>Row percentages: share of each actual class.</p>")


def slices_section(analysis: Mapping[str, Any] | None) -> str:
    if not analysis or not analysis.get("slices"):
        return section("slices", "Slices", not_run("Slice analysis"))
    info = analysis["slices"]
    metric, names, overall = info["metric"], info["metrics"], info.get("overall") or {}
    scored = [r for r in info["rows"] if r.get("metrics") and r["metrics"].get(metric) is not None]
    base = overall.get(metric)
    body = [f"<p>Every value of every categorical feature and {e(info['bins'])} quantile bins of every numeric "
            f"feature; slices with fewer than {e(info['min_rows'])} rows are listed without metrics. "
            f"All rows: {e(metric)} {num(base)}.</p>"]
    if info.get("withheld"):
        body.append(f"<p class='muted'>{e(info['withheld'])} slices of rare categories withheld "
                    "(report.min_category_count).</p>")
    if scored and base is not None:
        ranked = sorted(scored, key=lambda r: abs(r["metrics"][metric] - base), reverse=True)[:CHART_SLICES]
        body.append(bar_chart([f"{r['column']} = {r['slice']}" for r in ranked],
                              [(metric, [r["metrics"][metric] for r in ranked])], label=f"{metric} by slice",
                              value_label=f"{metric} (dashed: all rows)", reference=float(base),
                              caption=f"The {len(ranked)} slices furthest from the whole on {metric}."))
    rows = [[e(r["column"]), e(r["slice"]), e(r["n"]), pct(r.get("share")),
             *[num((r.get("metrics") or {}).get(k)) for k in names]] for r in info["rows"]]
    body.append(f"<details><summary>All {len(rows)} slices</summary>"
                + table(["column", "slice", "rows", "share", *names], rows, numeric=set(range(2, 4 + len(names))))
                + "</details>")
    return section("slices", "Slices", "".join(body))


def fairness_section(analysis: Mapping[str, Any] | None) -> str:
    fairness = (analysis or {}).get("fairness")
    if not fairness:
        return section("fairness", "Fairness", not_run("Fairness analysis"))
    if not fairness.get("columns"):
        return section("fairness", "Fairness", "<p class='muted'>No sensitive columns: set data.sensitive_columns "
                                               "(or sensitive: true in the contract) to measure fairness.</p>")
    body = [f"<p>Computed with Fairlearn on the held-out rows. Groups with fewer than "
            f"{e(fairness.get('min_group_rows'))} rows are shown but left out of the differences.</p>"]
    for entry in fairness["columns"]:
        groups = entry.get("groups") or []
        body.append(f"<h3 id='fairness-{e(entry['column'])}'>Fairness by {e(entry['column'])}</h3>")
        diffs = entry.get("differences") or {}
        body.append(table(["measure", "value"], [[e(k), num(v)] for k, v in diffs.items()]
                          + ([[e("mae_difference"), num(entry.get("mae_difference"))]] if "mae_difference" in entry
                             else []), numeric={1}))
        if entry.get("note"):
            body.append(f"<p class='muted'>{e(entry['note'])}</p>")
        if entry.get("withheld"):
            body.append(f"<p class='muted'>{e(entry['withheld'])} groups of rare categories withheld "
                        "(report.min_category_count).</p>")
        keys = [k for k in ("selection_rate", "tpr", "fpr", "accuracy", "positive_rate", "mae", "mean_prediction")
                if groups and k in groups[0]]
        chart_keys = [k for k in ("selection_rate", "tpr", "fpr") if k in keys] or keys[:1]
        names = [str(g["group"]) for g in groups]
        body.append(bar_chart(names, [(k, [g.get(k) for g in groups]) for k in chart_keys],
                              label=f"{', '.join(chart_keys)} by {entry['column']}", value_label="rate"
                              if "mae" not in chart_keys else "mean absolute error",
                              value_range=(0.0, 1.0) if "mae" not in chart_keys else None,
                              caption=f"Per group of {entry['column']}: " + ", ".join(chart_keys) + "."))
        excluded = set(entry.get("excluded") or [])
        body.append(table(["group", "rows", *keys],
                          [[e(g["group"]) + (" <span class='muted'>(too small)</span>" if g["group"] in excluded
                                             else ""), e(g["n"]), *[num(g.get(k)) for k in keys]] for g in groups],
                          numeric=set(range(1, 2 + len(keys)))))
    return section("fairness", "Fairness", "".join(body))


def errors_section(analysis: Mapping[str, Any] | None) -> str:
    errors = (analysis or {}).get("error_analysis")
    if not errors:
        return section("error-analysis", "Error analysis", not_run("Error analysis"))
    body = ["<h3>Worst slices</h3>"]
    worst = errors.get("worst_slices") or []
    if worst:
        metric = worst[0]["metric"]
        body.append(bar_chart([f"{w['column']} = {w['slice']}" for w in worst],
                              [("difference", [w["difference"] for w in worst])],
                              intervals=[(w.get("ci_low"), w.get("ci_high")) for w in worst], reference=0.0,
                              label="worst slices", value_label=f"{metric}: slice minus all rows",
                              caption="Difference from all rows, with its bootstrap interval (whiskers)."))
        body.append(table(["slice", "rows", metric, "all rows", "difference", "interval", "clearly worse"],
                          [[e(f"{w['column']} = {w['slice']}"), e(w["n"]), num(w["value"]), num(w["overall"]),
                            num(w["difference"]), f"[{num(w.get('ci_low'))}, {num(w.get('ci_high'))}]",
                            "yes" if w.get("significant") else "no"] for w in worst], numeric={1, 2, 3, 4}))
    else:
        body.append("<p class='muted'>No slice is worse than the whole.</p>")
    examples = errors.get("worst_examples") or []
    body.append(f"<h3>Worst examples</h3><p class='muted'>The held-out rows with the highest "
                f"{e(errors.get('example_loss', 'loss'))}; only the contract's feature columns are shown.</p>")
    if examples:
        columns = list(examples[0].get("features", {}))
        body.append("<div style='overflow-x:auto'>" + table(
            ["row", "loss", "target", "prediction", *columns],
            [[e(x["row"]), num(x["loss"]), e(x["target"]), e(x["prediction"]),
              *[_cell(x["features"].get(c)) for c in columns]] for x in examples], numeric={0, 1}) + "</div>")
    return section("error-analysis", "Error analysis", "".join(body))


def _cell(value: Any) -> str:
    return "<span class='muted'>missing</span>" if value is None else e(value)


def tests_section(tests: Mapping[str, Any] | None) -> str:
    if tests is None:
        return section("model-tests", "Model tests", not_run("Model tests"))
    results = tests.get("results") or []
    if not results:
        return section("model-tests", "Model tests", "<p class='muted'>No model tests declared (spec section "
                                                     "<code>tests:</code>).</p>")
    rows = [[e(r["kind"]), e(r["name"]), verdict_badge(r["passed"]), e(r.get("detail", ""))] for r in results]
    passed = sum(1 for r in results if r["passed"])
    return section("model-tests", "Model tests",
                   f"<p>{passed} of {len(results)} passed.</p>" + table(["kind", "test", "result", "detail"], rows))


def _limit(value: Any) -> str:
    """A check's limit: a number, a label, or a range [min, max] with open ends as –."""
    if isinstance(value, list):
        return "[" + ", ".join("–" if v is None else e(f"{v:g}" if isinstance(v, float) else v) for v in value) + "]"
    return num(value)


def gate_section(verdict: Mapping[str, Any] | None) -> str:
    if verdict is None:
        return section("gate", "Gate", not_run("The gate"))
    state = "<span class='pass'>passed</span>" if verdict.get("passed") else "<span class='fail'>refused</span>"
    rows = [[e(c.get("kind", "metric")), e(c.get("name", c.get("metric"))), num(c.get("value")), _limit(c.get("limit")),
             verdict_badge(c.get("passed")), e(c.get("reason", ""))] for c in verdict.get("checks") or []]
    checks = table(["kind", "check", "value", "limit", "result", "reason"], rows) if rows else ""
    return section("gate", "Gate verdict", f"<p>The gate {state}: {e(verdict.get('reason'))}</p>{checks}")
