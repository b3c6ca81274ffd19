"""A spec's step graph as names and edges, and the command each orchestrator task runs."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from keelml.errors import InputError
from keelml.pipeline.graph import standard_graph
from keelml.pipeline.inputs import placeholder_inputs
from keelml.spec.pipeline import LoadedSpec


@dataclass(frozen=True)
class StepGraph:
    """The steps of one spec's standard graph in run order, each with the steps it reads from."""

    pipeline: str
    order: tuple[str, ...]
    needs: Mapping[str, tuple[str, ...]]

    def edges(self) -> list[tuple[str, str]]:
        """Every (upstream, downstream) pair, in run order."""
        return [(up, step) for step in self.order for up in self.needs[step]]


def step_graph(loaded: LoadedSpec) -> StepGraph:
    """The shape of the spec's standard graph: built from the spec alone, with placeholder data digests
    (they change keys, never edges). Reads no data, opens no store and touches no key."""
    graph = standard_graph(loaded, placeholder_inputs(loaded))
    order = tuple(step.name for step in graph.order())
    position = {name: i for i, name in enumerate(order)}
    needs = {step.name: tuple(sorted({ref.partition(".")[0] for ref in step.dependencies()}, key=position.__getitem__))
             for step in graph.order()}
    return StepGraph(loaded.spec.name, order, needs)


def task_command(keel: str, spec_path: str, step: str) -> list[str]:
    """The argv of the task that runs one step: `keel run SPEC --step NAME`."""
    return [*shlex.split(keel), "run", spec_path, "--step", step]


def spec_path_for_tasks(loaded: LoadedSpec, given: str | None) -> str:
    """The spec path the tasks use: as given (a path on the workers), else this spec's absolute path."""
    path = given if given is not None else str(loaded.path)
    if not path or any(c in path for c in "\x00\n\r"):
        raise InputError(f"the spec path for the tasks is not usable: {path!r}",
                         expected="a non-empty path on one line",
                         fix="pass --spec-path with the path of pipeline.yaml on the machines that run the tasks")
    return path
