"""Step conformance over the standard graph with every optional step on (tune, a test source, both
audits, model tests and the comparison with production):

a. a step is a function of its declared params, inputs, refs, bound values and named services only;
b. its cache key covers every parameter (and every input digest), and nothing in `bound` or `services`;
c. with a fixed seed it produces the same artifacts in two fresh stores, except for the named wall-clock
   outputs (`train.timings`, `tune.timings`) and per-store fields (the signing key and what depends on it),
   checked field by field.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.orchestrators.conftest import small_spec

from keelml.engine.cache import cache_key, key_parts
from keelml.engine.executors import Backend
from keelml.engine.graph import Graph
from keelml.engine.step import Step
from keelml.model.trust import TrustPolicy
from keelml.pipeline import RunOutcome, run
from keelml.pipeline.graph import standard_graph
from keelml.pipeline.inputs import resolve_inputs
from keelml.pipeline.production import production_reference
from keelml.pipeline.services import codecs, project_services
from keelml.registry.project import Project, open_project
from keelml.spec.pipeline import load_spec

NAME = "orch-test"
OPTIONAL = {"ingest_test", "tune", "privacy", "robustness", "compare"}
PRODUCTION = {"name": NAME, "version": 3, "bundle": "ab" * 32}


def full_spec(directory: Path) -> Path:
    """The orchestrator tests' small project (300 + 150 synthetic rows) with every optional step on:
    2 tuning trials, a test source, both audits on 50 rows, model tests and a gate relative to production."""
    path = small_spec(directory, test=True, tune=True, security=True)
    text = path.read_text().replace("gate:\n  min_score: 0.6\n", "gate:\n  min_score: 0.6\n  max_metric_drop: 0.05\n")
    assert "max_metric_drop" in text
    path.write_text(text + "tests:\n  sample_rows: 50\n  invariance:\n    - {column: colour, max_flip_rate: 1.0}\n"
                           "  directional:\n    - {column: x, direction: increasing, tolerance: 1.0}\n")
    return path


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Graph:
    loaded = load_spec(full_spec(tmp_path_factory.mktemp("graph")))
    return standard_graph(loaded, resolve_inputs(loaded), PRODUCTION, signer="ed25519:0123456789abcdef")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    loaded = load_spec(full_spec(tmp_path_factory.mktemp("services")))
    project = open_project(loaded)
    try:
        yield project_services(project, loaded, run_id="conformance", backend=Backend())
    finally:
        project.close()


def test_the_graph_has_every_optional_step(graph: Graph) -> None:
    assert set(graph.steps) >= OPTIONAL | {"ingest", "validate", "profile", "split", "train", "evaluate",
                                           "model_tests", "export", "gate", "bundle", "register"}
    assert graph.steps["compare"].params["production"] == PRODUCTION
    assert graph.steps["tune"].params["tune"]["trials"] == 2


# a. a function of its declared inputs, params, bound values and named services ---------------------------

def _declared(step: Step) -> dict[str, list[str]]:
    return {"params": ["params"], "inputs": list(step.inputs), "refs": list(step.refs), "bound": list(step.bound),
            "services": list(step.services)}


def test_every_step_takes_exactly_what_it_declares(graph: Graph, services: dict[str, Any]) -> None:
    problems: list[str] = []
    for step in graph.order():
        fn = step.fn
        where = f"{step.name} ({fn.__module__}.{fn.__qualname__})"
        # a plain module-level function of keelml.pipeline.steps: no partial, no closure, no bound method
        if not (inspect.isfunction(fn) and fn.__module__.startswith("keelml.pipeline.steps.")
                and fn.__qualname__ == fn.__name__ and fn.__closure__ is None):
            problems.append(f"{where}: not a plain function of keelml.pipeline.steps")
            continue
        declared = _declared(step)
        names = [name for group in declared.values() for name in group]
        if len(names) != len(set(names)):
            problems.append(f"{where}: a name is declared twice across params/inputs/refs/bound/services: {names}")
        parameters = inspect.signature(fn).parameters
        variadic = [p.name for p in parameters.values() if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if variadic:
            problems.append(f"{where}: takes *args/**kwargs ({variadic}), so it can take undeclared values")
        for name in names:
            if name not in parameters:
                problems.append(f"{where}: declares {name!r} but its signature has no such parameter")
            elif parameters[name].kind not in (inspect.Parameter.KEYWORD_ONLY,
                                               inspect.Parameter.POSITIONAL_OR_KEYWORD):
                problems.append(f"{where}: {name!r} cannot be passed by keyword")
        for name, parameter in parameters.items():
            if name not in names and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) \
                    and parameter.default is inspect.Parameter.empty:
                problems.append(f"{where}: requires {name!r}, which the step does not declare")
        missing = sorted(set(step.services) - set(services))
        if missing:
            problems.append(f"{where}: names service(s) {missing} that project_services does not provide")
    assert not problems, "\n".join(problems)


def test_every_output_has_a_codec_and_every_service_is_used(graph: Graph, services: dict[str, Any]) -> None:
    available = codecs(TrustPolicy())
    unknown = {f"{s.name}.{out}": codec for s in graph.order() for out, codec in s.outputs.items()
               if codec not in available}
    assert not unknown
    # with every optional step on, every service the project provides has a step that names it
    assert {name for step in graph.order() for name in step.services} == set(services)


# b. the cache key covers every parameter and input, and nothing bound or supplied at run time -------------

def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _input_digests(step: Step) -> dict[str, str]:
    return {arg: _digest(f"{step.name}:{arg}:{ref}") for arg, ref in {**step.inputs, **step.refs}.items()}


def _key(step: Step, digests: dict[str, str] | None = None) -> str:
    return cache_key(key_parts(step, _input_digests(step) if digests is None else digests))


def mutate(value: Any) -> Any:
    """A different JSON value of the same shape where one exists (any change must change the key)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 1 if math.isfinite(value) else 0.5
    if isinstance(value, str):
        return value + "-changed"
    if value is None:
        return "changed"
    if isinstance(value, list):
        return [*value, "changed"]
    if isinstance(value, dict):
        return {**value, "changed": True}
    raise TypeError(f"not a JSON value: {type(value).__name__}")


