"""Row validation speed: keelml's validate_frame against pandera (polars backend), same data, same checks.

1,000,000 rows x 20 columns (12 float with ~2% nulls, 4 integer, 4 categorical strings with 8 categories),
seeded. Both check the same 56 rules: the type of each of the 20 columns, min and max of the 16 numeric
columns, the domain of the 4 categorical ones and the nullability of all 20 (pandera with lazy=True, so it
collects every failure instead of stopping at the first). A few rows break the rules on purpose; both must
find exactly the same failing rows. Each is timed best of 3 after a warm-up, in this one process, and the
ratio keelml/pandera is printed (target <= 1.0, goal <= 0.5).

    .venv/bin/python bench/validate.py [--rows N] [--breakdown]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from keelml.data.contract import Contract
from keelml.data.validate import validate_frame

FLOATS, INTS, CATS = 12, 4, 4
CATEGORIES = [f"cat_{k}" for k in range(8)]
LOW, HIGH = -1000.0, 1000.0
INT_LOW, INT_HIGH = 0, 10_000


def make_data(rows: int, seed: int = 42) -> tuple[pl.DataFrame, set[int]]:
    """The table and the set of row numbers that break a rule."""
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({f"f{i}": rng.normal(0, 100, rows) for i in range(FLOATS)})
    missing = pl.DataFrame({f"m{i}": rng.random(rows) < 0.02 for i in range(FLOATS)})
    frame = frame.with_columns(
        pl.when(missing[f"m{i}"]).then(None).otherwise(pl.col(f"f{i}")).alias(f"f{i}") for i in range(FLOATS))
    ints = pl.DataFrame({f"i{i}": rng.integers(INT_LOW, INT_HIGH, rows) for i in range(INTS)})
    cats = pl.DataFrame({f"c{i}": np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), rows)]
                         for i in range(CATS)})
    frame = pl.concat([frame, ints, cats], how="horizontal")
    bad = rng.choice(rows, size=60, replace=False)
    updates: dict[str, dict[int, Any]] = {}
    for k, row in enumerate(bad.tolist()):
        kind = k % 5
        if kind == 0:
            updates.setdefault(f"f{k % FLOATS}", {})[row] = HIGH * 5  # above max
        elif kind == 1:
            updates.setdefault(f"i{k % INTS}", {})[row] = INT_LOW - 7  # below min
        elif kind == 2:
            updates.setdefault(f"c{k % CATS}", {})[row] = "cat_unknown"  # outside the domain
        elif kind == 3:
            updates.setdefault(f"i{k % INTS}", {})[row] = None  # null in a non-nullable column
        else:
            updates.setdefault(f"c{k % CATS}", {})[row] = None
    for name, changes in updates.items():
        column = frame[name].clone()
        column.scatter(list(changes), pl.Series(list(changes.values()), dtype=column.dtype))
        frame = frame.with_columns(column)
    return frame, set(bad.tolist())


def keel_contract() -> Contract:
    columns: list[dict[str, Any]] = [
        {"name": f"f{i}", "type": "float", "nullable": True, "min": LOW, "max": HIGH} for i in range(FLOATS)]
    columns += [{"name": f"i{i}", "type": "integer", "nullable": False, "min": INT_LOW, "max": INT_HIGH}
                for i in range(INTS)]
    columns += [{"name": f"c{i}", "type": "category", "nullable": False, "categories": CATEGORIES}
                for i in range(CATS - 1)]
    columns.append({"name": f"c{CATS - 1}", "type": "category", "role": "target", "nullable": False,
                    "categories": CATEGORIES})
    return Contract.model_validate({"target": f"c{CATS - 1}", "task": "multiclass", "classes": CATEGORIES,
                                    "columns": columns})


def pandera_schema() -> Any:
    from pandera.polars import Check, Column, DataFrameSchema

    columns = {f"f{i}": Column(pl.Float64, Check.in_range(LOW, HIGH), nullable=True) for i in range(FLOATS)}
    columns |= {f"i{i}": Column(pl.Int64, Check.in_range(INT_LOW, INT_HIGH), nullable=False) for i in range(INTS)}
    columns |= {f"c{i}": Column(pl.String, Check.isin(CATEGORIES), nullable=False) for i in range(CATS)}
    return DataFrameSchema(columns)


def run_keel(frame: pl.DataFrame, contract: Contract) -> set[int]:
    result = validate_frame(frame, contract)
    return set(result.quarantine["_row"].to_list())


def run_pandera(frame: pl.DataFrame, schema: Any) -> set[int]:
    from pandera.errors import SchemaErrors

    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        return set(exc.failure_cases["index"].drop_nulls().to_list())
    return set()


def best_of(fn: Callable[[], set[int]], repeat: int = 3) -> tuple[float, set[int]]:
    fn()  # warm-up
    times, found = [], set()
    for _ in range(repeat):
        started = time.perf_counter()
        found = fn()
        times.append(time.perf_counter() - started)
    return min(times), found


def _best(fn: Callable[[], object], repeat: int = 2) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def breakdown(frame: pl.DataFrame, contract: Contract) -> None:
    """Where validate_frame's time goes, stage by stage, rebuilt from its own expressions (polars runs
    each select as one native call, so cProfile cannot see inside). Then a sketch of a cheaper shape:
    cast once, one violation flag per column, reason texts only for the failing rows."""
    from keelml.data import validate as v

    column_checks = getattr(v, "_column_checks", None)
    if column_checks is None:
        print("breakdown unavailable: keelml.data.validate._column_checks is gone")
        return
    checked = [c for c in contract.columns if c.role != "ignore"]
    parts = [column_checks(c, frame.schema[c.name]) for c in checked]
    typed = [p[0].alias(f"t{i}") for i, p in enumerate(parts)]
    flags = [f.alias(f"{k}{i}") for i, p in enumerate(parts) for k, f in zip(v.KINDS, p[1], strict=True)]
    messages = [pl.when(p[1][j]).then(p[2][j]) for p in parts for j in range(len(v.KINDS))]
    numeric = [i for i, c in enumerate(checked) if c.type in ("integer", "float")]
    lazy = frame.lazy()
    stages = {
        "validate_frame, total": lambda: validate_frame(frame, contract),
        "typed values only (20 casts)": lambda: lazy.select(typed).collect(),
        "typed values + 80 violation flags": lambda: lazy.select(typed + flags).collect(),
        "80 reason texts, built for every row": lambda: lazy.select(
            pl.concat_str(messages, separator="; ", ignore_nulls=True)).collect(),
        "  of which: value shown as text (20 casts to String)": lambda: lazy.select(
            pl.col(c.name).cast(pl.String) for c in checked).collect(),
        "the 16 range messages alone": lambda: lazy.select(parts[i][2][3].alias(f"r{i}") for i in numeric).collect(),
    }

    def sketch() -> object:
        base = frame.with_columns(typed)
        per_column = []
        for i, c in enumerate(checked):
            value, raw = pl.col(f"t{i}"), pl.col(c.name)
            flag = raw.is_not_null() & value.is_null()
            if not c.nullable or c.role == "target":
                flag = flag | raw.is_null()
            if c.categories is not None:
                flag = flag | (value.is_not_null() & ~value.cast(pl.String).is_in(c.categories))
            if c.min is not None:
                flag = flag | (value < c.min).fill_null(False)
            if c.max is not None:
                flag = flag | (value > c.max).fill_null(False)
            per_column.append(flag)
        bad = base.select(pl.any_horizontal(per_column).alias("bad"))["bad"]
        reasons = base.filter(bad).select(pl.concat_str(messages, separator="; ", ignore_nulls=True))
        return reasons, base.filter(~bad).select(pl.col(f"t{i}") for i in range(len(checked)))

    stages["sketch: cast once, 1 flag/column, reasons for failing rows only"] = sketch
    print("keelml validate_frame breakdown (best of 2):")
    for name, fn in stages.items():
        print(f"  {name:<68} {_best(fn):7.3f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--breakdown", action="store_true", help="time the stages of validate_frame")
    args = parser.parse_args()
    frame, injected = make_data(args.rows)
    contract, schema = keel_contract(), pandera_schema()
    keel_s, keel_rows = best_of(lambda: run_keel(frame, contract))
    pandera_s, pandera_rows = best_of(lambda: run_pandera(frame, schema))
    import pandera

    print(f"data: {frame.height:,} rows x {frame.width} columns, {len(injected)} rows with injected violations")
    print(f"keelml validate_frame: {keel_s:7.3f} s  failing rows: {len(keel_rows)}")
    print(f"pandera {pandera.__version__} (polars): {pandera_s:7.3f} s  failing rows: {len(pandera_rows)}")
    ratio = keel_s / pandera_s
    print(f"ratio keelml/pandera: {ratio:.3f}  (target <= 1.0, goal <= 0.5)")
    same = keel_rows == pandera_rows == injected
    print("same failing rows in both: " + ("yes" if same else "NO"))
    if args.breakdown:
        breakdown(frame, contract)
    ok = same and ratio <= 1.0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
