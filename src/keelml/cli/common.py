"""Shared CLI options and the way commands open a project from a spec.

The registry and the spec load inside open_from_spec, so `keel --help` stays fast.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from keelml.registry.project import Project

SPEC_OPTION = typer.Option(Path("pipeline.yaml"), "--spec", "-f", envvar="KEEL_SPEC",
                           help="The pipeline spec whose store to use.")


def open_from_spec(spec: Path) -> Project:
    """Open an existing store (never creates keys: reading commands must not invent a project)."""
    from keelml.registry.project import open_project
    from keelml.spec.pipeline import load_spec

    return open_project(load_spec(spec), create=False)

ACTOR_OPTION = typer.Option(None, "--actor", help="Who is doing this, for the history and audit log "
                                                   "(default: the OS user).")


def when(ts: float | None) -> str:
    """A local timestamp for tables."""
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def record_failure(project: Project, problems: list[str]) -> None:
    """A ``verification_failure`` audit record for what a verification command found (never fails itself)."""
    import contextlib

    with contextlib.suppress(Exception):
        project.audit.append("verification_failure", name="store", version=None, problem="; ".join(problems)[:500],
                             problems=len(problems))
