"""Reading a large CSV: keelml's reader against polars reading and cleaning the same file without it.

The baseline is `polars.read_csv` (every column as text) followed by the cleaning keelml also does
(strip cells, null values, drop blank rows), so the ratio is the cost of keelml's malformed-record
scan and encoding check. Target: time within 1.5x, peak memory within 1.5x. Each reader runs in a
fresh process. ROWS sets the size (default 1.6 million rows, about 98 MiB).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROWS = int(os.environ.get("ROWS", "1600000"))
ROW = "1,some text here,3.25,category_a,more words,42,x,y,z,2020-01-01\n"

MEASURE = """
import resource, sys, time
mode, path = sys.argv[1], sys.argv[2]
import polars as pl
from keelml.data.sources import read_source_with_rejects
from keelml.spec.data import SourceSpec
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
if mode == "polars":
    cells = pl.col(pl.String)
    nulls = ["", "NA", "N/A", "NaN", "null", "NULL"]
    frame = (pl.scan_csv(path, infer_schema=False).with_columns(cells.str.strip_chars())
             .with_columns(pl.when(cells.is_in(nulls)).then(None).otherwise(cells).name.keep())
             .filter(~pl.all_horizontal(cells.is_null() | (cells == ""))).collect())
else:
    frame, _ = read_source_with_rejects(SourceSpec(path="data.csv"), path)
seconds = time.perf_counter() - started
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(f"{frame.height} {seconds:.3f} {grown:.0f}")
"""


def measure(mode: str, path: Path) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", MEASURE, mode, str(path)], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[1]), float(out[2])


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        with path.open("w") as handle:
            handle.write("a,b,c,d,e,f,g,h,i,j\n")
            for start in range(0, ROWS, 100_000):
                handle.write(ROW * min(100_000, ROWS - start))
        size = path.stat().st_size / 2**20
        base_s, base_mb = measure("polars", path)
        keel_s, keel_mb = measure("keelml", path)
    print(f"file: {ROWS} rows, {size:.0f} MiB")
    print(f"polars + cleaning: {base_s:.2f} s, peak +{base_mb:.0f} MiB")
    print(f"keelml reader:     {keel_s:.2f} s, peak +{keel_mb:.0f} MiB")
    print(f"ratio: time {keel_s / base_s:.2f}x (target <= 1.5), memory {keel_mb / base_mb:.2f}x (target <= 1.5)")
    return 0 if keel_s <= 1.5 * base_s and keel_mb <= 1.5 * base_mb else 1


if __name__ == "__main__":
    raise SystemExit(main())
