"""`keel lineage NAME/VERSION` and `keel lineage --data DIGEST`: what made a model, and what data fed."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from keelml.cli.common import SPEC_OPTION, open_from_spec, when
from keelml.cli.output import out, print_json
from keelml.errors import InputError
from keelml.names import parse_model_ref


def lineage(ref: str | None = typer.Argument(None, help="NAME, NAME/VERSION or NAME@ALIAS"),
            data: str | None = typer.Option(None, "--data", help="A data file's SHA-256 (or 8+ hex digits of it): "
                                                                 "list the versions it fed."),
            spec: Path = SPEC_OPTION, as_json: bool = typer.Option(False, "--json")) -> None:
    """Data digests, contract version, spec, code version (git commit), parameters and run of a version."""
    if (ref is None) == (data is None):
        raise InputError("give either NAME/VERSION or --data DIGEST", expected="exactly one of them",
                         fix="e.g. `keel lineage adult-income/2` or `keel lineage --data 5b002646`")
    parsed = parse_model_ref(ref) if ref is not None else None
    project = open_from_spec(spec)
    try:
        if parsed is not None:
            facts = project.registry.lineage(*parsed)
        else:
            fed = project.registry.versions_fed_by(str(data))
    finally:
        project.close()
    if parsed is None:
        if as_json:
            print_json(fed)
        elif not fed:
            out.print(f"no registered version was trained or tested on data {data}", markup=False)
        for row in [] if as_json else fed:
            out.print(f"{row['name']} v{row['version']}: {row['role']} data {row['digest']} (run {row['run_id']})",
                      markup=False)
        return
    if as_json:
        print_json(facts)
        return
    code = facts.get("code") or {}
    commit = code.get("git_commit")
    code_text = f"keelml {code.get('keelml')}" + (
        f", git {commit}{' (uncommitted changes)' if code.get('git_dirty') else ''}" if commit else ", no git commit")
    spec_facts = facts.get("spec") or {}
    lines = [
        f"{facts['name']} v{facts['version']}" + (f" ({', '.join(facts['aliases'])})" if facts["aliases"] else ""),
        f"  run:        {facts['run_id']} (registered {when(facts['registered_at'])})",
        *(f"  data:       {role} sha256 {digest}" for role, digest in sorted(facts["data_digests"].items())),
        f"  contract:   version {facts['contract_version']}",
        f"  spec:       {spec_facts.get('path', '-')} sha256 {spec_facts.get('digest', '-')}",
        f"  code:       {code_text}",
        f"  parameters: {json.dumps(facts['parameters'], sort_keys=True) if facts['parameters'] else 'not recorded'}",
        f"  bundle:     {facts['bundle']}",
    ]
    origin = facts.get("origin")
    if origin:
        lines.append(f"  imported:   from {origin.get('trusted_as')} ({origin.get('signed_by')}), "
                     f"their {origin.get('name')} v{origin.get('version')}")
    for line in lines:
        out.print(line, markup=False, soft_wrap=True)
