"""`keel --help` must answer in under 0.5 s. Baseline: a bare `python -c pass` and a bare typer app.

Prints the median of several runs for each and the overhead ratio.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 7


def median_seconds(args: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(args, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    python = median_seconds([sys.executable, "-c", "pass"])
    bare_typer = median_seconds([sys.executable, "-c",
                                 "import typer; app = typer.Typer(); app.command()(lambda: None); "
                                 "import sys; sys.argv = ['x', '--help']; app()"])
    keel = median_seconds([sys.executable, "-m", "keelml", "--help"])
    print(f"python -c pass:        {python * 1000:7.1f} ms")
    print(f"bare typer app --help: {bare_typer * 1000:7.1f} ms")
    print(f"keel --help:           {keel * 1000:7.1f} ms  (target < 500 ms)")
    print(f"keel / bare typer:     {keel / bare_typer:.2f}x")
    ok = keel < 0.5
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
