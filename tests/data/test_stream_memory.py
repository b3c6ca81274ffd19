"""Proof for issue 9 (larger-than-memory data): under a memory limit that reading the whole file
exceeds, `keel validate` and `keel profile` still finish, by reading the file in chunks.

A child process gets an address-space limit (RLIMIT_AS) of its own baseline (measured on a tiny file,
everything imported and run once) plus twice the big file's size. The test first checks that the
whole-file path really runs out of memory under that limit, so it cannot pass trivially, then that
the chunked path succeeds under the same limit and gives the right counts.

RLIMIT_AS counts reserved address space, not used memory, so the child runs with one polars thread,
glibc's and jemalloc's per-thread arenas off and Arrow on the system allocator: that keeps its
reserved space close to the memory it really uses. Takes about half a minute on two busy cores.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")

CONTRACT = """
target: label
task: binary
classes: ["yes", "no"]
columns:
  - {name: id, type: integer, role: id}
  - {name: age, type: integer, min: 0, max: 130}
  - {name: income, type: float, nullable: true}
  - {name: color, type: category, categories: [red, green, blue]}
  - {name: label, type: category, categories: ["yes", "no"], role: target}
  - {name: note, type: string}
"""
BLOCK_ROWS = 20_000
BAD_EVERY = 997  # one age in this many is out of range: those rows are quarantined
FILE_BYTES = 32_000_000
CHUNK_ROWS = "25000"
CHILD = """
import atexit, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmPeak"):
            sys.stderr.write(f"VMPEAK {int(line.split()[1]) * 1024}\\n")
atexit.register(peak)
from keelml.cli.main import main
code = 0
for args in " ".join(sys.argv[1:]).split(" ;; "):
    try:
        main(args.split(" "))
    except SystemExit as exc:
        code = int(exc.code or 0)
    if code:
        break
sys.exit(code)
"""
ENV = {
    "POLARS_MAX_THREADS": "1",
    "RAYON_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "1",
    "ARROW_DEFAULT_MEMORY_POOL": "system",
    "_RJEM_MALLOC_CONF": "retain:false,narenas:1,background_thread:false",
    "NO_COLOR": "1",
}


def _write_csv(path: Path, target_bytes: int) -> int:
    """A block of rows repeated up to ``target_bytes``; returns the number of rows."""
    rng = np.random.default_rng(0)
    age = rng.integers(0, 100, BLOCK_ROWS)
    age[::BAD_EVERY] = 200
    block = pl.DataFrame({"id": np.arange(BLOCK_ROWS), "age": age,
                          "income": np.round(rng.normal(5e4, 2e4, BLOCK_ROWS), 2),
                          "color": rng.choice(["red", "green", "blue"], BLOCK_ROWS),
                          "label": rng.choice(["yes", "no"], BLOCK_ROWS),
                          "note": rng.choice(["plain", "some text here", "x"], BLOCK_ROWS)})
    buffer = io.BytesIO()
    block.write_csv(buffer, include_header=False)
    text = buffer.getvalue()
    repeats = max(1, target_bytes // len(text))
    with path.open("wb") as handle:
        handle.write(b"id,age,income,color,label,note\n")
        for _ in range(repeats):
            handle.write(text)
    return repeats * BLOCK_ROWS


def _run(commands: list[list[str]], limit: int | None) -> tuple[int, str, str, int]:
    """Run keel commands in one limited child; exit code, stdout, stderr and peak address space."""
    def restrict() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    args = " ;; ".join(" ".join(c) for c in commands).split(" ")
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **ENV}, preexec_fn=restrict, check=False)
    peaks = [int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("VMPEAK")]
    return done.returncode, done.stdout, done.stderr, peaks[-1] if peaks else 0


def _out_of_memory(code: int, err: str) -> bool:
    return code != 0 and ("MemoryError" in err or "memory allocation" in err or "out of memory" in err.lower())


def test_validate_and_profile_a_file_larger_than_the_memory_limit_allows(tmp_path: Path) -> None:
    contract = tmp_path / "contract.yaml"
    contract.write_text(CONTRACT)
    big = tmp_path / "big.csv"
    rows = _write_csv(big, FILE_BYTES)
    tiny = tmp_path / "tiny.csv"
    tiny.write_bytes(b"".join(big.open("rb").readlines()[:2000]))
    validate = ["validate", "{data}", "--contract", str(contract), "--json"]
    profile = ["profile", "{data}", "--contract", str(contract), "--json"]

    def cmd(template: list[str], data: Path, *extra: str) -> list[str]:
        return [str(data) if part == "{data}" else part for part in template] + list(extra)

    code, _, err, baseline = _run([cmd(validate, tiny, "--chunk-rows", CHUNK_ROWS),
                                   cmd(profile, tiny, "--chunk-rows", CHUNK_ROWS)], None)
    assert code == 0 and baseline > 0, err
    limit = baseline + 2 * big.stat().st_size

    # the whole-file path needs more than the limit: without chunks, both commands run out of memory
    for template in (validate, profile):
        code, _, err, _ = _run([cmd(template, big, "--chunk-rows", "0")], limit)
        assert _out_of_memory(code, err), (template[0], code, err[-500:])

    # the chunked path fits under the same limit, and counts every row
    code, out, err, peak = _run([cmd(validate, big, "--chunk-rows", CHUNK_ROWS),
                                 cmd(profile, big, "--chunk-rows", CHUNK_ROWS)], limit)
    assert code == 0, err[-2000:]
    assert peak <= limit
    decoder = json.JSONDecoder()
    report, end = decoder.raw_decode(out)
    profiled, _ = decoder.raw_decode(out[end:].lstrip())
    bad = rows // BLOCK_ROWS * len(range(0, BLOCK_ROWS, BAD_EVERY))
    assert report["rows_in"] == rows and report["rows_quarantined"] == bad
    assert report["columns"]["age"]["violations"]["range"] == bad
    assert profiled["rows"] == rows
    ages = next(c for c in profiled["columns"] if c["name"] == "age")
    assert ages["max"] == 200 and ages["count"] == rows
