"""Cached re-run vs first run of the Adult example: the second run must take <= 10% of the first.

Runs `keel run --json` twice on a fresh copy of examples/adult and prints both wall times and the ratio.
Baseline: the same command's first (cold) run, measured in the same session.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed_run(spec: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "keelml", "run", str(spec), "--json"],
                          capture_output=True, text=True, check=True)
    return time.perf_counter() - started, json.loads(done.stdout)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "adult"
        shutil.copytree(ROOT / "examples" / "adult", work, ignore=shutil.ignore_patterns(".keel"))
        first_s, first = timed_run(work / "pipeline.yaml")
        second_s, second = timed_run(work / "pipeline.yaml")
    statuses = {s["status"] for s in second["steps"]}
    ratio = second_s / first_s
    print(f"first run (cold):   {first_s:7.2f} s  steps ran: {sum(s['status'] == 'ran' for s in first['steps'])}")
    print(f"second run (cached): {second_s:6.2f} s  statuses: {sorted(statuses)}")
    print(f"ratio second/first: {ratio:.3f}  (target <= 0.10)  "
          f"ROC AUC {first['primary_metric']['value']:.4f} (target >= 0.90)")
    ok = ratio <= 0.10 and statuses == {"cached"} and first["primary_metric"]["value"] >= 0.90
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
