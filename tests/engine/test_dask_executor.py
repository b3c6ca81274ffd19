"""The Dask executor on a real 2-worker LocalCluster: tasks run on the workers, results equal a local run's.

One cluster per module. A small Adult pipeline (CV folds, a 3-trial tuning, learning curve, privacy and
robustness audits) runs locally and on the cluster; every figure must match, and the local run's cache
serves the cluster run. Batch scoring of a registered model gives the same file on both.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from tests.helpers import keel_here, small_adult_project

pytest.importorskip("distributed")

from distributed import Client, LocalCluster, get_task_stream

from keelml.engine.cache import cache_key, key_parts
from keelml.engine.executors import Backend, InProcess, ProcessPool, run_all
from keelml.errors import SpecError
from keelml.pipeline import RunOutcome, run
from keelml.pipeline.graph import standard_graph
from keelml.pipeline.inputs import resolve_inputs
from keelml.registry.project import open_project
from keelml.spec.pipeline import load_spec

TUNE = """
tune:
  trials: 3
  cv_folds: 3
  space:
    C: {low: 0.001, high: 10.0, log: true}
security:
  sample_rows: 300
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, Client]]:
    """A 2-process LocalCluster, its dask:// URL and a client of our own to watch it."""
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as local, Client(local, set_as_default=False) as client:
        address = local.scheduler_address.removeprefix("tcp://")
        yield f"dask://{address}", client


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunOutcome]:
    """The small pipeline run locally (in this process) once for the module."""
    spec = _project(tmp_path_factory.mktemp("local"))
    return spec, run(spec)


def _project(directory: Path) -> Path:
    spec = small_adult_project(directory, train_rows=800, test_rows=300, cv_folds=3, bootstrap_rounds=20,
                               extra=TUNE)
    text = re.sub(r"  learning_curve:\n    sizes: .*\n", "", spec.read_text())
    text = re.sub(r"\ntests:\n(?:  .*\n|\n)*", "\n", text)  # the golden cases need more training rows
    text = text.replace("family: hist_gradient_boosting",
                        "family: logistic_regression\n  learning_curve: {sizes: [0.5, 1.0]}")
    spec.write_text(text)
    return spec


def _outputs(outcome: RunOutcome, spec: Path) -> dict[str, dict[str, object]]:
    project = open_project(load_spec(spec))
    try:
        return {s.name: {name: project.artifacts.get(artifact) for name, artifact in s.outputs.items()}
                for s in outcome.steps}
    finally:
        project.close()


def _figures(outputs: dict[str, dict[str, object]]) -> dict[str, object]:
    """What a run computed, without the timings."""
    def plain(raw: object) -> object:
        return _untimed(json.loads(raw))  # type: ignore[arg-type]

    return {"tuning": plain(outputs["tune"]["tuning"]), "cv": plain(outputs["train"]["cv"]),
            "metrics": plain(outputs["evaluate"]["metrics"]), "privacy": plain(outputs["privacy"]["report"]),
            "robustness": plain(outputs["robustness"]["report"])}


def _untimed(value: object) -> object:
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items()
                if not (k.endswith(("seconds", "_s")) or k.startswith("cv_fit_seconds"))}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def test_executor_maps_in_order_on_the_worker_processes(cluster: tuple[str, Client]) -> None:
    url, client = cluster
    worker_pids = set(client.run(os.getpid).values())
    with Backend(url) as backend:
        executor = backend.executor(n_jobs=1)
        assert executor.kind == "dask" and executor.workers == 2
        pids = run_all(executor, os.getpid, [()] * 8)
        assert run_all(executor, divmod, [(n, 7) for n in range(20)]) == [divmod(n, 7) for n in range(20)]
        assert run_all(executor, pow, [(2,), (3,)], shared=10) == [100, 1000]  # pow(shared, item)
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    assert set(pids) <= worker_pids


def test_local_executors_map_in_order() -> None:
    assert Backend().executor(n_jobs=1).workers == 1 and isinstance(Backend().executor(1), InProcess)
    pool = Backend("local").executor(n_jobs=2)
    assert isinstance(pool, ProcessPool)
    assert run_all(pool, pow, [(2,), (3,), (4,)], shared=3) == [9, 27, 81]


def test_a_bad_executor_url_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="unknown executor 'spark://x:1'"):
        Backend("spark://x:1")
    spec = tmp_path / "p.yaml"
    spec.write_text("name: p\nexecutor: dask://nohost\ndata: {train: {path: x.csv}, target: y}\n")
    result = keel_here("run", str(spec))
    assert result.returncode == 2 and "executor" in result.stderr
    with pytest.raises(SpecError, match=r"cannot reach the Dask scheduler at dask://127\.0\.0\.1:9"):
        Backend("dask://127.0.0.1:9", timeout_s=1).client()


