"""`keel runs list|show`: what ran, when, with which steps cached, and the lineage."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer
from rich.table import Table

from keelml.cli.common import SPEC_OPTION, open_from_spec
from keelml.cli.output import out, print_json

app = typer.Typer(help="Inspect pipeline runs.", no_args_is_help=True)


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


@app.command("list")
def list_runs(spec: Path = SPEC_OPTION, limit: int = typer.Option(20, min=1),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """The most recent runs, newest first."""
    project = open_from_spec(spec)
    try:
        rows = project.metadata.list_runs(limit=limit)
    finally:
        project.close()
    if as_json:
        print_json([{k: v for k, v in r.items() if k != "summary"} for r in rows])
        return
    table = Table("status", "started", "seconds", "ran/cached")
    table.add_column("run", no_wrap=True)
    table.add_column("pipeline", no_wrap=True)
    for row in rows:
        steps = (row.get("summary") or {}).get("steps", [])
        ran = sum(1 for s in steps if s["status"] == "ran")
        secs = f"{row['finished_at'] - row['started_at']:.1f}" if row.get("finished_at") else "-"
        table.add_row(row["status"], _when(row["started_at"]), secs,
                      f"{ran}/{len(steps) - ran}" if steps else "-", row["id"], row["pipeline"])
    out.print(table)


@app.command("show")
def show_run(run_id: str = typer.Argument(..., help="A run id or a unique prefix."), spec: Path = SPEC_OPTION,
             as_json: bool = typer.Option(False, "--json")) -> None:
    """One run: its steps (ran or cached, and why), the artifacts each read and wrote."""
    project = open_from_spec(spec)
    try:
        run = project.metadata.get_run(run_id)
    finally:
        project.close()
    if as_json:
        print_json(run)
        return
    out.print(f"run [bold]{run['id']}[/bold] of {run['pipeline']}: {run['status']}, started {_when(run['started_at'])}")
    if run.get("error"):
        out.print(f"error: {run['error']}", soft_wrap=True)
    table = Table("step", "status", "seconds", "reads", "writes")
    for step in run["steps"]:
        edges = [e for e in run["lineage"] if e["step"] == step["name"]]
        reads = ", ".join(f"{e['name']}={e['artifact_id'][:10]}" for e in edges if e["direction"] == "in")
        writes = ", ".join(f"{e['name']}={e['artifact_id'][:10]}" for e in edges if e["direction"] == "out")
        table.add_row(step["name"], step["status"], f"{step['duration_s']:.2f}", reads, writes)
    out.print(table)
    summary = run.get("summary") or {}
    if summary.get("model"):
        model = summary["model"]
        out.print(f"model: {model['name']} v{model['version']} (bundle {model['bundle'][:12]})")
    if summary.get("report"):
        out.print(f"report: {summary['report']}", soft_wrap=True)