JsonPath = tuple[str | int, ...]


def leaves(value: Any, path: JsonPath = ()) -> Iterator[JsonPath]:
    """Every leaf of a JSON value (scalars and empty containers), by path."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path


def replaced(params: Any, path: JsonPath, change: Callable[[Any], Any]) -> Any:
    changed = copy.deepcopy(params)
    holder = changed
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = change(holder[path[-1]])
    return changed


def test_params_are_plain_json(graph: Graph) -> None:
    """key_parts stringifies what JSON cannot hold (default=str): such a value (a set, a Path, an object)
    could key two different parameters alike, or one parameter differently from run to run."""
    for step in graph.order():
        text = json.dumps(step.params, sort_keys=True, allow_nan=False)  # no default=: raises on non-JSON
        assert json.loads(text) == step.params, step.name


def test_every_parameter_and_input_digest_is_in_the_key(graph: Graph) -> None:
    checked = 0
    for step in graph.order():
        base = _key(step)
        assert _key(step) == base, step.name  # the key is a function of the step alone
        assert step.params, f"{step.name} has no parameters"
        for name, value in step.params.items():  # each top-level entry
            changed = dataclasses.replace(step, params={**step.params, name: mutate(value)})
            assert _key(changed) != base, f"{step.name}: params[{name!r}] is not in the key"
            checked += 1
        for path in leaves(dict(step.params)):  # each nested leaf
            changed = dataclasses.replace(step, params=replaced(dict(step.params), path, mutate))
            assert _key(changed) != base, f"{step.name}: params{list(path)} is not in the key"
            checked += 1
        digests = _input_digests(step)
        assert set(digests) == set(step.inputs) | set(step.refs)
        for arg in digests:
            assert _key(step, {**digests, arg: _digest("other")}) != base, f"{step.name}: input {arg!r}"
        assert _key(dataclasses.replace(step, version=step.version + ".1")) != base, step.name
    assert checked > 200  # the full graph's parameters, not a handful


def test_bound_values_and_services_are_not_in_the_key(graph: Graph) -> None:
    for step in graph.order():
        base = _key(step)
        for name, value in step.bound.items():
            changed = mutate(value) if isinstance(value, dict | list | str | int | float | bool) else None
            assert _key(dataclasses.replace(step, bound={**step.bound, name: changed})) == base, step.name
        assert _key(dataclasses.replace(step, bound={})) == base, step.name
        assert _key(dataclasses.replace(step, services=())) == base, step.name
        assert _key(dataclasses.replace(step, services=(*step.services, "another"))) == base, step.name
    # the bound values are what keys must not depend on: where a file lies, how many processes and threads
    assert set(graph.steps["ingest"].bound) >= {"location"}
    assert graph.steps["train"].bound["resources"].keys() == {"n_jobs", "threads"}


# c. the same artifacts from two fresh stores -------------------------------------------------------------

@dataclass
class Store:
    spec: Path
    first: RunOutcome  # production unset: compare has no reference
    second: RunOutcome  # v1 promoted to production: compare loads and compares it
    project: Project

    def value(self, artifact_id: str) -> Any:
        return json.loads(self.project.artifacts.get(artifact_id))

    def graph(self, outcome: RunOutcome) -> Graph:
        """The graph the run ran (production as it was then: unset for the first run, v1 for the second)."""
        loaded = load_spec(self.spec)
        production = None if outcome is self.first else production_reference(self.project.registry, NAME)
        return standard_graph(loaded, resolve_inputs(loaded), production, signer=self.project.keys.key_id)


def produced(outcome: RunOutcome) -> dict[str, str]:
    """Every output of a run by reference ("step.output"), as artifact digests."""
    return {f"{s.name}.{out}": digest for s in outcome.steps for out, digest in s.outputs.items()}


def _store(directory: Path) -> Store:
    spec = full_spec(directory)
    first = run(spec)
    assert all(s.status == "ran" for s in first.steps), "a fresh store ran every step"
    assert first.registration is not None and first.registration.version == 1
    project = open_project(load_spec(spec))
    project.registry.promote(NAME, 1, reason="the reference for compare")
    second = run(spec)
    return Store(spec, first, second, project)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Store]]:
    # two directories: the data lies at other locations (a bound value), and each store has its own keys
    a, b = _store(tmp_path_factory.mktemp("a")), _store(tmp_path_factory.mktemp("b"))
    try:
        yield a, b
    finally:
        a.project.close()
        b.project.close()


def _without(value: dict[str, Any], path: JsonPath, fields: set[str]) -> None:
    """Remove `fields` from the mapping at `path`, insisting each is there (so the list never goes stale)."""
    holder: Any = value
    for part in path:
        holder = holder[part]
    for name in fields:
        assert name in holder, f"expected field {[*path, name]} is gone: update the named exceptions"
        del holder[name]


def _timings(value: dict[str, Any], ref: str) -> None:
    """A step's wall-clock output: the fields it must have, whose values differ from run to run."""
    expected = {"tune.timings": {"seconds", "trials"},
                "train.timings": {"fit_seconds", "cv_seconds", "cv_fit_seconds_mean", "monitoring_seconds"}}[ref]
    _without(value, (), expected)
    assert value == {}, f"{ref} holds more than its timings: {sorted(value)}"


