from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from keelml.engine.codecs import BUILTIN
from keelml.engine.graph import Graph, GraphError
from keelml.engine.runner import OutputMismatch, Runner, StepResult
from keelml.engine.step import Step
from keelml.store.artifacts import ArtifactStore
from keelml.store.keys import KeyRing
from keelml.store.metadata import MetadataStore
from keelml.store.stepcache import StepCache

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


@pytest.fixture
def cache(metadata: MetadataStore, keys: KeyRing) -> StepCache:
    """The runner's recorder: the step cache signed with the project's key, over the metadata store."""
    return StepCache(metadata, keys)


def run(artifacts: ArtifactStore, cache: StepCache, g: Graph, run_id: str) -> list[StepResult]:
    CALLS.clear()
    cache.metadata.start_run(run_id, pipeline="t", spec_path="x", spec_digest="0")
    runner = Runner(artifacts, cache, BUILTIN, scope="t", run_id=run_id)
    results = runner.run(g)
    cache.metadata.finish_run(run_id, status="succeeded")
    return results


def statuses(results: list[StepResult]) -> dict[str, str]:
    return {r.name: r.status for r in results}


def test_second_run_is_fully_cached(artifacts: ArtifactStore, cache: StepCache) -> None:
    first = run(artifacts, cache, graph(), "r1")
    assert set(statuses(first).values()) == {"ran"}
    assert first[0].explain == ["first run of this step (no earlier result in this store)"]
    second = run(artifacts, cache, graph(), "r2")
    assert set(statuses(second).values()) == {"cached"}
    assert CALLS == []
    assert [r.outputs for r in first] == [r.outputs for r in second]


def test_param_change_reruns_only_what_depends_on_it(artifacts: ArtifactStore, cache: StepCache) -> None:
    run(artifacts, cache, graph(), "r1")
    results = run(artifacts, cache, graph(scale=2), "r2")
    assert statuses(results) == {"load": "cached", "parity": "cached", "flag": "cached", "total": "ran",
                                 "report": "ran"}
    by_name = {r.name: r for r in results}
    assert by_name["total"].explain == ["parameter scale changed: 1 -> 2"]
    assert by_name["report"].explain[0].startswith("input total changed: ")


def test_unchanged_output_digest_stops_the_cascade(artifacts: ArtifactStore, cache: StepCache) -> None:
    run(artifacts, cache, graph(min_even=1), "r1")
    results = run(artifacts, cache, graph(min_even=2), "r2")
    # parity re-ran but produced the same value: nothing downstream of it would re-run
    assert statuses(results)["parity"] == "ran"
    assert statuses(results)["flag"] == "cached"
    assert "flag" not in CALLS


def test_missing_cached_artifact_is_recomputed(artifacts: ArtifactStore, cache: StepCache) -> None:
    first = run(artifacts, cache, graph(), "r1")
    total_id = next(r for r in first if r.name == "total").outputs["sum"]
    (Path(artifacts.root) / "objects" / total_id[:2] / total_id).unlink()
    results = run(artifacts, cache, graph(), "r2")
    assert statuses(results)["total"] == "ran"
    rerun = next(r for r in results if r.name == "total")
    assert rerun.explain == ["cached output sum is missing from the store; recomputing it"]
    assert artifacts.exists(total_id)


def test_lineage_is_recorded(artifacts: ArtifactStore, cache: StepCache) -> None:
    first = run(artifacts, cache, graph(), "r1")
    record = cache.metadata.get_run("r1")
    assert [s["name"] for s in record["steps"]] == ["load", "parity", "flag", "total", "report"]
    reads = {(e["step"], e["name"]) for e in record["lineage"] if e["direction"] == "in"}
    assert ("report", "numbers_id") in reads and ("total", "numbers") in reads
    writes = {e["artifact_id"] for e in record["lineage"] if e["direction"] == "out"}
    assert first[0].outputs["numbers"] in writes


def test_declared_outputs_are_enforced(artifacts: ArtifactStore, cache: StepCache) -> None:
    bad = Graph([Step("load", load, outputs={"other": "json"}, params={"n": 1})])
    with pytest.raises(OutputMismatch, match="declares"):
        run(artifacts, cache, bad, "r1")
    assert cache.lookup("anything", step="load") is None


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
                                                            cache: StepCache) -> None:
    first = run(artifacts, cache, graph(), "r1")
    numbers_id = first[0].outputs["numbers"]
    path = Path(artifacts.root) / "objects" / numbers_id[:2] / numbers_id
    blob = bytearray(path.read_bytes())
    blob[-2] ^= 0xFF
    path.write_bytes(bytes(blob))
    results = run(artifacts, cache, graph(), "r2")
    load = next(r for r in results if r.name == "load")
    assert load.status == "ran"
    assert load.explain[0].startswith("cached output numbers failed its integrity check")
    assert statuses(results)["total"] == "cached"  # same content, same id: nothing downstream re-runs
    assert artifacts.get(numbers_id) == b"[0,1,2,3,4,5,6,7,8,9]"


