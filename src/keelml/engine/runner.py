"""Run a graph: reuse cached results by key, run the rest, record every step as it finishes."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from keelml.engine.cache import cache_key, explain_change, key_parts
from keelml.engine.codecs import Codec
from keelml.engine.graph import Graph
from keelml.engine.step import Step
from keelml.errors import IntegrityError


class Artifacts(Protocol):
    """Where step outputs are kept: content-addressed bytes, verified on read."""

    def put(self, data: bytes, *, codec: str) -> str: ...
    def get(self, artifact_id: str) -> bytes: ...
    def problem(self, artifact_id: str) -> str | None:
        """None if the artifact can be used as is; otherwise what is wrong with it."""


class Recorder(Protocol):
    """The cache index and the run log (the store's signed `StepCache` implements it)."""

    def lookup(self, key: str, *, step: str) -> dict[str, str] | None:
        """The outputs cached under key for step, or None. Raises IntegrityError for an entry that cannot
        be trusted (not made by this step under this key): the runner recomputes the step."""
    def previous_parts(self, scope: str, step: str) -> dict[str, Any] | None: ...
    def remember(self, *, key: str, scope: str, step: str, outputs: Mapping[str, str],
                 parts: Mapping[str, Any], run_id: str) -> None: ...
    def record_step(self, *, run_id: str, name: str, status: str, key: str, duration_s: float,
                    explain: list[str], inputs: Mapping[str, str],
                    outputs: Mapping[str, tuple[str, str, int]]) -> None:
        """Record a step; outputs are (artifact id, codec, size), size -1 for cached outputs."""


@dataclass
class StepResult:
    """What happened to one step in one run."""

    name: str
    status: str  # ran | cached
    key: str
    duration_s: float
    outputs: dict[str, str]
    explain: list[str] = field(default_factory=list)
    refused: str | None = None  # why the cache entry under this key was refused (then the step ran)


class Events(Protocol):
    """Progress callbacks (the CLI shows them; tests may record them)."""

    def step_started(self, step: Step) -> None: ...
    def step_finished(self, result: StepResult) -> None: ...


class OutputMismatch(RuntimeError):
    """A step returned other outputs than it declared."""


class MissingService(LookupError):
    """A step names a service the runner was not given (a programming error in the wiring)."""


class UpstreamNotCached(LookupError):
    """A step that `only` needs has no usable cached result, and the run was told not to compute it."""

    def __init__(self, step: str, needed_by: str, reason: str) -> None:
        self.step = step
        self.needed_by = needed_by
        self.reason = reason
        super().__init__(f"step {needed_by!r} needs step {step!r}, which {reason}")


@dataclass
class Runner:
    """Executes a graph against an artifact store and a recorder. Holds no global state.

    `services` are handed to the steps that name them (`Step.services`); they are never part of a key.
    """

    artifacts: Artifacts
    recorder: Recorder
    codecs: Mapping[str, Codec]
    scope: str
    run_id: str
    events: Events | None = None
    services: Mapping[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.perf_counter
    _digests: dict[str, str] = field(default_factory=dict)
    _values: dict[str, Any] = field(default_factory=dict)
    _codec_names: dict[str, str] = field(default_factory=dict)

    def run(self, graph: Graph, *, only: str | None = None, cached_upstream: bool = False) -> list[StepResult]:
        """Run the graph, or step `only` and what it needs, in order.

        With `only` and `cached_upstream`, every step before `only` must come from the cache: the first
        one that cannot raises UpstreamNotCached (what an orchestrator running one task per step wants).
        """
        steps = graph.upstream(only) if only else graph.order()
        strict = only if cached_upstream else None
        return [self._run_step(step, None if step.name == only else strict) for step in steps]

    def value(self, ref: str) -> Any:
        """The decoded value of a step output ("step.output"), loading it if needed."""
        if ref not in self._values:
            codec = self.codecs[self._codec_names[ref]]
            self._values[ref] = codec.decode(self.artifacts.get(self._digests[ref]))
        return self._values[ref]

    def digest(self, ref: str) -> str:
        return self._digests[ref]

    def _run_step(self, step: Step, cached_for: str | None = None) -> StepResult:
        for name, codec_name in step.outputs.items():
            if codec_name not in self.codecs:
                raise KeyError(f"step {step.name!r} output {name!r} uses unknown codec {codec_name!r}")
            self._codec_names[f"{step.name}.{name}"] = codec_name
        inputs = {arg: self._digests[ref] for arg, ref in {**step.inputs, **step.refs}.items()}
        parts = key_parts(step, inputs)
        key = cache_key(parts)
        started = self.clock()
        refused = None
        try:
            hit = self.recorder.lookup(key, step=step.name)
        except IntegrityError as exc:  # an entry not made by this step under this key: never used
            hit, refused = None, exc.what
        problems = [f"cached output {name} {problem}; recomputing it"
                    for name, artifact_id in (hit or {}).items()
                    if (problem := self.artifacts.problem(artifact_id)) is not None]
        problems += [f"{refused}; refused it, recomputing the step"] if refused is not None else []
        if hit is not None and set(hit) == set(step.outputs) and not problems:
            for name, artifact_id in hit.items():
                self._digests[f"{step.name}.{name}"] = artifact_id
            result = StepResult(step.name, "cached", key, self.clock() - started, dict(hit))
            self._record(step, result, inputs, {n: (a, step.outputs[n], -1) for n, a in hit.items()})
            return result

        if cached_for is not None:
            reason = ("has a cached result that cannot be used (" + "; ".join(problems) + ")" if problems
                      else "has no cached result for these inputs and parameters")
            raise UpstreamNotCached(step.name, cached_for, reason)
        if hit is not None or refused is not None:
            explain = problems or ["same key as before, but the cached result has other outputs than declared"]
        else:
            explain = explain_change(self.recorder.previous_parts(self.scope, step.name), parts)
        if self.events:
            self.events.step_started(step)
        missing = [name for name in step.services if name not in self.services]
        if missing:
            raise MissingService(f"step {step.name!r} needs service(s) {', '.join(missing)}, which the runner lacks")
        kwargs: dict[str, Any] = {arg: self.value(ref) for arg, ref in step.inputs.items()}
        kwargs.update({arg: self._digests[ref] for arg, ref in step.refs.items()})
        kwargs.update({name: self.services[name] for name in step.services})
        produced = step.fn(params=step.params, **step.bound, **kwargs)
        if set(produced) != set(step.outputs):
            raise OutputMismatch(
                f"step {step.name!r} returned {sorted(produced)} but declares {sorted(step.outputs)}"
            )
        written: dict[str, tuple[str, str, int]] = {}
        for name, obj in produced.items():
            codec = self.codecs[step.outputs[name]]
            data = codec.encode(obj)
            artifact_id = self.artifacts.put(data, codec=codec.name)
            ref = f"{step.name}.{name}"
            self._digests[ref] = artifact_id
            self._values[ref] = obj
            written[name] = (artifact_id, codec.name, len(data))
        outputs = {n: w[0] for n, w in written.items()}
        # Only after every output is durably stored does the cache learn about the result.
        self.recorder.remember(key=key, scope=self.scope, step=step.name, outputs=outputs,
                               parts=parts, run_id=self.run_id)
        result = StepResult(step.name, "ran", key, self.clock() - started, outputs, explain, refused)
        self._record(step, result, inputs, written)
        return result

    def _record(self, step: Step, result: StepResult, inputs: Mapping[str, str],
                outputs: Mapping[str, tuple[str, str, int]]) -> None:
        self.recorder.record_step(
            run_id=self.run_id, name=step.name, status=result.status, key=result.key,
            duration_s=result.duration_s, explain=result.explain, inputs=inputs,
            outputs=outputs,
        )
        if self.events:
            self.events.step_finished(result)
