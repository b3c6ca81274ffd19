"""`keel monitor NAME`: drift, live metrics and alert rules over a window of the prediction log.

Exit codes: 0 no rule fired, 1 at least one fired, 2 bad input (3 integrity failures).

The monitor, the registry, the spec and the pipeline load inside the command, so `keel --help`
stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from keelml.cli.common import SPEC_OPTION
from keelml.cli.data_input import clean, safe_text
from keelml.cli.output import out, print_json
from keelml.names import PRODUCTION

if TYPE_CHECKING:
    from keelml.monitor.actions import ActionContext
    from keelml.monitor.reference import Reference
    from keelml.registry.project import Project
    from keelml.spec.pipeline import LoadedSpec


def monitor(
    name: str = typer.Argument(..., help="NAME (latest version), NAME/VERSION or NAME@ALIAS."),
    spec: Path = SPEC_OPTION,
    window: str | None = typer.Option(None, "--window", help="A duration (1d, 6h, 15m) or the newest N rows "
                                      "(10000); default monitor.window."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as JSON."),
    log: Path | None = typer.Option(None, "--log", help="Prediction log directory (or one Parquet file); default "
                                    "monitor.log_path, else <store>/predictions/NAME."),
    reference: Path | None = typer.Option(None, "--reference", help="Compare with this profile JSON instead of "
                                          "the training profile in the model bundle."),
    no_actions: bool = typer.Option(False, "--no-actions", help="Evaluate the rules; run no action."),
) -> None:
    """Check a window of predictions for drift, live performance, errors and latency; alert and act."""
    from keelml.monitor.actions import run_actions
    from keelml.monitor.check import check_window, summary_of
    from keelml.monitor.reference import load_reference, parse_model_ref
    from keelml.monitor.window import log_keys, window_frame
    from keelml.registry.project import open_project, store_root
    from keelml.spec.pipeline import load_spec

    loaded = load_spec(spec)
    settings = loaded.spec.monitor
    model, ref = parse_model_ref(name)
    project = open_project(loaded, create=False)
    try:
        found = load_reference(project, model, ref, reference)
        configured = settings.log_path or getattr(getattr(loaded.spec, "serve", None), "log_path", None)
        directory = log or Path(loaded.resolve(configured) if configured
                                else store_root(loaded) / "predictions" / model)
        chosen = window if window is not None else settings.window
        # the server's own log holds sealed files only (store.encryption); --log may name plain Parquet files
        keys = log_keys(project.keys, encrypted=loaded.spec.store.encryption and log is None)
        frame = window_frame(directory, chosen, keys=keys)
        metric = settings.performance.metric or loaded.spec.evaluate.metric
        report = check_window(frame, reference=found.profile, contract=found.contract, spec=settings, metric=metric)
        report = {"model": {"name": found.name, "version": found.version}, "window": str(chosen),
                  "log": str(directory), **report}
        outcomes: list[dict[str, Any]] = []
        if report["fired"] and not no_actions:
            ctx = _context(loaded, project, found, alias=ref if isinstance(ref, str) else PRODUCTION)
            outcomes = run_actions(settings.actions, report["fired"], summary_of(report), ctx)
        report["actions"] = outcomes
    finally:
        project.close()
    if as_json:
        print_json(report)
    else:
        _print(report)
    if report["fired"]:
        raise typer.Exit(code=1)


def _context(loaded: LoadedSpec, project: Project, found: Reference, *, alias: str) -> ActionContext:
    """The actions' side effects, wired to this project (retrain runs the spec's pipeline)."""
    from keelml.monitor.actions import ActionContext
    from keelml.registry.project import store_root

    def retrain() -> dict[str, Any]:
        from keelml.pipeline import run as run_pipeline

        return run_pipeline(loaded).as_json()

    registry: Any = project.registry
    promote_fn = getattr(registry, "promote", None)  # registry aliases, where this version has them
    audit_log = getattr(project, "audit", None)

    def promote(version: int, reason: str) -> dict[str, Any]:
        change = promote_fn(found.name, version, alias=alias, reason=reason)  # type: ignore[misc]
        return dict(change.as_dict()) if hasattr(change, "as_dict") else {"alias": alias, "version": version}

    return ActionContext(model=found.name, version=found.version,
                         default_log=store_root(loaded) / "monitor" / "alerts.jsonl", base_dir=loaded.base_dir,
                         current_primary=found.primary, retrain=retrain,
                         promote=promote if promote_fn is not None else None,
                         audit=audit_log.append if audit_log is not None else None)


def _print(report: dict[str, Any]) -> None:
    model, drift, performance = report["model"], report["drift"], report["performance"]
    out.print(f"{clean(model['name'])} v{model['version']}: {report['rows']:,} rows in window "
              f"{clean(report['window'])} ({clean(report['log'])})", markup=False, soft_wrap=True)
    if report["rows"] == 0:
        out.print("no predictions in the window: nothing to compare", markup=False)
    else:
        out.print(f"drift: {len(drift['drifted'])} of {drift['evaluated']} columns drifted "
                  f"(share {drift['share_drifted']:.2f})", markup=False)
        out.print(_drift_table(drift))
    for skipped in drift["skipped"]:
        out.print(f"  not compared: {clean(skipped['column'])} ({skipped['reason']})", markup=False, soft_wrap=True)
    if performance.get("available"):
        primary = performance["primary"]
        interval = ("" if primary["ci_low"] is None
                    else f" ({performance['confidence']:.0%} CI {primary['ci_low']:.4f}-{primary['ci_high']:.4f})")
        out.print(f"live {primary['name']}: {primary['value']:.4f}{interval} on {performance['n_labelled']:,} "
                  "labelled rows", markup=False)
    else:
        out.print(f"live performance: {performance.get('reason')}", markup=False)
    for rule in report["rules"]:
        mark = "FIRED" if rule["status"] == "fired" else rule["status"]
        out.print(f"rule {clean(rule['rule'])}: {mark}: {clean(rule['detail'], 300)}", markup=False, soft_wrap=True)
    for action in report["actions"]:
        out.print(f"action {clean(action['action'])} ({action['type']}): {action['status']}"
                  + (f": {clean(action.get('detail', ''), 300)}" if action.get("detail") else ""),
                  markup=False, soft_wrap=True)


def _drift_table(drift: dict[str, Any]) -> Any:
    table = Table(show_edge=False, header_style="bold")
    for heading in ("column", "kind", "verdict", "effect size", "threshold", "test p (BH)", "why"):
        table.add_column(heading)
    for entry in drift["columns"]:
        main = _main_statistic(entry)
        test = entry["statistics"].get(entry.get("test", ""), {})
        q = test.get("p_adjusted")
        table.add_row(safe_text(entry["column"], 30), safe_text(entry.get("kind", "-")),
                      safe_text(entry["verdict"], style="bold red" if entry["verdict"] in ("drift", "missing") else ""),
                      safe_text(main[0]), safe_text(main[1]), safe_text("-" if q is None else f"{q:.3g}"),
                      safe_text("; ".join(entry.get("reasons") or entry.get("notes") or []), 70))
    return table


def _main_statistic(entry: dict[str, Any]) -> tuple[str, str]:
    """The column's headline effect size as (name value, threshold)."""
    stats = entry.get("statistics") or {}
    for name in ("wasserstein", "jensen_shannon"):
        if name in stats and stats[name]["value"] is not None:
            return f"{name} {stats[name]['value']:.4f}", f"{stats[name]['threshold']:g}"
    return "-", "-"