def normalised(ref: str, value: Any, store: Store, outcome: RunOutcome) -> Any:
    """An output with its named wall-clock and per-store fields removed; per-store facts are first checked
    against the store they came from."""
    value = copy.deepcopy(value)
    own = produced(outcome)
    if ref in ("tune.timings", "train.timings"):
        _timings(value, ref)
    elif ref == "gate.verdict":
        # names what it judged by digest: this run's own outputs, one of which (compare) names the store's v1
        step = store.graph(outcome).steps["gate"]
        for name, digest in value["judged"].items():
            assert digest == own[step.refs[f"{name}_id"]], name
            value["judged"][name] = step.refs[f"{name}_id"]
    elif ref == "bundle.bundle":
        # signed with the store's own key; its components are that run's outputs, by digest
        manifest = value["manifest"]
        assert manifest["signed_by"] == store.project.keys.key_id
        step = store.graph(outcome).steps["bundle"]
        for part, entry in manifest["components"].items():
            assert entry["sha256"] == own[step.refs[part]], (part, step.refs[part])
            entry["sha256"] = step.refs[part]  # compared by what it is, not by digest
        _without(value, ("manifest",), {"signed_by"})
        _without(value, (), {"signature"})
    elif ref == "register.registration":
        assert value["bundle_id"] == own["bundle.bundle"]
        _without(value, (), {"bundle_id"})
    elif ref == "compare.comparison" and value["reference"] is not None:
        reference = value["reference"]  # production by identity: its bundle is this store's v1
        assert reference["bundle"] == store.first.registration.bundle_id  # type: ignore[union-attr]
        _without(value, ("reference",), {"bundle"})
    return value


