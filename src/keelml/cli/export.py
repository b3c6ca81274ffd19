"""`keel export TARGET SPEC -o OUT`: hand the spec's step graph to an orchestrator (Airflow, Kubeflow).

The orchestrator exports and the spec load inside the command, so `keel --help` stays fast.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import typer

from keelml.cli.output import out, print_json
from keelml.errors import InputError

TARGETS = {"airflow": "an Airflow DAG file (.py)", "kubeflow": "a Kubeflow Pipelines v2 spec (.yaml)"}
EXAMPLES = "keel export airflow pipeline.yaml -o dags/  or  keel export kubeflow pipeline.yaml -o pipeline-kfp.yaml"


def export(
    target: str = typer.Argument(..., help="airflow or kubeflow."),
    spec: Path = typer.Argument(Path("pipeline.yaml"), help="The pipeline spec (a file or its directory)."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="airflow: a DAG folder (the file is named after the spec) or a .py file; "
        "kubeflow: the .yaml file to write (default: <spec name>-kfp.yaml)."),
    spec_path: str | None = typer.Option(
        None, "--spec-path", help="The spec's path as the tasks see it (default: this spec's absolute path)."),
    keel_command: str = typer.Option("keel", "--keel-command",
                                     help="How the tasks call keel, e.g. /opt/venv/bin/keel."),
    image: str | None = typer.Option(None, "--image", help="kubeflow: the container image with keelml in it "
                                     "(default: keelml:<version>)."),
    dag_id: str | None = typer.Option(None, "--dag-id", help="airflow: the DAG id (default: the spec's name)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON on stdout."),
) -> None:
    """Write the spec's graph for an orchestrator: one task per step, each running `keel run SPEC --step NAME`."""
    from keelml.orchestrators.topology import spec_path_for_tasks, step_graph
    from keelml.spec.pipeline import load_spec

    if target not in TARGETS:
        raise InputError(f"unknown export target {target!r}",
                         expected="one of: " + ", ".join(f"{name} ({what})" for name, what in TARGETS.items()),
                         fix=EXAMPLES)
    for option, value, owner in (("--image", image, "kubeflow"), ("--dag-id", dag_id, "airflow")):
        if value is not None and target != owner:
            raise InputError(f"{option} applies to `keel export {owner}`, not to `keel export {target}`",
                             expected=f"{option} only with the {owner} target", fix=f"drop {option}")
    loaded = load_spec(spec)
    tasks_spec = spec_path_for_tasks(loaded, spec_path)
    graph = step_graph(loaded)
    name = loaded.spec.name
    if target == "airflow":
        from keelml.orchestrators.airflow import airflow_dag

        text = airflow_dag(graph, spec_path=tasks_spec, keel=keel_command, dag_id=dag_id)
        destination = _destination(output or Path("dags"), name.replace("-", "_").replace(".", "_") + ".py",
                                   suffixes=(".py",), spec_file=loaded.path)
        _write_atomically(destination, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    else:
        from keelml.orchestrators.kubeflow import DEFAULT_IMAGE, compile_kubeflow

        destination = _destination(output or Path(f"{name}-kfp.yaml"), f"{name}-kfp.yaml",
                                   suffixes=(".yaml", ".yml", ".json"), spec_file=loaded.path)
        _write_atomically(destination, lambda tmp: compile_kubeflow(
            graph, tmp, spec_path=tasks_spec, image=image or DEFAULT_IMAGE, keel=keel_command))
    edges = graph.edges()
    if as_json:
        print_json({"target": target, "output": str(destination), "pipeline": name, "spec_path": tasks_spec,
                    "steps": list(graph.order), "edges": [list(e) for e in edges]})
        return
    out.print(f"wrote {TARGETS[target].split(' (')[0]} for {name!r}: {len(graph.order)} tasks, {len(edges)} "
              f"dependencies -> {destination}", soft_wrap=True, markup=False)
    out.print(f"each task runs: {keel_command} run {tasks_spec} --step NAME", soft_wrap=True, markup=False)


def _destination(output: Path, default_name: str, *, suffixes: tuple[str, ...], spec_file: Path) -> Path:
    """The file to write: `output` itself when it names a file, else `default_name` inside that folder."""
    path = output / default_name if output.is_dir() or output.suffix.lower() not in suffixes else output
    if path.resolve() == spec_file.resolve():
        raise InputError(f"the output {path} is the spec itself; writing it would overwrite your pipeline spec",
                         expected="an output path other than the spec file",
                         fix=f"pass -o with another file name, e.g. -o {default_name}")
    if path.exists() and not path.is_file():
        raise InputError(f"the output {path} exists and is not a file",
                         expected="a file path (overwritten if it exists) or a folder to write into",
                         fix="pass -o with another path")
    return path


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Create the folder, write to a temporary file beside `path`, then rename it into place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise InputError(f"cannot write to {path.parent}: {exc.strerror or exc}",
                         expected="a folder this user may create files in",
                         fix="pass -o with a writable path, or fix the folder's permissions") from None
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}",
                         expected="a writable output path", fix="pass -o with a writable path") from None
    finally:
        tmp.unlink(missing_ok=True)
