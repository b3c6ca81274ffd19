"""Tuning on a Dask cluster against tuning in one process: the same trials, the same result, the wall time.

The Adult example's tuning (examples/adult/pipeline.yaml: its data, model, search space, trials and
3-fold objective; without its timeout, which would make the trial count depend on the machine's
speed) runs twice, each in a fresh store, up to the `tune` step:

- local: `executor: local`, one process (model.n_jobs = tune.n_jobs = 1, one thread);
- dask: `--executor dask://...` on a `distributed.LocalCluster` with 2 worker processes of one
  thread each (started here). The trials are asked in the same batches of one (tune.n_jobs = 1), so
  the study is the same; each trial's 3 folds run on the workers at once, then replay to the pruner.

It prints both best parameters and scores, asserts that they and every trial's fold scores are
identical, and prints the wall-time ratio of the tune step (local / dask: above 1 means the cluster
was faster). With 2 workers and 3 folds per trial the ideal is 1.5x (the third fold waits), less the
folds of pruned trials that the cluster computes anyway and task overhead; a machine whose 2 cores
are shared with other work shows less. KEEL_BENCH_TRIALS overrides the number of trials (16).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADULT = ROOT / "examples" / "adult"
TRIALS = int(os.environ.get("KEEL_BENCH_TRIALS", "16"))


def project(directory: Path) -> Path:
    """The Adult example in `directory`, one process and one thread, tuning without a timeout."""
    directory.mkdir(parents=True)
    for name in ("adult.data", "adult.test"):
        shutil.copy(ADULT / name, directory / name)
    text = (ADULT / "pipeline.yaml").read_text()
    text = re.sub(r"\n  n_jobs: 2 .*\n", "\n", text, count=1)  # model.n_jobs: 1
    text = re.sub(r"  timeout_s: .*\n", "", text)
    text = re.sub(r"  trials: \d+", f"  trials: {TRIALS}", text)
    text = text.replace("  n_jobs: 2\n", "  n_jobs: 1\n")  # tune.n_jobs: 1
    path = directory / "pipeline.yaml"
    path.write_text(text)
    return path


def tune(spec: Path, executor: str) -> tuple[dict[str, Any], float]:
    """Run up to the tune step; its summary and the step's wall time."""
    from keelml.pipeline import run
    from keelml.registry.project import open_project
    from keelml.spec.pipeline import load_spec

    outcome = run(spec, only="tune", executor=executor)
    step = next(s for s in outcome.steps if s.name == "tune")
    assert step.status == "ran", step.status
    project = open_project(load_spec(spec))
    try:
        summary = json.loads(project.artifacts.get(step.outputs["tuning"]))
    finally:
        project.close()
    return summary, step.duration_s


def outcome_of(summary: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on the executor: the best trial and every trial's state and fold scores."""
    return {"best_params": summary["best_params"], "best_value": summary["best_value"],
            "best_trial": summary["best_trial"], "trials": summary["trials"],
            "history": [(h["number"], h["state"], h["params"], h["fold_scores"]) for h in summary["history"]]}


def main() -> int:
    from distributed import Client, LocalCluster

    root = Path(tempfile.mkdtemp(prefix="keel-scale-"))
    try:
        cpu = time.process_time()
        local, local_s = tune(project(root / "local"), "local")
        local_cpu = time.process_time() - cpu
        with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster, set_as_default=False) as client:
            url = "dask://" + cluster.scheduler_address.removeprefix("tcp://")
            workers_cpu = sum(client.run(time.process_time).values())
            cpu, started = time.process_time(), time.perf_counter()
            remote, remote_s = tune(project(root / "dask"), url)
            wall = time.perf_counter() - started
            remote_cpu = time.process_time() - cpu
            workers_cpu = sum(client.run(time.process_time).values()) - workers_cpu
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"Adult tuning: {TRIALS} trials, {local['folds']['folds']}-fold objective, "
          f"{local['trials']} (complete/pruned/failed)")
    for name, summary, seconds in (("local (1 process)", local, local_s), ("dask (2 workers)", remote, remote_s)):
        print(f"  {name:18s} best {summary['metric']} {summary['best_value']:.6f} (trial {summary['best_trial']}) "
              f"params {json.dumps(summary['tuned_params'], sort_keys=True)}  tune step {seconds:.1f}s")
    print(f"  dask run including its first connection: {wall:.1f}s")
    print(f"  CPU: local run {local_cpu:.1f}s; dask run {remote_cpu:.1f}s in this process + {workers_cpu:.1f}s on "
          "the workers (folds of pruned trials that the cluster scores anyway, and transport)")
    load = os.getloadavg()[0]
    print(f"  load average now {load:.1f} on {os.cpu_count()} cores (other work on the machine slows both sides)")
    same = outcome_of(local) == outcome_of(remote)
    print(f"  identical best parameters, scores and trial history: {same}")
    print(f"  wall-time ratio local / dask: {local_s / remote_s:.2f}x (ideal with 2 workers and 3 folds: 1.5x)")
    assert same, "the Dask run's tuning differs from the local run's"
    return 0


if __name__ == "__main__":
    sys.exit(main())
