"""`keel keys show-public|trust|list|rotate`: share, trust and rotate keys (key material is never printed).

The store's key handling (cryptography) and the registry load inside each command, so `keel --help`
stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from keelml.cli import apikeys
from keelml.cli.common import ACTOR_OPTION, SPEC_OPTION, open_from_spec
from keelml.cli.output import err, out, print_json
from keelml.errors import IntegrityError, KeyMaterialError, SpecError

app = typer.Typer(help="Project keys (share, trust, rotate) and API keys for `keel serve`.",
                  no_args_is_help=True)


@app.command("show-public")
def show_public(spec: Path = SPEC_OPTION) -> None:
    """Print this project's public signing key (PEM) on stdout, for others to trust its exports."""
    from keelml.store.trust import public_key_pem

    project = open_from_spec(spec)
    try:
        pem = public_key_pem(project.keys)
    finally:
        project.close()
    sys.stdout.write(pem.decode("ascii"))
    err.print(f"key id {project.keys.key_id}", markup=False)


@app.command("trust")
def trust(public_key: Path = typer.Argument(..., help="Another project's public key (PEM)."),
          name: str = typer.Option(..., "--name", help="A name for the key, e.g. the other team."),
          actor: str | None = ACTOR_OPTION, spec: Path = SPEC_OPTION) -> None:
    """Accept bundles exported by the holder of PUBLIC_KEY in `keel models import`."""
    try:
        pem = public_key.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {public_key}: {exc.strerror}", expected="a PEM public key file",
                               fix="check the path") from None
    project = open_from_spec(spec)
    try:
        key_id = project.trust.add(name, pem, own=project.keys)
        project.audit.append("key_trust", actor=actor, trusted_name=name, trusted_key_id=key_id)
    finally:
        project.close()
    out.print(f"trusting {key_id} as {name!r}: `keel models import` accepts bundles it signed", markup=False)


@app.command("list")
def list_keys(spec: Path = SPEC_OPTION, as_json: bool = typer.Option(False, "--json")) -> None:
    """This project's key ids and the trusted keys of other projects."""
    project = open_from_spec(spec)
    try:
        trusted = {name: kid for name, (kid, _) in project.trust.keys().items()}
        own = {"signing_key_id": project.keys.key_id, "master_key_id": project.keys.master_key_id,
               "source": project.keys.source}
    finally:
        project.close()
    if as_json:
        print_json({"project": own, "trusted": trusted})
        return
    out.print(f"this project: signing {own['signing_key_id']}, master {own['master_key_id']} ({own['source']})",
              markup=False)
    for name, kid in trusted.items():
        out.print(f"trusted: {name} {kid}", markup=False)


@app.command("rotate")
def rotate(actor: str | None = ACTOR_OPTION, spec: Path = SPEC_OPTION,
           as_json: bool = typer.Option(False, "--json")) -> None:
    """New master key: re-wrap every artifact's data key (payloads untouched); the old key is retired.

    Safe to interrupt: running it again finishes the same rotation."""
    from keelml.registry.project import shared_artifacts
    from keelml.store.rotation import rotate_master_key

    project = open_from_spec(spec)
    try:
        if shared_artifacts(project) is not None:
            raise SpecError(f"keel keys rotate works on a store's own directory; this project's artifacts are "
                            f"shared at {project.artifacts.location}",
                            expected="store.artifacts_url unset (not yet supported for shared artifact stores)",
                            fix="keep the current master key; rotation of shared stores comes later")
        report = rotate_master_key(project.artifacts.root, project.key_provider(), audit=project.audit, actor=actor)
    finally:
        project.close()
    if as_json:
        print_json(report.__dict__)
    else:
        resumed = " (finished an interrupted rotation)" if report.resumed else ""
        out.print(f"master key rotated{resumed}: {report.old_key_id} -> {report.new_key_id}; "
                  f"{report.rewrapped} data keys re-wrapped, {report.unchanged} unchanged; "
                  f"old key kept in {project.keys_dir / 'retired'} to read backups", markup=False, soft_wrap=True)
    if report.problems:
        raise IntegrityError(f"{len(report.problems)} artifact(s) could not be re-wrapped: "
                             + "; ".join(report.problems[:5]),
                             expected="every artifact intact",
                             fix="run `keel verify`, re-run the pipeline, rotate again")


app.command("create-api-key")(apikeys.create_api_key)
app.command("list-api-keys")(apikeys.list_api_keys)
app.command("revoke-api-key")(apikeys.revoke_api_key)
app.command("export-hashes")(apikeys.export_hashes)