# outputs that legitimately differ between two stores; every other output must be byte-identical (train.cv
# and tune.tuning among them: their wall-clock figures are the separate `timings` outputs, in no bundle)
DIFFERS = {"tune.timings": "the study's and each trial's duration", "train.timings": "fit, CV and monitoring durations",
           "bundle.bundle": "the store's signing key and signature",
           "register.registration": "the bundle's digest"}
# outputs whose comparison with production names the production bundle (signed with the store's key), and
# the verdict that names that comparison by digest
DIFFERS_WITH_PRODUCTION = {**DIFFERS, "compare.comparison": "the production version's bundle digest",
                           "gate.verdict": "the digest of the comparison it judged"}


def _pairs(a: Store, b: Store) -> Iterator[tuple[str, RunOutcome, RunOutcome, dict[str, str]]]:
    yield "without production", a.first, b.first, DIFFERS
    yield "against production v1", a.second, b.second, DIFFERS_WITH_PRODUCTION


def test_outputs_are_identical_across_two_fresh_stores(stores: tuple[Store, Store]) -> None:
    a, b = stores
    assert a.project.keys.key_id != b.project.keys.key_id
    for label, one, other, differs in _pairs(a, b):
        assert [s.name for s in one.steps] == [s.name for s in other.steps]
        assert {s.name for s in one.steps} >= OPTIONAL
        mismatched: list[str] = []
        for mine, theirs in zip(one.steps, other.steps, strict=True):
            assert mine.outputs.keys() == theirs.outputs.keys()
            for output, digest in mine.outputs.items():
                ref = f"{mine.name}.{output}"
                if ref in differs:  # decoded, the difference must lie only in the named fields
                    assert normalised(ref, a.value(digest), a, one) == normalised(
                        ref, b.value(theirs.outputs[output]), b, other), f"{label}: {ref}"
                elif digest != theirs.outputs[output]:
                    mismatched.append(ref)
        assert not mismatched, f"{label}: not reproducible across stores: {mismatched}"
    comparison = a.value(produced(a.second)["compare.comparison"])
    assert comparison["reference"]["version"] == 1  # the second runs did compare with a production model
    assert a.second.verdict is not None and any("vs production v1" in c["name"] for c in a.second.verdict["checks"])


def test_keys_agree_across_stores_exactly_where_inputs_and_params_agree(stores: tuple[Store, Store]) -> None:
    """The data's location and the stores' services (PII key, trial store, registrar) are in no key: a step
    has the same key in both stores exactly when its parameters and input digests are the same there."""
    a, b = stores
    for label, one, other, _ in _pairs(a, b):
        graph_a, graph_b = a.graph(one), b.graph(other)
        made_a, made_b = produced(one), produced(other)
        equal = []
        for mine, theirs in zip(one.steps, other.steps, strict=True):
            step_a, step_b = graph_a.steps[mine.name], graph_b.steps[mine.name]
            inputs_a = {arg: made_a[ref] for arg, ref in {**step_a.inputs, **step_a.refs}.items()}
            inputs_b = {arg: made_b[ref] for arg, ref in {**step_b.inputs, **step_b.refs}.items()}
            # the graphs rebuilt here are the ones that ran: they give the keys the runs recorded
            assert (mine.key, theirs.key) == (_key(step_a, inputs_a), _key(step_b, inputs_b)), mine.name
            same = inputs_a == inputs_b and step_a.params == step_b.params and step_a.version == step_b.version
            assert (mine.key == theirs.key) == same, f"{label}: {mine.name}"
            if same:
                equal.append(mine.name)
        # the ingest steps read files at two different locations, under one key
        assert graph_a.steps["ingest"].bound["location"] != graph_b.steps["ingest"].bound["location"]
        assert {"ingest", "ingest_test", "validate", "split", "tune", "evaluate", "export"} <= set(equal), label
        assert "bundle" not in equal  # its parameters name the store's signing key
