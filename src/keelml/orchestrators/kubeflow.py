"""Compile a Kubeflow Pipelines v2 spec with the kfp SDK: one container task per step.

Each task runs `keel run SPEC --step NAME` in the keelml image; `.after()` wires the graph's edges.
KFP's own cache is turned off for every task, since it would skip a task whose command did not
change even when the data did: keelml's cache, keyed by data digests, decides what re-runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from keelml import __version__
from keelml.errors import InputError, SpecError
from keelml.orchestrators.topology import StepGraph, task_command

DEFAULT_IMAGE = f"keelml:{__version__}"
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$")


def _kfp() -> tuple[Any, Any]:
    try:
        from kfp import compiler, dsl  # optional extra `kubeflow`, only when compiling
    except ImportError:
        raise SpecError("the kfp SDK is not installed, so a Kubeflow pipeline cannot be compiled",
                        expected="keelml installed with its kubeflow extra",
                        fix="pip install 'keelml[kubeflow]'") from None
    return compiler, dsl


def _component(dsl: Any, step: str, image: str, command: list[str]) -> Any:
    """A container component named after the step, running `command` in `image`."""

    def component() -> Any:
        return dsl.ContainerSpec(image=image, command=command[:1], args=command[1:])

    component.__annotations__ = {"return": dsl.ContainerSpec}  # kfp reads the class, not this module's string
    component.__name__ = f"keel_{step}"
    component.__qualname__ = component.__name__
    component.__doc__ = f"keelml step {step}: {' '.join(command)}"
    return dsl.container_component(component)


def compile_kubeflow(graph: StepGraph, output: Path, *, spec_path: str, image: str = DEFAULT_IMAGE,
                     keel: str = "keel") -> None:
    """Write the KFP v2 pipeline spec (YAML) for `graph` to `output`."""
    if not _IMAGE.match(image):
        raise InputError(f"--image {image!r} is not a container image reference",
                         expected="e.g. keelml:0.1.0 or registry.example/team/keelml@sha256:...",
                         fix="pass the image that has keelml (and the spec and data paths) on it")
    compiler, dsl = _kfp()
    components = {step: _component(dsl, step, image, task_command(keel, spec_path, step)) for step in graph.order}

    def body() -> None:
        tasks: dict[str, Any] = {}
        for step in graph.order:
            task = components[step]()
            task.set_display_name(step)
            task.set_caching_options(False)
            for upstream in graph.needs[step]:
                task.after(tasks[upstream])
            tasks[step] = task

    body.__annotations__ = {}  # a pipeline without outputs: no return annotation for kfp to read
    body.__name__ = graph.pipeline.replace(".", "-").replace("_", "-")
    pipeline = dsl.pipeline(name=body.__name__, description=f"keelml pipeline {graph.pipeline} (keelml {__version__})")(
        body)
    compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(output))
