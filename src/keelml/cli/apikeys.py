"""`keel keys create-api-key | list-api-keys | revoke-api-key | export-hashes`: API keys for `keel serve`.

Shown once, stored as hashes; registered on the `keel keys` group by cli/keys.py.

keelml.serve.auth loads inside each command, so `keel --help` stays fast.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import typer

from keelml.cli.common import ACTOR_OPTION, SPEC_OPTION, open_from_spec
from keelml.cli.output import err, out


def create_api_key(name: str = typer.Option(..., "--name", help="Who or what the key is for."),
                   actor: str | None = ACTOR_OPTION, spec: Path = SPEC_OPTION) -> None:
    """Create an API key: it is printed once and only its SHA-256 hash is stored (audited, never the key)."""
    from keelml.serve.auth import create_api_key as create

    project = open_from_spec(spec)
    try:
        key = create(project.metadata, name, audit=project.audit, actor=actor)
    finally:
        project.close()
    sys.stdout.write(key + "\n")
    err.print(f"created API key {name!r}: copy it now, it is not shown again "
              "(send it as `Authorization: Bearer <key>`)")


def list_api_keys(spec: Path = SPEC_OPTION) -> None:
    """Key names, ids and status (never the keys)."""
    from keelml.serve.auth import list_api_keys as listed

    project = open_from_spec(spec)
    try:
        keys = listed(project.metadata)
    finally:
        project.close()
    for key in keys:
        when = dt.datetime.fromtimestamp(key.created_at).strftime("%Y-%m-%d %H:%M:%S")
        status = "revoked" if key.revoked_at else "active"
        out.print(f"{key.name:<24} {key.id}  {status:<8} created {when}")


def revoke_api_key(name: str = typer.Argument(...), actor: str | None = ACTOR_OPTION,
                   spec: Path = SPEC_OPTION) -> None:
    """Revoke a key; running servers stop accepting it within their poll interval."""
    from keelml.serve.auth import revoke_api_key as revoke

    project = open_from_spec(spec)
    try:
        revoke(project.metadata, name, audit=project.audit, actor=actor)
    finally:
        project.close()
    out.print(f"revoked API key {name!r}")


def export_hashes(output: Path = typer.Option(..., "--output", "-o"), spec: Path = SPEC_OPTION) -> None:
    """Write the active keys' hashes (not the keys) for a containerised server."""
    from keelml.serve.auth import active_key_hashes, write_hashes_file

    project = open_from_spec(spec)
    try:
        hashes = active_key_hashes(project.metadata)
    finally:
        project.close()
    output.parent.mkdir(parents=True, exist_ok=True)
    write_hashes_file(output, hashes)
    out.print(f"wrote {len(hashes)} key hash(es) to {output}")
