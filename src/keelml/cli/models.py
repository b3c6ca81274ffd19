"""`keel models ...`: registered models, their signed versions and aliases, verification, export and import."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from keelml.cli import aliases as alias_cmds
from keelml.cli import transport as transport_cmds
from keelml.cli.common import SPEC_OPTION, open_from_spec
from keelml.cli.output import out, print_json
from keelml.names import parse_model_ref

app = typer.Typer(help="The model registry: versions, aliases, verification, export and import.",
                  no_args_is_help=True)
app.command("promote")(alias_cmds.promote)
app.command("rollback")(alias_cmds.rollback)
app.command("history")(alias_cmds.history)
app.command("export")(transport_cmds.export)
app.command("import")(transport_cmds.import_)


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@app.command("list")
def list_models(spec: Path = SPEC_OPTION, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every registered model and its versions: status (staging or rejected, with the gate's reasons) and aliases."""
    project = open_from_spec(spec)
    try:
        rows = project.registry.models()
        for row in rows:
            aliases = project.registry.aliases(row["name"])
            row["aliases"] = aliases
            row["entries"] = [{"version": v["version"], "status": v["status"], "reasons": v["reasons"],
                               "aliases": [a for a, n in aliases.items() if n == v["version"]],
                               "primary": v["metrics"].get("primary"), "created_at": v["created_at"]}
                              for v in project.registry.versions(row["name"])]
    finally:
        project.close()
    if as_json:
        print_json(rows)
        return
    table = Table("model", "version", "status", "aliases", "primary metric", "created")
    for row in rows:
        for entry in row["entries"]:
            table.add_row(row["name"], str(entry["version"]), entry["status"], ", ".join(entry["aliases"]) or "-",
                          _metric(entry["primary"]), _when(entry["created_at"]))
    out.print(table)
    _print_reasons([(row["name"], entry) for row in rows for entry in row["entries"]])


def _print_reasons(entries: list[tuple[str, dict[str, Any]]]) -> None:
    """Why each rejected version was rejected (the gate's failed checks), one line each."""
    for name, entry in entries:
        for reason in entry["reasons"]:
            out.print(f"{name} v{entry['version']} {entry['status']}: {reason}", markup=False, soft_wrap=True)


def _metric(primary: dict[str, Any] | None) -> str:
    return f"{primary.get('name')} {primary.get('value', 0):.4f}" if primary else "-"


@app.command("show")
def show_model(name: str = typer.Argument(..., help="NAME, NAME/VERSION or NAME@ALIAS"), spec: Path = SPEC_OPTION,
               as_json: bool = typer.Option(False, "--json")) -> None:
    """A model's versions; with NAME/VERSION or NAME@ALIAS, that version's verified bundle manifest."""
    model, ref = parse_model_ref(name)
    project = open_from_spec(spec)
    try:
        if ref is not None:
            row, bundle = project.registry.bundle(model, project.registry.resolve(model, ref), rejected_ok=True)
            if as_json:
                print_json({"version": row, "bundle": bundle})
                return
            manifest = bundle["manifest"]
            out.print(f"[bold]{model}[/bold] v{row['version']}: signature verified ({manifest['signed_by']}), "
                      f"status {row['status']}")
            for reason in row["reasons"]:
                out.print(f"  rejected: {reason}", markup=False, soft_wrap=True)
            for part, entry in manifest["components"].items():
                out.print(f"  {part:<9} {entry['codec']:<6} sha256 {entry['sha256']}")
            out.print(f"  environment: {manifest['info'].get('environment')}", soft_wrap=True)
            return
        rows = project.registry.versions(model)
        aliases = project.registry.aliases(model)
    finally:
        project.close()
    if as_json:
        print_json(rows)
        return
    table = Table("version", "status", "aliases", "created", "primary metric", "bundle")
    table.add_column("run", no_wrap=True)
    for row in rows:
        pointing = ", ".join(a for a, v in aliases.items() if v == row["version"]) or "-"
        table.add_row(str(row["version"]), row["status"], pointing, _when(row["created_at"]),
                      _metric(row["metrics"].get("primary")), row["bundle_id"][:12], row["run_id"])
    out.print(table)
    _print_reasons([(model, row) for row in rows])


@app.command("verify")
def verify_model(ref: str = typer.Argument(..., help="NAME, NAME/VERSION or NAME@ALIAS (default: latest)"),
                 spec: Path = SPEC_OPTION, as_json: bool = typer.Option(False, "--json")) -> None:
    """Fully verify one version: signature, every component's digest and decryption, the gate verdict,
    and the model file's types against the allowlist (nothing is deserialized). Exit 3 on any failure."""
    model, version_ref = parse_model_ref(ref)
    project = open_from_spec(spec)
    try:
        report = project.registry.verify(model, version_ref, rejected_ok=True)
    finally:
        project.close()
    if as_json:
        print_json({"ok": True, **report})
        return
    tags = f" ({', '.join(report['aliases'])})" if report["aliases"] else ""
    tags += " [rejected by the gate]" if report["status"] == "rejected" else ""
    out.print(f"{model} v{report['version']}{tags}: verified: signature by {report['signed_by']}, "
              f"{len(report['components'])} components re-hashed, "
              f"model types allowlisted ({report.get('model_types', 0)} non-default)", markup=False, soft_wrap=True)
