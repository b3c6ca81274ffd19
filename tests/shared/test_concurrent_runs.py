"""Two `keel run` processes at once against one PostgreSQL metadata database and one store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import keel_here
from tests.shared.conftest import small_project


def _start(spec: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "keelml", "run", str(spec)], cwd=spec.parent, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_runs_at_once_on_postgres_share_one_store(tmp_path: Path, pg_schema: str) -> None:
    store = f"  path: .keel\n  metadata_url: {pg_schema}\n"
    # Same pipeline name, same data, same brand-new store; different seeds, so different models.
    specs = [small_project(tmp_path, store=store, seed=seed, spec_name=f"seed{seed}.yaml") for seed in (1, 2)]
    procs = [_start(spec) for spec in specs]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stdout + stderr
        assert "registered new version shared v" in stdout

    verified = keel_here("verify", str(specs[0]), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] and report["bundles_checked"] == 2 and report["problems"] == []

    shown = keel_here("models", "show", "shared", "--json", "-f", str(specs[0]))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    versions = json.loads(shown.stdout)
    assert sorted(v["version"] for v in versions) == [1, 2]  # distinct and consecutive
    assert len({v["bundle_id"] for v in versions}) == 2
    run_ids = {line.split()[-1] for stdout, _ in outputs for line in stdout.splitlines() if line.startswith("run: ")}
    assert {v["run_id"] for v in versions} == run_ids and len(run_ids) == 2
    audit = keel_here("audit", "--verify", "--json", "-f", str(specs[0]))
    assert audit.returncode == 0, audit.stdout + audit.stderr
    records = json.loads(audit.stdout)["records"]
    assert sorted(r["details"]["version"] for r in records if r["event"] == "registration") == [1, 2]
    assert not (tmp_path / ".keel" / "keel.db").exists()  # metadata went to PostgreSQL only
