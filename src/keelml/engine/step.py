"""A step: a plain function from input artifacts to output artifacts, with declared names."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

StepFn = Callable[..., Mapping[str, Any]]


@dataclass(frozen=True)
class Step:
    """One node of a pipeline graph.

    `fn` is called as ``fn(params=params, **inputs)`` and returns a mapping with exactly the
    declared output names. `inputs` maps each argument name to a reference ``"step.output"``
    whose decoded value is passed; `refs` likewise but passes the artifact id (its SHA-256);
    `outputs` maps each output name to the codec that turns it into bytes. `params` must be
    JSON-serialisable: it is part of the cache key, as is `version` (bump it when the function's
    behaviour changes). `bound` holds values that are not part of the key (a file's location, the
    process count); `services` names what the runner supplies at run time (a signer, a trust policy,
    a registry...), so a graph can be built, inspected and exported without keys or a database.
    """

    name: str
    fn: StepFn
    outputs: Mapping[str, str]
    inputs: Mapping[str, str] = field(default_factory=dict)
    refs: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    version: str = "1"
    bound: Mapping[str, Any] = field(default_factory=dict)
    services: tuple[str, ...] = ()

    def ref(self, output: str) -> str:
        """The reference other steps use to consume one of this step's outputs."""
        if output not in self.outputs:
            raise KeyError(f"step {self.name!r} has no output {output!r}")
        return f"{self.name}.{output}"

    def dependencies(self) -> list[str]:
        """Every output reference this step reads, by value or by id."""
        return [*self.inputs.values(), *self.refs.values()]
