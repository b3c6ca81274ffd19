"""SIGKILL `keel run` at several points; every time a re-run completes and `keel verify` passes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.helpers import keel, small_adult_project

from keelml.registry.project import open_project
from keelml.spec.pipeline import load_spec


def _verify(spec: Path) -> list[str]:
    """What `keel verify` checks, in process: artifacts, bundles, and that metadata points at real artifacts."""
    project = open_project(load_spec(spec), create=False)
    try:
        problems = list(project.artifacts.verify_all().problems)
        problems += project.registry.verify_all()[1]
        problems += [a for a in project.referenced_artifacts() if not project.artifacts.exists(a)]
    finally:
        project.close()
    return problems

KILL_POINTS = [
    ("ingest", 0.0),
    ("validate", 0.05),
    ("train", 0.2),
    ("train", 0.8),
    ("evaluate", 0.1),
    ("register", 0.0),
]


def _run_and_kill(spec: Path, step: str, delay: float) -> bool:
    """Start `keel run`, SIGKILL it `delay` s after `step` starts; True if it was killed mid-run."""
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "keelml", "run", str(spec)], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith(f"keel: step {step} started"):
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=300)
    return proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_at_any_step_leaves_a_resumable_verifiable_store(tmp_path: Path) -> None:
    killed = 0
    for step, delay in KILL_POINTS:
        # a fresh store for each kill point, so each kill happens during the named step
        work = tmp_path / f"{step}-{delay}"
        spec_copy = small_adult_project(work, train_rows=2500, test_rows=1000, cv_folds=2)
        killed += _run_and_kill(spec_copy, step, delay)
        if (work / ".keel" / "keys" / "signing.key").exists():
            assert _verify(spec_copy) == []  # whatever was stored before the kill is intact
        rerun = keel("run", str(spec_copy), "--json")
        assert rerun.returncode == 0, f"re-run after kill in {step}: {rerun.stderr}"
        outcome = json.loads(rerun.stdout)
        assert outcome["model"]["version"] == 1
        assert _verify(spec_copy) == []
        project = open_project(load_spec(spec_copy), create=False)
        runs = project.metadata.list_runs()
        project.close()
        assert runs[0]["status"] == "succeeded"
        if len(runs) > 1:
            assert runs[1]["status"] == "interrupted"
    assert killed >= len(KILL_POINTS) - 1, "most kills must land while the run is still going"
