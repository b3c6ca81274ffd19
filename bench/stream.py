"""Larger-than-memory data: peak memory and time of `keel validate` / `keel profile`, whole file vs chunks.

Writes a seeded synthetic CSV (default 200 MB: id, two integer, one float and three text columns; about
one row in a thousand breaks the contract), then runs each command in a fresh process with
`--chunk-rows 0` (the whole file in memory) and with `--chunk-rows N`, and prints each one's peak
resident memory (from wait4's rusage) and wall time, the ratios chunked/whole, and checks that the
two give the same counts. With `--limit-mb M` the chunked commands run again under an address-space
limit (RLIMIT_AS) of M MiB, e.g. smaller than the file itself, with one polars thread and the
allocators' per-thread arenas off (RLIMIT_AS counts reserved, not used, memory).

    .venv/bin/python bench/stream.py [--mb 200] [--chunk-rows 200000] [--limit-mb 0] [--limit-chunk-rows 25000]
                                     [--keep FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

CONTRACT = """
target: label
task: binary
classes: ["yes", "no"]
columns:
  - {name: id, type: integer, role: id}
  - {name: age, type: integer, min: 0, max: 130}
  - {name: visits, type: integer, nullable: true}
  - {name: income, type: float, nullable: true}
  - {name: color, type: category, categories: [red, green, blue]}
  - {name: label, type: category, categories: ["yes", "no"], role: target}
  - {name: note, type: string}
"""
LIMITED_ENV = {"POLARS_MAX_THREADS": "1", "RAYON_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "1",
               "ARROW_DEFAULT_MEMORY_POOL": "system", "_RJEM_MALLOC_CONF": "retain:false,narenas:1",
               "RUST_BACKTRACE": "0"}
BLOCK_ROWS = 100_000


def write_csv(path: Path, megabytes: float, seed: int = 7) -> int:
    """Blocks of seeded rows (ids keep counting) up to about ``megabytes``; returns the row count."""
    rng = np.random.default_rng(seed)
    rows = 0
    with path.open("wb") as handle:
        handle.write(b"id,age,visits,income,color,label,note\n")
        while handle.tell() < megabytes * 1e6:
            n = BLOCK_ROWS
            age = rng.integers(0, 100, n)
            age[rng.random(n) < 0.001] = 150
            visits = pl.Series(rng.integers(0, 50, n)).scatter(np.flatnonzero(rng.random(n) < 0.05), None)
            block = pl.DataFrame({"id": np.arange(rows, rows + n), "age": age, "visits": visits,
                                  "income": np.round(rng.lognormal(10, 1, n), 2),
                                  "color": rng.choice(["red", "green", "blue"], n),
                                  "label": rng.choice(["yes", "no"], n),
                                  "note": rng.choice(["plain", "some longer free text", "x", "n/a here"], n)})
            buffer = io.BytesIO()
            block.write_csv(buffer, include_header=False)
            handle.write(buffer.getvalue())
            rows += n
    return rows


def run(args: list[str], limit_mb: int = 0) -> tuple[float, int, int, str, str]:
    """One keel command in a fresh process: seconds, peak RSS in bytes, exit code, stdout, stderr."""
    keel = str(Path(sys.executable).with_name("keel"))
    env = {**os.environ, **(LIMITED_ENV if limit_mb else {})}

    def restrict() -> None:
        if limit_mb:
            resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))

    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen([keel, *args], stdout=out, stderr=err, env=env, preexec_fn=restrict)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return seconds, usage.ru_maxrss * 1024, child.returncode, out.read().decode(), err.read().decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=200.0, help="size of the synthetic CSV in MB")
    parser.add_argument("--chunk-rows", type=int, default=200_000)
    parser.add_argument("--limit-mb", type=int, default=0, help="also run chunked under this RLIMIT_AS (MiB)")
    parser.add_argument("--limit-chunk-rows", type=int, default=25_000, help="chunk size for the limited runs")
    parser.add_argument("--keep", type=Path, help="write (or reuse) the CSV here instead of a temporary file")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = opts.keep or Path(tmp) / "big.csv"
        if not data.exists():
            started = time.perf_counter()
            rows = write_csv(data, opts.mb)
            print(f"wrote {data.stat().st_size / 1e6:.0f} MB, {rows} rows in {time.perf_counter() - started:.1f}s")
        contract = Path(tmp) / "contract.yaml"
        contract.write_text(CONTRACT)
        size = data.stat().st_size
        print(f"file: {size / 1e6:.0f} MB; chunk: {opts.chunk_rows} lines; cpu cores: {os.cpu_count()}")
        print(f"{'command':<10}{'mode':<10}{'seconds':>9}{'peak RSS MB':>13}{'RSS/file':>10}")
        results: dict[tuple[str, int], dict[str, object]] = {}
        for command in ("validate", "profile"):
            for rows in (0, opts.chunk_rows):
                args = [command, str(data), "--contract", str(contract), "--json", "--chunk-rows", str(rows)]
                seconds, rss, code, out, err = run(args)
                if code:
                    raise SystemExit(f"{command} --chunk-rows {rows} failed ({code}): {err[-1000:]}")
                results[(command, rows)] = json.loads(out)
                mode = "whole" if rows == 0 else "chunked"
                print(f"{command:<10}{mode:<10}{seconds:>9.1f}{rss / 2**20:>13.0f}{rss / size:>10.2f}")
                results[(command, rows)]["_seconds"], results[(command, rows)]["_rss"] = seconds, rss
            whole, chunked = results[(command, 0)], results[(command, opts.chunk_rows)]
            print(f"  {command}: chunked/whole time {float(chunked['_seconds']) / float(whole['_seconds']):.2f}, "  # type: ignore[arg-type]
                  f"peak RSS {int(chunked['_rss']) / int(whole['_rss']):.2f}")  # type: ignore[call-overload]
        same = all(results[("validate", 0)][k] == results[("validate", opts.chunk_rows)][k]
                   for k in ("rows_in", "rows_accepted", "rows_quarantined", "columns"))
        print(f"validate: same counts and violations chunked and whole: {same}; "
              f"{results[('validate', 0)]['rows_in']} rows, {results[('validate', 0)]['rows_quarantined']} quarantined")
        counts = [(c["name"], c["count"], c["nulls"]) for c in results[("profile", 0)]["columns"]]  # type: ignore[attr-defined]
        chunked_counts = [(c["name"], c["count"], c["nulls"])
                          for c in results[("profile", opts.chunk_rows)]["columns"]]  # type: ignore[attr-defined]
        print(f"profile: same counts and nulls chunked and whole: {counts == chunked_counts}")
        if opts.limit_mb:
            print(f"under RLIMIT_AS = {opts.limit_mb} MiB (the file is {size / 2**20:.0f} MiB):")
            for command in ("validate", "profile", "validate-whole"):
                rows = 0 if command.endswith("whole") else opts.limit_chunk_rows
                name = command.split("-")[0]
                args = [name, str(data), "--contract", str(contract), "--json", "--chunk-rows", str(rows)]
                seconds, rss, code, _, err = run(args, opts.limit_mb)
                outcome = "ok" if code == 0 else f"failed ({code}): " + (err.strip().splitlines() or [""])[-1][:120]
                print(f"  {name} --chunk-rows {rows}: {outcome}; {seconds:.1f}s, peak RSS {rss / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
