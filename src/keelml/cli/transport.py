"""`keel models export|import`: one version as a single signed archive file, and its verified import."""

from __future__ import annotations

from pathlib import Path

import typer

from keelml.cli.common import ACTOR_OPTION, SPEC_OPTION, open_from_spec
from keelml.cli.output import out, print_json
from keelml.names import parse_model_ref


def export(ref: str = typer.Argument(..., help="NAME/VERSION or NAME@ALIAS"),
           output: Path = typer.Option(..., "--output", "-o", help="Archive to write, e.g. bundle.keel."),
           force: bool = typer.Option(False, "--force", help="Replace an existing file."),
           actor: str | None = ACTOR_OPTION, spec: Path = SPEC_OPTION,
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Verify a version and write it as one archive (manifest, signatures, component plaintexts).

    The archive is signed but not encrypted: it holds the model and its contract in the clear."""
    name, version_ref = parse_model_ref(ref)
    project = open_from_spec(spec)
    try:
        result = project.registry.export_bundle(name, version_ref, output, actor=actor, overwrite=force)
    finally:
        project.close()
    if as_json:
        print_json(result)
        return
    out.print(f"exported {name} v{result['version']} to {output} ({result['bytes']} bytes, "
              f"sha256 {result['sha256']}); signed by {project.keys.key_id}", markup=False, soft_wrap=True)
    out.print("the receiving project must trust this key: give it `keel keys show-public` output", markup=False)


def import_(archive: Path = typer.Argument(..., help="An archive written by `keel models export`."),
            allow_type: list[str] = typer.Option(
                [], "--allow-type", metavar="module.Name",
                help="Allow one type beyond this project's trust policy in the archive's model (repeat for each "
                     "type a refused import listed); recorded in the audit log and in this version only."),
            actor: str | None = ACTOR_OPTION, spec: Path = SPEC_OPTION,
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Verify an archive (trusted signer, signatures, digests, type audit, safe entries) and register it."""
    project = open_from_spec(spec)
    try:
        reg = project.registry.import_bundle(archive, project.trust, actor=actor, allow_types=allow_type)
    finally:
        project.close()
    allowed = sorted(set(allow_type))
    if as_json:
        print_json({"name": reg.name, "version": reg.version, "bundle": reg.bundle_id, "new_version": reg.created,
                    "allowed_types": allowed})
        return
    state = "registered new version" if reg.created else "already registered as"
    out.print(f"imported {archive}: {state} {reg.name} v{reg.version} (bundle {reg.bundle_id[:12]}, "
              "re-encrypted under this project's keys)", markup=False, soft_wrap=True)
    if allowed:
        out.print(f"allowed beyond this project's trust policy, for this version only: {', '.join(allowed)}",
                  markup=False, soft_wrap=True)