def test_cache_keys_do_not_depend_on_the_executor(tmp_path: Path) -> None:
    """The executor is a run-time service: the graph (and so every key) is the same for local and Dask."""
    spec = _project(tmp_path)
    loaded = load_spec(spec)
    inputs = resolve_inputs(loaded)
    local = standard_graph(loaded, inputs)
    dask_spec = dataclasses.replace(loaded, spec=loaded.spec.model_copy(update={"executor": "dask://127.0.0.1:8786"}))
    dask = standard_graph(dask_spec, inputs)
    assert list(local.steps) == list(dask.steps) and "tune" in local.steps
    digests = {ref: f"{ref}-digest" for step in local.steps.values() for ref in step.dependencies()}
    for name, step in local.steps.items():
        other = dask.steps[name]
        mine = key_parts(step, {a: digests[r] for a, r in {**step.inputs, **step.refs}.items()})
        theirs = key_parts(other, {a: digests[r] for a, r in {**other.inputs, **other.refs}.items()})
        assert cache_key(mine) == cache_key(theirs), name
    fans_out = {name for name, step in local.steps.items() if "backend" in step.services}
    assert {"tune", "train", "privacy", "robustness"} <= fans_out


def test_pipeline_on_dask_matches_the_local_run(tmp_path: Path, cluster: tuple[str, Client],
                                                local_run: tuple[Path, RunOutcome]) -> None:
    url, client = cluster
    local_spec, local = local_run
    remote_spec = _project(tmp_path / "remote")
    with get_task_stream(client) as stream:
        remote = run(remote_spec, executor=url)
    assert {s.status for s in remote.steps} == {"ran"}
    assert f"folds, trials and audits ran on the Dask cluster at {url}" in remote.notes
    tasks = [(record["key"], record["worker"]) for record in stream.data]
    kinds = {re.sub(r"-[0-9a-f]{32}$", "", key) for key, _ in tasks}
    assert {"keel-cv_fold", "keel-score_fold", "keel-learning_point", "keel-privacy_part",
            "keel-predict_rows"} <= kinds
    assert len({worker for _, worker in tasks}) == 2  # both worker processes did work
    assert _figures(_outputs(remote, remote_spec)) == _figures(_outputs(local, local_spec))
    assert remote.metrics == local.metrics

    # The local store's cache serves a run on the cluster: nothing re-runs, nothing reaches the workers.
    with get_task_stream(client) as stream:
        result = keel_here("run", str(local_spec), "--executor", url)
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout and stream.data == []


def test_batch_scoring_on_dask_writes_the_local_file(tmp_path: Path, cluster: tuple[str, Client],
                                                     local_run: tuple[Path, RunOutcome]) -> None:
    from keelml.serve.batch import portable_model, score_file
    from keelml.serve.engine import load_registered

    url, client = cluster
    spec, outcome = local_run
    assert outcome.registration is not None
    columns = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
               "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
               "income"]
    frame = pl.read_csv(spec.parent / "adult.data", has_header=False, new_columns=columns, n_rows=800,
                        null_values=["?"]).with_columns(pl.col(pl.String).str.strip_chars())
    frame = frame.with_columns(  # one row breaks the contract
        pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("Astronaut")).otherwise(pl.col("workclass"))
        .alias("workclass"))
    source = tmp_path / "in.parquet"
    frame.write_parquet(source)  # Parquet streams in exact chunks of chunk_rows rows: 5 partitions
    project = open_project(load_spec(spec))
    try:
        model = load_registered(project, outcome.registration.name, outcome.registration.version)
        shared = portable_model(model, project.artifacts.get)
    finally:
        project.close()
    here = score_file(model, source, tmp_path / "here.parquet", chunk_rows=160)
    with Backend(url) as backend, get_task_stream(client) as stream:
        there = score_file(model, source, tmp_path / "there.parquet", chunk_rows=160,
                           executor=backend.executor(), shared=shared)
    assert (there.rows_in, there.rows_scored, there.rows_rejected) == (here.rows_in, here.rows_scored,
                                                                       here.rows_rejected)
    assert here.rows_in == frame.height == 800 and here.rows_rejected >= 1
    assert pl.read_parquet(tmp_path / "there.parquet").equals(pl.read_parquet(tmp_path / "here.parquet"))
    assert pl.read_parquet(tmp_path / "there.rejects.parquet").equals(
        pl.read_parquet(tmp_path / "here.rejects.parquet"))
    chunks = [r for r in stream.data if r["key"].startswith("keel-score_chunk-")]
    assert len(chunks) == 5 and len({r["worker"] for r in chunks}) == 2


def test_a_scheduler_without_workers_is_a_spec_error_not_a_traceback() -> None:
    with LocalCluster(n_workers=0, processes=True, dashboard_address=None) as empty:
        port = empty.scheduler_address.rsplit(":", 1)[1]
        with Backend(f"dask://127.0.0.1:{port}") as backend, pytest.raises(SpecError) as caught, \
                backend.executor().session((1, 2)):
            pass
    assert "has no workers" in caught.value.what and "dask worker" in str(caught.value.fix)
