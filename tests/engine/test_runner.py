from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from keelml.engine.codecs import BUILTIN
from keelml.engine.graph import Graph, GraphError
from keelml.engine.runner import OutputMismatch, Runner, StepResult
from keelml.engine.step import Step
from keelml.store.artifacts import ArtifactStore
from keelml.store.metadata import MetadataStore

CALLS: list[str] = []


def load(*, params: Mapping[str, Any]) -> dict[str, Any]:
    CALLS.append("load")
    return {"numbers": list(range(params["n"]))}


def parity(*, params: Mapping[str, Any], numbers: list[int]) -> dict[str, Any]:
    CALLS.append("parity")
    return {"even": sum(1 for x in numbers if x % 2 == 0) >= params["min_even"]}


def total(*, params: Mapping[str, Any], numbers: list[int]) -> dict[str, Any]:
    CALLS.append("total")
    return {"sum": sum(numbers) * params["scale"]}


def report(*, params: Mapping[str, Any], total: int, numbers_id: str) -> dict[str, Any]:
    CALLS.append("report")
    return {"text": f"total={total} from {numbers_id[:8]}"}


def flag(*, params: Mapping[str, Any], even: bool) -> dict[str, Any]:
    CALLS.append("flag")
    return {"label": "even" if even else "odd"}


def graph(n: int = 10, scale: int = 1, min_even: int = 1) -> Graph:
    return Graph([
        Step("flag", flag, inputs={"even": "parity.even"}, outputs={"label": "text"}),
        Step("load", load, outputs={"numbers": "json"}, params={"n": n}),
        Step("parity", parity, inputs={"numbers": "load.numbers"}, outputs={"even": "json"},
             params={"min_even": min_even}),
        Step("total", total, inputs={"numbers": "load.numbers"}, outputs={"sum": "json"},
             params={"scale": scale}),
        Step("report", report, inputs={"total": "total.sum"}, refs={"numbers_id": "load.numbers"},
             outputs={"text": "text"}),
    ])


def run(artifacts: ArtifactStore, metadata: MetadataStore, g: Graph, run_id: str) -> list[StepResult]:
    CALLS.clear()
    metadata.start_run(run_id, pipeline="t", spec_path="x", spec_digest="0")
    runner = Runner(artifacts, metadata, BUILTIN, scope="t", run_id=run_id)
    results = runner.run(g)
    metadata.finish_run(run_id, status="succeeded")
    return results


def statuses(results: list[StepResult]) -> dict[str, str]:
    return {r.name: r.status for r in results}


def test_second_run_is_fully_cached(artifacts: ArtifactStore, metadata: MetadataStore) -> None:
    first = run(artifacts, metadata, graph(), "r1")
    assert set(statuses(first).values()) == {"ran"}
    assert first[0].explain == ["first run of this step (no earlier result in this store)"]
    second = run(artifacts, metadata, graph(), "r2")
    assert set(statuses(second).values()) == {"cached"}
    assert CALLS == []
    assert [r.outputs for r in first] == [r.outputs for r in second]


def test_param_change_reruns_only_what_depends_on_it(artifacts: ArtifactStore, metadata: MetadataStore) -> None:
    run(artifacts, metadata, graph(), "r1")
    results = run(artifacts, metadata, graph(scale=2), "r2")
    assert statuses(results) == {"load": "cached", "parity": "cached", "flag": "cached", "total": "ran",
                                 "report": "ran"}
    by_name = {r.name: r for r in results}
    assert by_name["total"].explain == ["parameter scale changed: 1 -> 2"]
    assert by_name["report"].explain[0].startswith("input total changed: ")


def test_unchanged_output_digest_stops_the_cascade(artifacts: ArtifactStore, metadata: MetadataStore) -> None:
    run(artifacts, metadata, graph(min_even=1), "r1")
    results = run(artifacts, metadata, graph(min_even=2), "r2")
    # parity re-ran but produced the same value: nothing downstream of it would re-run
    assert statuses(results)["parity"] == "ran"
    assert statuses(results)["flag"] == "cached"
    assert "flag" not in CALLS


def test_missing_cached_artifact_is_recomputed(artifacts: ArtifactStore, metadata: MetadataStore) -> None:
    first = run(artifacts, metadata, graph(), "r1")
    total_id = next(r for r in first if r.name == "total").outputs["sum"]
    (Path(artifacts.root) / "objects" / total_id[:2] / total_id).unlink()
    results = run(artifacts, metadata, graph(), "r2")
    assert statuses(results)["total"] == "ran"
    rerun = next(r for r in results if r.name == "total")
    assert rerun.explain == ["cached output sum is missing from the store; recomputing it"]
    assert artifacts.exists(total_id)


