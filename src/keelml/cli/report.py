"""`keel report RUN`: the path of a run's HTML report (`latest` for the newest), optionally opened.

The registry and the spec load inside the command, so `keel --help` stays fast.
"""

from __future__ import annotations

import webbrowser
from pathlib import Path

import typer

from keelml.cli.common import SPEC_OPTION
from keelml.cli.output import out
from keelml.errors import NotFoundError

RECENT = 100  # runs searched for the newest report


def report(run_id: str = typer.Argument(..., help="A run id, a unique prefix of one, or `latest`."),
           spec: Path = SPEC_OPTION,
           open_it: bool = typer.Option(False, "--open", help="Open the report in the default web browser.")) -> None:
    """Print the path of a run's HTML report; --open opens it in a browser."""
    from keelml.registry.project import open_project
    from keelml.spec.pipeline import load_spec

    loaded = load_spec(spec)
    project = open_project(loaded, create=False)
    try:
        if run_id == "latest":
            runs = project.metadata.list_runs(pipeline=loaded.spec.name, limit=RECENT)
            found = next((r["id"] for r in runs if (project.reports_dir / r["id"] / "index.html").is_file()), None)
            if found is None:
                raise NotFoundError(f"no recent run of {loaded.spec.name} has a report",
                                    expected="a run that reached the evaluate step",
                                    fix=f"run the pipeline first: keel run {spec}")
            resolved = found
        else:
            resolved = project.metadata.get_run(run_id)["id"]
        path = project.reports_dir / resolved / "index.html"
    finally:
        project.close()
    if not path.is_file():
        raise NotFoundError(f"run {resolved} has no report",
                            expected="a run that reached the evaluate step (reports are written from there on)",
                            fix="list the runs with `keel runs list`, or re-run with `keel run`")
    out.print(str(path), soft_wrap=True, markup=False)
    if open_it:
        webbrowser.open(path.resolve().as_uri())
