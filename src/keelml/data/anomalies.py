"""Structured anomalies from a validation pass: what is wrong, where, how often, expected vs observed.

Row-level anomalies quarantine rows; dataset-level ones (a column's null share over its limit, too
many rows quarantined, unexpected columns) are ``fatal`` when the spec's ``validation`` rules say the
run must stop, and ``enforce`` then raises one DataError naming the column, the rule and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from keelml.data.contract import ColumnContract
from keelml.errors import DataError
from keelml.spec.data import ValidationSpec

EXAMPLES = 3
_TYPE_WORDS = {"integer": "an integer", "float": "a finite number", "boolean": "true or false",
               "category": "text", "string": "text", "datetime": "a date/time"}


def row_anomalies(checked: Sequence[ColumnContract], *, checks: Sequence[tuple[int, str, str]],
                  counts: Mapping[str, Any], examples: Mapping[str, pl.DataFrame], rows: int) -> list[dict[str, Any]]:
    """One anomaly per (column, rule) that failed at least one row, with up to three example values."""
    found: list[dict[str, Any]] = []
    for index, kind, alias in checks:
        count = int(counts.get(alias) or 0)
        if not count:
            continue
        sample = examples.get(alias)
        if index < 0:  # duplicate rows: the check spans columns
            shown: list[str | None] = [] if sample is None else [f"row {r}" for r in sample["__keel_row"].to_list()]
            found.append(_anomaly(None, "duplicate", count, shown, "each row once", f"{count} repeated row(s)",
                                  rows=rows))
            continue
        col = checked[index]
        values = [] if sample is None else [None if v is None else str(v)
                                            for v in sample[col.name].cast(pl.String).to_list()]
        if col.pii is not None:
            values = ["(personal data, not shown)"] * len(values)
        name = "missing_label" if kind == "null" and col.role == "target" else kind
        found.append(_anomaly(col.name, name, count, values, _expected(col, kind), f"{count} row(s)", rows=rows))
    return found


def _expected(col: ColumnContract, kind: str) -> str:
    if kind == "type":
        return _TYPE_WORDS[col.type]
    if kind == "non_finite":
        return "a finite number (not NaN or infinity)"
    if kind == "null":
        return "a label in every row" if col.role == "target" else "a value in every row (not nullable)"
    if kind == "domain":
        cats = col.categories or []
        shown = ", ".join(cats[:8]) + (f", … ({len(cats)} in all)" if len(cats) > 8 else "")
        return f"one of: {shown}"
    low = "…" if col.min is None else f"{col.min:g}"
    high = "…" if col.max is None else f"{col.max:g}"
    return f"a value in [{low}, {high}]"


def _anomaly(column: str | None, kind: str, count: int, examples: list[str | None], expected: str,
             observed: str, *, rows: int, level: str = "row", fatal: bool = False) -> dict[str, Any]:
    return {"column": column, "kind": kind, "level": level, "count": count,
            "fraction": round(count / rows, 6) if rows else 0.0, "examples": examples[:EXAMPLES],
            "expected": expected, "observed": observed, "fatal": fatal}


def dataset_anomalies(checked: Sequence[ColumnContract], columns: Mapping[str, Mapping[str, Any]],
                      options: ValidationSpec, *, rows: int, quarantined: int,
                      extra: Sequence[str]) -> list[dict[str, Any]]:
    """Null shares over the contract's limits, the quarantined share, and unexpected columns."""
    found: list[dict[str, Any]] = []
    for col in checked:
        stats = columns[col.name]
        if stats["exceeded"] and col.nullable and col.role != "target":  # other nulls are quarantined rows
            nulls = round(stats["null_fraction"] * rows)
            found.append(_anomaly(col.name, "null_fraction", nulls, [], f"at most {col.max_null_fraction:.2%} nulls",
                                  f"{stats['null_fraction']:.2%} nulls", rows=rows, level="dataset",
                                  fatal=options.null_fraction == "error"))
    share = quarantined / rows if rows else 0.0
    if share > options.max_quarantine_fraction:
        found.append(_anomaly(None, "quarantine_fraction", quarantined, [],
                              f"at most {options.max_quarantine_fraction:.2%} of rows quarantined",
                              f"{share:.2%} quarantined", rows=rows, level="dataset", fatal=True))
    if extra and options.extra_columns != "ignore":
        found.append(_anomaly(None, "extra_columns", len(extra), list(extra), "only the contract's columns",
                              ", ".join(extra), rows=rows, level="dataset", fatal=options.extra_columns == "error"))
    return found


def enforce(report: Mapping[str, Any], source: str) -> None:
    """Raise one DataError for the first fatal anomaly of ``source``'s validation report."""
    fatal = sorted((a for a in report.get("anomalies", []) if a["fatal"]),
                   key=lambda a: a["kind"] != "quarantine_fraction")  # the overall symptom first
    if not fatal:
        return
    first = fatal[0]
    more = f" (and {len(fatal) - 1} more dataset-level problem(s))" if len(fatal) > 1 else ""
    kind = first["kind"]
    if kind == "null_fraction":
        raise DataError(
            f"{source} data: column {first['column']!r} has {first['observed']}, over the contract's limit{more}",
            expected=first["expected"],
            fix=f"repair the missing values at the source, raise max_null_fraction for {first['column']!r} in the "
            "contract (contract.path), or set validation.null_fraction: warn",
        )
    if kind == "quarantine_fraction":
        worst = sorted((a for a in report["anomalies"] if a["level"] == "row"), key=lambda a: -a["count"])[:3]
        causes = "; ".join(f"{a['column'] or 'rows'}: {a['kind']} x{a['count']}" for a in worst)
        raise DataError(
            f"{source} data: {first['observed']} of {report['rows_in']} rows broke the contract{more}"
            + (f" (most often {causes})" if causes else ""),
            expected=first["expected"],
            fix="inspect the quarantine (`keel validate DATA --contract ... --quarantine q.parquet`), fix the data "
            "or the contract, or raise validation.max_quarantine_fraction",
        )
    raise DataError(
        f"{source} data has columns the contract does not list: {first['observed']}{more}",
        expected=first["expected"],
        fix="add them to the contract (role ignore to skip them), drop them in data.drop_columns, "
        "or set validation.extra_columns: warn",
    )