def test_cached_upstream_refuses_to_compute_a_missing_step(artifacts: ArtifactStore, cache: StepCache) -> None:
    from keelml.engine.runner import UpstreamNotCached

    cache.metadata.start_run("u1", pipeline="t", spec_path="x", spec_digest="0")
    runner = Runner(artifacts, cache, BUILTIN, scope="t", run_id="u1")
    CALLS.clear()
    with pytest.raises(UpstreamNotCached) as caught:
        runner.run(graph(), only="report", cached_upstream=True)
    assert (caught.value.step, caught.value.needed_by) == ("load", "report") and CALLS == []
    run(artifacts, cache, graph(), "u2")  # every step cached now
    cache.metadata.start_run("u3", pipeline="t", spec_path="x", spec_digest="0")
    runner = Runner(artifacts, cache, BUILTIN, scope="t", run_id="u3")
    CALLS.clear()
    with pytest.raises(UpstreamNotCached) as caught:  # total's parameters changed: no cached result for it
        runner.run(graph(scale=3), only="report", cached_upstream=True)
    assert caught.value.step == "total" and "no cached result" in str(caught.value) and CALLS == []
    assert statuses(runner.run(graph(scale=3), only="total", cached_upstream=True)) == {"load": "cached",
                                                                                         "total": "ran"}
    assert CALLS == ["total"]  # the named step itself runs; only the steps before it must be cached


def _edit_cache(cache: StepCache, step: str, **values: str) -> str:
    """Change one step's cache row in the database as someone without the key would; returns its key."""
    from sqlalchemy import select, update

    from keelml.store import tables

    sc = tables.step_cache
    with cache.metadata.engine.begin() as conn:
        key = str(conn.execute(select(sc.c.cache_key).where(sc.c.step == step)).scalar_one())
        conn.execute(update(sc).where(sc.c.cache_key == key).values(**values))
    return key


def test_an_edited_cache_entry_is_refused_and_the_step_recomputed(artifacts: ArtifactStore,
                                                                  cache: StepCache) -> None:
    first = {r.name: r for r in run(artifacts, cache, graph(), "r1")}
    # point parity's cached output at another intact, project-signed artifact (load's numbers)
    _edit_cache(cache, "parity", outputs=json.dumps({"even": first["load"].outputs["numbers"]}))
    results = {r.name: r for r in run(artifacts, cache, graph(), "r2")}
    assert results["parity"].status == "ran" and CALLS == ["parity"]
    assert results["parity"].refused is not None and "does not match its signature" in results["parity"].refused
    assert results["parity"].outputs == first["parity"].outputs  # recomputed: the real output again
    assert results["parity"].explain[0].endswith("refused it, recomputing the step")
    assert {r.name for r in results.values() if r.status == "ran"} == {"parity"}
    assert cache.verify_all() == (5, [])  # the recomputed entry is signed again
    assert statuses(run(artifacts, cache, graph(), "r3")) == {n: "cached" for n in results}


@pytest.mark.parametrize("change", ["copied row", "unsigned", "other step", "foreign key"])
def test_every_kind_of_forged_cache_entry_is_refused(artifacts: ArtifactStore, cache: StepCache,
                                                     change: str) -> None:
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from sqlalchemy import delete, insert, select

    from keelml.store import tables
    from keelml.store.stepcache import signed_content

    run(artifacts, cache, graph(), "r1")
    sc = tables.step_cache
    with cache.metadata.engine.begin() as conn:
        rows = {r.step: dict(r._mapping) for r in conn.execute(select(sc))}
    target = rows["total"]
    if change == "copied row":  # load's whole signed row, under total's key
        forged = {**rows["load"], "cache_key": target["cache_key"], "step": "total"}
    elif change == "unsigned":
        forged = {**target, "sig": None, "signed_by": None}
    elif change == "other step":  # relabelled, so that the row names another step than the one asking
        forged = {**target, "step": "parity"}
    else:  # a well-formed entry, signed by a key this project does not hold
        outputs = {"sum": json.loads(rows["load"]["outputs"])["numbers"]}
        content = signed_content(key=target["cache_key"], scope=target["scope"], step="total", outputs=outputs)
        forged = {**target, "outputs": json.dumps(outputs), "signed_by": "ed25519:0000000000000000",
                  "sig": base64.b64encode(Ed25519PrivateKey.generate().sign(content)).decode()}
    with cache.metadata.engine.begin() as conn:
        conn.execute(delete(sc).where(sc.c.cache_key == target["cache_key"]))
        conn.execute(insert(sc).values(**forged))
    checked, problems = cache.verify_all()
    assert checked == 5 and len(problems) == 1 and "entry" in problems[0], problems
    results = {r.name: r for r in run(artifacts, cache, graph(), "r2")}
    assert results["total"].status == "ran" and results["total"].refused is not None, change
    assert CALLS == ["total"]
