"""`keel models promote|rollback|history`: move aliases, with who, when, from, to and why recorded.

The registry, the promotion and the spec load inside each command, so `keel --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from keelml.cli.common import ACTOR_OPTION, SPEC_OPTION, open_from_spec, when
from keelml.cli.output import err, out, print_json
from keelml.names import PRODUCTION, check_version


def _print_change(change: object, as_json: bool) -> None:
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
            to: str = typer.Option(PRODUCTION, "--to", help="Alias to point at the version."),
            reason: str = typer.Option(..., "--reason", help="Why (kept in the history and audit log)."),
            skip_infra_validation: bool = typer.Option(
                False, "--skip-infra-validation",
                help="Emergencies only: move the alias without serving the version first (recorded in the "
                     "audit log and the history's reason)."),
            sample: int = typer.Option(200, "--sample", min=1, help="Held-out rows sent in infra validation."),
            actor: str | None = ACTOR_OPTION, spec: Path = SPEC_OPTION,
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Point NAME@ALIAS at VERSION after verifying it fully and infra-validating it: a fresh server process
    answers held-out rows over HTTP and must match the predictions recorded at evaluation (exit 3 if not)."""
    from keelml.pipeline.promotion import promote_validated
    from keelml.spec.pipeline import load_spec

    serve = load_spec(spec).spec.serve.model_dump(mode="json")
    project = open_from_spec(spec)
    try:
        done = promote_validated(project, name, version, alias=to, reason=reason, actor=actor,
                                 skip_infra_validation=skip_infra_validation, sample=sample, serve=serve)
    finally:
        project.close()
    if as_json:
        print_json(done.as_dict())
        return
    if done.skipped:
        err.print(f"WARNING: infra validation skipped (--skip-infra-validation): v{done.change.to_version} was "
                  "not served before the alias moved; this is recorded in the audit log", markup=False)
    elif done.infra is not None:
        err.print(f"infra validation passed: {done.infra.reason} ({done.infra.seconds:.1f}s)", markup=False,
                  soft_wrap=True)
    _print_change(done.change, False)


def rollback(name: str = typer.Argument(..., help="Model name."),
             to: str | None = typer.Option(None, "--to", help="Version to go back to (default: the one "
                                                              "the alias pointed to before its current one)."),
             alias: str = typer.Option(PRODUCTION, "--alias", help="Alias to move back."),
             reason: str = typer.Option("rollback", "--reason", help="Why (kept in the history and audit log)."),
             actor: str | None = ACTOR_OPTION, spec: Path = SPEC_OPTION,
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Move NAME@ALIAS back to its previous version (or --to VERSION). No infra validation: the target was
    validated when it was promoted, and a rollback must be fast; it is still fully verified."""
    project = open_from_spec(spec)
    try:
        change = project.registry.rollback(name, alias=alias, to=check_version(to) if to is not None else None,
                                           reason=reason, actor=actor)
        held = any(row["alias"] == alias and row["to_version"] == change.to_version
                   and row["audit_seq"] != change.audit_seq for row in project.registry.alias_history(name))
    finally:
        project.close()
    if not held:
        err.print(f"note: v{change.to_version} never held {name}@{alias} before, so it was not infra-validated for "
                  f"it; `keel models promote {name} {change.to_version} --to {alias}` validates first", markup=False,
                  soft_wrap=True)
    _print_change(change, as_json)


def history(name: str = typer.Argument(..., help="Model name."), spec: Path = SPEC_OPTION,
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Every promotion and rollback of NAME's aliases, oldest first, and where each alias points now."""
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
