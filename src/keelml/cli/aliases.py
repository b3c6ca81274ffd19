"""`keel models promote|rollback|history`: move aliases, with who, when, from, to and why recorded."""

from __future__ import annotations

from pathlib import Path

import typer

from keelml.cli.common import ACTOR_OPTION, SPEC_OPTION, open_from_spec, when


def _print_change(change: object, as_json: bool) -> None:
    from keelml.cli.output import out, print_json
    from keelml.registry import AliasChange

    assert isinstance(change, AliasChange)
    if as_json:
        print_json(change.as_dict())
        return
    target = f"{change.name}@{change.alias}"
    if not change.changed:
        out.print(f"{target} is already v{change.to_version}: nothing changed", markup=False)
        return
    before = f"v{change.from_version}" if change.from_version is not None else "(unset)"
    out.print(f"{target}: {before} -> v{change.to_version} ({change.action} by {change.actor}: {change.reason})",
              markup=False, soft_wrap=True)


def promote(name: str = typer.Argument(..., help="Model name."),
            version: str = typer.Argument(..., help="Version number to promote."),
            to: str = typer.Option("production", "--to", help="Alias to point at the version."),
            reason: str = typer.Option(..., "--reason", help="Why (kept in the history and audit log)."),
            actor: str | None = ACTOR_OPTION, spec: Path = SPEC_OPTION,
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Point NAME@ALIAS at VERSION after verifying it fully (a gate-refused model is never promoted)."""
    from keelml.names import check_version

    project = open_from_spec(spec)
    try:
        change = project.registry.promote(name, check_version(version), alias=to, reason=reason, actor=actor)
    finally:
        project.close()
    _print_change(change, as_json)


def rollback(name: str = typer.Argument(..., help="Model name."),
             to: str | None = typer.Option(None, "--to", help="Version to go back to (default: the one "
                                                              "the alias pointed to before its current one)."),
             alias: str = typer.Option("production", "--alias", help="Alias to move back."),
             reason: str = typer.Option("rollback", "--reason", help="Why (kept in the history and audit log)."),
             actor: str | None = ACTOR_OPTION, spec: Path = SPEC_OPTION,
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Move NAME@ALIAS back to its previous version (or --to VERSION)."""
    from keelml.names import check_version

    project = open_from_spec(spec)
    try:
        change = project.registry.rollback(name, alias=alias, to=check_version(to) if to is not None else None,
                                           reason=reason, actor=actor)
    finally:
        project.close()
    _print_change(change, as_json)


def history(name: str = typer.Argument(..., help="Model name."), spec: Path = SPEC_OPTION,
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Every promotion and rollback of NAME's aliases, oldest first, and where each alias points now."""
    from rich.table import Table
    from rich.text import Text

    from keelml.cli.output import out, print_json

    project = open_from_spec(spec)
    try:
        project.registry.versions(name)  # an unknown model is an error, not an empty history
        rows = project.registry.alias_history(name)
        current = project.registry.aliases(name)
    finally:
        project.close()
    if as_json:
        print_json({"aliases": current, "history": rows})
        return
    table = Table("when", "alias", "action", "from", "to", "actor", "reason")
    for row in rows:
        before = f"v{row['from_version']}" if row["from_version"] is not None else "-"
        table.add_row(when(row["at"]), row["alias"], row["action"], before, f"v{row['to_version']}",
                      Text(row["actor"]), Text(row["reason"]))  # user text: never markup
    out.print(table)
    now = ", ".join(f"{alias} -> v{version}" for alias, version in current.items()) or "no aliases set"
    out.print(f"{name}: {now}", markup=False)
