"""`keel models list|show`: registered models and their signed versions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from keelml.cli.common import SPEC_OPTION, open_from_spec

app = typer.Typer(help="Inspect the model registry.", no_args_is_help=True)


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@app.command("list")
def list_models(spec: Path = SPEC_OPTION, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every registered model with its number of versions and latest version."""
    from rich.table import Table

    from keelml.cli.output import out, print_json

    project = open_from_spec(spec)
    try:
        rows = project.registry.models()
    finally:
        project.close()
    if as_json:
        print_json(rows)
        return
    table = Table("model", "versions", "latest", "updated")
    for row in rows:
        table.add_row(row["name"], str(row["versions"]), str(row["latest"]), _when(row["updated_at"]))
    out.print(table)


@app.command("show")
def show_model(name: str = typer.Argument(..., help="NAME or NAME/VERSION"), spec: Path = SPEC_OPTION,
               as_json: bool = typer.Option(False, "--json")) -> None:
    """A model's versions; with NAME/VERSION, that version's verified bundle manifest."""
    from rich.table import Table

    from keelml.cli.output import out, print_json
    from keelml.errors import KeelError

    model, _, version_text = name.partition("/")
    if version_text and not version_text.isdigit():
        raise KeelError(f"{name!r}: version must be a number", expected="NAME or NAME/VERSION, e.g. adult-income/2",
                        fix="list versions with `keel models show NAME`")
    project = open_from_spec(spec)
    try:
        if version_text:
            row, bundle = project.registry.bundle(model, int(version_text))
            if as_json:
                print_json({"version": row, "bundle": bundle})
                return
            manifest = bundle["manifest"]
            out.print(f"[bold]{model}[/bold] v{row['version']}: signature verified ({manifest['signed_by']})")
            for part, entry in manifest["components"].items():
                out.print(f"  {part:<9} {entry['codec']:<6} sha256 {entry['sha256']}")
            out.print(f"  environment: {manifest['info'].get('environment')}", soft_wrap=True)
            return
        rows = project.registry.versions(model)
    finally:
        project.close()
    if as_json:
        print_json(rows)
        return
    table = Table("version", "created", "primary metric", "bundle")
    table.add_column("run", no_wrap=True)
    for row in rows:
        primary = row["metrics"].get("primary") or {}
        metric = f"{primary.get('name')} {primary.get('value', 0):.4f}" if primary else "-"
        table.add_row(str(row["version"]), _when(row["created_at"]), metric, row["bundle_id"][:12], row["run_id"])
    out.print(table)