def test_lineage_is_recorded(artifacts: ArtifactStore, metadata: MetadataStore) -> None:
    first = run(artifacts, metadata, graph(), "r1")
    record = metadata.get_run("r1")
    assert [s["name"] for s in record["steps"]] == ["load", "parity", "flag", "total", "report"]
    reads = {(e["step"], e["name"]) for e in record["lineage"] if e["direction"] == "in"}
    assert ("report", "numbers_id") in reads and ("total", "numbers") in reads
    writes = {e["artifact_id"] for e in record["lineage"] if e["direction"] == "out"}
    assert first[0].outputs["numbers"] in writes


def test_declared_outputs_are_enforced(artifacts: ArtifactStore, metadata: MetadataStore) -> None:
    bad = Graph([Step("load", load, outputs={"other": "json"}, params={"n": 1})])
    with pytest.raises(OutputMismatch, match="declares"):
        run(artifacts, metadata, bad, "r1")
    assert metadata.lookup("anything") is None


def test_graph_validation() -> None:
    with pytest.raises(GraphError, match="unknown output"):
        Graph([Step("a", load, inputs={"x": "b.y"}, outputs={"o": "json"})])
    with pytest.raises(GraphError, match="cycle"):
        Graph([Step("a", load, inputs={"x": "b.o"}, outputs={"o": "json"}),
               Step("b", load, inputs={"x": "a.o"}, outputs={"o": "json"})])
    with pytest.raises(GraphError, match="two steps"):
        Graph([Step("a", load, outputs={"o": "json"}), Step("a", load, outputs={"o": "json"})])
    assert [s.name for s in graph().upstream("report")] == ["load", "total", "report"]


def test_explain_names_nested_parameters() -> None:
    from keelml.engine.cache import explain_change

    old = {"version": "1", "params": {"model": {"params": {}}, "seed": 1}, "inputs": {"a": "x" * 64}}
    new = {"version": "2", "params": {"model": {"params": {"max_iter": 5}}}, "inputs": {"a": "y" * 64}}
    assert explain_change(old, new) == [
        "step version changed: 1 -> 2",
        "parameter model.params.max_iter added: 5",
        "parameter seed removed (was 1)",
        "input a changed: xxxxxxxxxxxx -> yyyyyyyyyyyy",
    ]


def test_damaged_cached_artifact_is_recomputed_and_rewritten(artifacts: ArtifactStore,
                                                            metadata: MetadataStore) -> None:
    first = run(artifacts, metadata, graph(), "r1")
    numbers_id = first[0].outputs["numbers"]
    path = Path(artifacts.root) / "objects" / numbers_id[:2] / numbers_id
    blob = bytearray(path.read_bytes())
    blob[-2] ^= 0xFF
    path.write_bytes(bytes(blob))
    results = run(artifacts, metadata, graph(), "r2")
    load = next(r for r in results if r.name == "load")
    assert load.status == "ran"
    assert load.explain[0].startswith("cached output numbers failed its integrity check")
    assert statuses(results)["total"] == "cached"  # same content, same id: nothing downstream re-runs
    assert artifacts.get(numbers_id) == b"[0,1,2,3,4,5,6,7,8,9]"


def test_cached_upstream_refuses_to_compute_a_missing_step(artifacts: ArtifactStore, metadata: MetadataStore) -> None:
    from keelml.engine.runner import UpstreamNotCached

    metadata.start_run("u1", pipeline="t", spec_path="x", spec_digest="0")
    runner = Runner(artifacts, metadata, BUILTIN, scope="t", run_id="u1")
    CALLS.clear()
    with pytest.raises(UpstreamNotCached) as caught:
        runner.run(graph(), only="report", cached_upstream=True)
    assert (caught.value.step, caught.value.needed_by) == ("load", "report") and CALLS == []
    run(artifacts, metadata, graph(), "u2")  # every step cached now
    metadata.start_run("u3", pipeline="t", spec_path="x", spec_digest="0")
    runner = Runner(artifacts, metadata, BUILTIN, scope="t", run_id="u3")
    CALLS.clear()
    with pytest.raises(UpstreamNotCached) as caught:  # total's parameters changed: no cached result for it
        runner.run(graph(scale=3), only="report", cached_upstream=True)
    assert caught.value.step == "total" and "no cached result" in str(caught.value) and CALLS == []
    assert statuses(runner.run(graph(scale=3), only="total", cached_upstream=True)) == {"load": "cached",
                                                                                         "total": "ran"}
    assert CALLS == ["total"]  # the named step itself runs; only the steps before it must be cached
