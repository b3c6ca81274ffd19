"""A graph of steps: validated references, deterministic topological order."""

from __future__ import annotations

from collections.abc import Iterable

from keelml.engine.step import Step


class GraphError(ValueError):
    """The graph is malformed (a programming error in a pipeline definition, not bad user input)."""


class Graph:
    """Steps wired by their output references; `order()` is a stable topological order."""

    def __init__(self, steps: Iterable[Step]) -> None:
        self.steps: dict[str, Step] = {}
        for step in steps:
            if step.name in self.steps:
                raise GraphError(f"two steps are named {step.name!r}")
            if "." in step.name:
                raise GraphError(f"step name {step.name!r} must not contain '.'")
            self.steps[step.name] = step
        for step in self.steps.values():
            for arg, ref in {**step.inputs, **step.refs}.items():
                producer, _, output = ref.partition(".")
                if producer not in self.steps or output not in self.steps[producer].outputs:
                    raise GraphError(f"step {step.name!r} input {arg!r} refers to unknown output {ref!r}")
        self._order = self._toposort()

    def _toposort(self) -> list[Step]:
        done: list[Step] = []
        state: dict[str, int] = {}

        def visit(name: str, trail: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise GraphError("cycle: " + " -> ".join((*trail, name)))
            state[name] = 1
            for ref in self.steps[name].dependencies():
                visit(ref.partition(".")[0], (*trail, name))
            state[name] = 2
            done.append(self.steps[name])

        for name in self.steps:
            visit(name, ())
        return done

    def order(self) -> list[Step]:
        return list(self._order)

    def upstream(self, name: str) -> list[Step]:
        """The step and everything it depends on, in execution order."""
        needed: set[str] = set()

        def collect(n: str) -> None:
            if n not in needed:
                needed.add(n)
                for ref in self.steps[n].dependencies():
                    collect(ref.partition(".")[0])

        collect(name)
        return [s for s in self._order if s.name in needed]
