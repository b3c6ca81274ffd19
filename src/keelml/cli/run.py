"""`keel run`: run a pipeline spec, reusing cached steps.

The pipeline loads inside the command, so `keel --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from keelml.cli.output import StepProgress, err, out, print_json
from keelml.errors import SpecError

if TYPE_CHECKING:
    from keelml.registry import Registration


def run(
    spec: Path = typer.Argument(Path("pipeline.yaml"), help="The pipeline spec (a file or its directory)."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON on stdout."),
    explain: bool = typer.Option(False, "--explain", help="Say why each step that re-ran could not be cached."),
    step: str | None = typer.Option(
        None, "--step", help="Run only this step, its inputs taken from the cache (for orchestrators: one task "
        "per step); a step before it that is not cached is an error (exit 2) naming it."),
    with_upstream: bool = typer.Option(
        False, "--with-upstream", help="With --step: run the steps before it that are not cached, instead of failing."),
    executor: str | None = typer.Option(None, "--executor", metavar="URL",
                                        help="local or dask://HOST:PORT; overrides the spec's executor."),
) -> None:
    """Run the pipeline: ingest, validate, profile, split, train, evaluate, model tests, export, privacy,
    robustness, gate, bundle (sign), register."""
    from keelml.pipeline import run as run_pipeline

    if with_upstream and step is None:
        raise SpecError("--with-upstream only applies to a one-step run",
                        expected="--with-upstream together with --step NAME",
                        fix="add --step NAME, or drop --with-upstream (a run without --step runs every step)")
    with StepProgress(err) as progress:
        outcome = run_pipeline(spec, events=progress, only=step, cached_upstream=step is not None and not with_upstream,
                                   executor=executor)
    report = outcome.as_json()
    if as_json:
        print_json(report)
        _exit_if_refused(outcome.verdict, outcome.registration)
        return
    ran = [s for s in outcome.steps if s.status == "ran"]
    if step is not None:
        mine = report["step"]
        before = list(mine["upstream"].values())
        out.print(f"step {mine['name']}: {mine['status']} ({mine['duration_s']:.2f}s); steps before it: "
                  f"{before.count('cached')} cached, {before.count('ran')} ran", soft_wrap=True)
    elif not ran:
        out.print(f"nothing to do: all {len(outcome.steps)} steps cached ({outcome.wall_s:.2f}s)")
    if explain:
        for s in ran:
            out.print(f"[bold]{s.name}[/bold] re-ran because:")
            for reason in s.explain:
                out.print(f"  - {reason}", soft_wrap=True)
    for role, stats in (outcome.validation or {}).items():
        out.print(f"data ({role}): {stats['rows_valid']:,} accepted + {stats['rows_quarantined']:,} quarantined "
                  f"= {stats['rows_in']:,} rows", soft_wrap=True)
        for anomaly in stats.get("anomalies", []):
            if anomaly["level"] == "dataset":
                out.print(f"  warning: {anomaly['column'] or role}: {anomaly['kind']}: {anomaly['observed']} "
                          f"(expected {anomaly['expected']})", soft_wrap=True, markup=False)
    primary = report["primary_metric"]
    if primary:
        interval = (f"{primary.get('confidence', 0.95):.0%} CI {primary['ci_low']:.4f}-{primary['ci_high']:.4f}"
                    if primary.get("ci_low") is not None and primary.get("ci_high") is not None
                    else "no bootstrap interval")
        gate = report.get("gate")
        verdict = f"; gate: {gate['reason']}" if gate else ""
        out.print(f"{primary['name']} on held-out data: [bold]{primary['value']:.4f}[/bold] ({interval}{verdict})",
                  soft_wrap=True, markup=True)
    _print_security(report.get("security") or {}, outcome.security)
    for note in outcome.notes:
        out.print(f"note: {note}", soft_wrap=True)
    if outcome.registration:
        reg = outcome.registration
        state = "registered new version" if reg.created else "already registered as"
        out.print(f"model: {state} [bold]{reg.name}[/bold] v{reg.version} (bundle {reg.bundle_id[:12]}, "
                  f"status {reg.status})")
    if outcome.report_path:
        out.print(f"report: {outcome.report_path}", soft_wrap=True)
    out.print(f"run: {outcome.run_id}")
    _exit_if_refused(outcome.verdict, outcome.registration)


def _print_security(summary: dict[str, Any], reports: dict[str, Any]) -> None:
    """One line with the privacy and robustness audits' headline figures (when they ran)."""
    parts = []
    if summary.get("membership_auc") is not None:
        parts.append(f"membership-attack AUC {summary['membership_auc']:.4f} "
                     f"(TPR at 1% FPR {summary['membership_tpr_at_1pct_fpr']:.4f})")
    if summary.get("flip_rate") is not None:
        parts.append(f"flip rate {summary['flip_rate']:.4f}")
    columns = ((reports.get("privacy") or {}).get("attribute_inference") or {}).get("columns") or {}
    flagged = [f"{name} (+{entry['advantage']:.3f})" for name, entry in columns.items() if entry.get("flagged")]
    if flagged:
        parts.append("scores reveal " + ", ".join(flagged))
    if parts:
        out.print("security: " + "; ".join(parts), soft_wrap=True, markup=False)


def _exit_if_refused(verdict: object, registration: Registration | None) -> None:
    """A model refused by the gate fails the command (exit 4), so CI stops there."""
    if isinstance(verdict, dict) and not verdict.get("passed", True):
        kept = (f"registered as {registration.name} v{registration.version} with status rejected (never promotable)"
                if registration is not None else "it was not registered")
        err.print(f"gate refused the model: {verdict.get('reason')}; {kept}", markup=False, soft_wrap=True)
        raise typer.Exit(code=4)
