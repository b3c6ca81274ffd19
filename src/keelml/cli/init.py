"""`keel init DIR`: a commented starter pipeline.yaml and the project's keys.

Key creation (cryptography) loads inside the command, so `keel --help` stays fast.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import typer

from keelml.cli.output import out
from keelml.store.atomic import atomic_write_bytes


def init(directory: Path = typer.Argument(Path("."), help="Project directory (created if missing).")) -> None:
    """Create DIR/pipeline.yaml (if absent) and the project's keys in DIR/.keel/keys."""
    from keelml.store.keys import create_keys, key_files_exist

    directory.mkdir(parents=True, exist_ok=True)
    spec_path = directory / "pipeline.yaml"
    if spec_path.exists():
        out.print(f"kept existing {spec_path}")
    else:
        template = resources.files("keelml").joinpath("templates/pipeline.yaml").read_text(encoding="utf-8")
        atomic_write_bytes(spec_path, template.encode("utf-8"))
        out.print(f"wrote {spec_path} (edit data.train.path and data.target, then `keel run {spec_path}`)")
    keys_dir = directory / ".keel" / "keys"
    if key_files_exist(keys_dir):
        out.print(f"kept existing keys in {keys_dir}")
    else:
        keyring = create_keys(keys_dir)
        out.print(f"created keys in {keys_dir} (mode 0600; signing key {keyring.key_id}). "
                  "Back them up: encrypted artifacts cannot be read without them. Never commit them.")
    gitignore = directory / ".gitignore"
    lines = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    missing = [entry for entry in (".keel/", ".keel-reports/") if entry not in lines]
    if missing:
        atomic_write_bytes(gitignore, ("\n".join([*lines, *missing]) + "\n").encode("utf-8"))
