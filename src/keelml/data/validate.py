"""Enforce a data contract: split a frame into typed valid rows and quarantined rows with reasons.

One vectorized pass computes every column's typed value and violation flags; reasons (text) are
built only for the failing rows, so clean data costs little more than the casts and comparisons.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import polars as pl

from keelml.data.anomalies import dataset_anomalies, row_anomalies
from keelml.data.contract import ColumnContract, ColumnType, Contract, close_match_hint
from keelml.data.pii import protect
from keelml.errors import DataError
from keelml.spec.data import ValidationSpec

ROW_COLUMN = "_row"
REASON_COLUMN = "_reason"
KINDS = ("type", "non_finite", "null", "domain", "range")
_ROW = "__keel_row"
_FIRST = "__keel_first"
_DTYPES: dict[ColumnType, pl.DataType] = {
    "integer": pl.Int64(),
    "float": pl.Float64(),
    "boolean": pl.Boolean(),
    "category": pl.String(),
    "string": pl.String(),
    "datetime": pl.Datetime("us"),
}
TYPE_WORDS: dict[ColumnType, str] = {
    "integer": "an integer",
    "float": "a finite number",
    "boolean": "true or false",
    "category": "text",
    "string": "text",
    "datetime": "a date/time",
}
_BOOLEAN_WORDS = {"true": True, "false": False}


@dataclass(frozen=True)
class Tally:
    """What a report is built from; the tallies of consecutive chunks of a file add up (keelml.data.stream)."""

    checked: list[ColumnContract]
    checks: list[tuple[int, str, str]]
    rows: int
    nulls: list[int]
    counts: dict[str, int]
    examples: dict[str, pl.DataFrame]
    quarantined: int
    extra: list[str]
    missing: list[str]


@dataclass(frozen=True)
class ValidationResult:
    """Passing rows (typed), failing rows (original text, ``_row``, ``_reason``) and a report."""

    valid: pl.DataFrame
    quarantine: pl.DataFrame
    report: dict[str, Any]
    tally: Tally | None = None


@dataclass(frozen=True)
class _Check:
    """One violation flag of one column and the message explaining it."""

    column: int
    kind: str
    flag: pl.Expr
    message: pl.Expr
    extra: pl.Expr | None = None

    @property
    def alias(self) -> str:
        return f"__keel_{self.kind}{self.column}"


def validate_frame(df: pl.DataFrame, contract: Contract, *, require_target: bool = True,
                   options: ValidationSpec | None = None, dedupe: bool = False,
                   pii_key: bytes | None = None) -> ValidationResult:
    """Check every row against ``contract``; nothing is dropped silently.

    ``valid`` holds the passing rows: the contract's columns except role ``ignore``, cast to their
    types, in contract order. ``quarantine`` holds the failing rows with all input columns as
    text plus ``_row`` (0-based input row) and ``_reason`` (every violation, joined by "; ").
    With ``dedupe`` the rule ``options.deduplicate`` quarantines repeated rows (training data).
    PII columns are dropped or hashed (with ``pii_key``) in both outputs, as the contract says.
    With ``require_target=False`` (scoring new data) a missing target column is allowed.
    """
    options = options or ValidationSpec()
    for reserved in (ROW_COLUMN, REASON_COLUMN):
        if reserved in df.columns:
            raise DataError(
                f"the data has a column named {reserved!r}, a name keelml reserves for quarantine",
                expected=f"no input column called {ROW_COLUMN} or {REASON_COLUMN}",
                fix=f"rename the column {reserved!r} in the data",
            )
    checked = _checked_columns(df, contract, require_target)
    known = {c.name for c in contract.columns}
    extra = [name for name in df.columns if name not in known]
    missing = [c.name for c in contract.columns if c.name not in df.columns]
    typed: list[pl.Expr] = []
    checks: list[_Check] = []
    fails: list[pl.Expr] = []
    for i, col in enumerate(checked):
        expr, column_checks = _column_checks(i, col, df.schema[col.name])
        typed.append(expr)
        checks.extend(column_checks)
        fails.extend(_fails(col, df.schema[col.name], column_checks))
    dup = _duplicate_check(checked, options) if dedupe and options.deduplicate != "none" else None
    # Pass 1 over all rows: one "row fails" mask (one cheap test per column); nothing typed is built.
    frame = df.lazy()
    if dup is not None:
        frame = frame.with_row_index(_ROW).with_columns(pl.col(_ROW).cast(pl.Int64))
        fails.append(pl.col(dup.alias))
        frame = frame.with_columns(dup.flag.alias(dup.alias), dup.extra)
        checks.append(_Check(dup.column, dup.kind, pl.col(dup.alias), dup.message))
    # one column per test, evaluated in parallel, then OR-ed together (cheap on bitmaps)
    tests = [f.alias(f"__keel_fail{j}") for j, f in enumerate(fails)]
    extras = [pl.col(dup.alias), pl.col(_FIRST)] if dup else []
    mask = frame.select(*tests, *extras).collect() if fails else pl.DataFrame()
    if fails:
        mask = mask.select(pl.any_horizontal("^__keel_fail.*$").alias("failed"), *extras)
    failed = mask["failed"] if fails else pl.Series("failed", [False] * df.height)
    rows = failed.arg_true().cast(pl.Int64)
    # Pass 2: the passing rows cast to their types; every rule, reasons and counts on the failing rows only.
    valid = _without_rows(df, rows, failed).select(
        expr.cast(_DTYPES[col.type]).alias(col.name) for expr, col in zip(typed, checked, strict=True)
    )
    bad = pl.concat([df[rows], mask.drop("failed")[rows]], how="horizontal") if rows.len() \
        else pl.concat([df.head(0), mask.drop("failed").head(0)], how="horizontal")
    bad = bad.with_columns(rows.alias(_ROW)).with_columns(c.flag.alias(c.alias) for c in checks)
    counts = bad.select(pl.col(c.alias).sum() for c in checks).row(0, named=True) if checks else {}
    reason = pl.concat_str([pl.when(pl.col(c.alias)).then(c.message) for c in checks], separator="; ",
                           ignore_nulls=True) if checks else pl.lit("")
    quarantine = bad.select(
        *(as_text(name, df.schema[name]) for name in df.columns),
        pl.col(_ROW).alias(ROW_COLUMN),
        reason.fill_null("").alias(REASON_COLUMN),
    )
    examples = {c.alias: bad.filter(pl.col(c.alias)).head(3) for c in checks if counts.get(c.alias)}
    nulls = df.select(pl.col(c.name).null_count() for c in checked).row(0) if checked else ()
    tally = Tally(checked=checked, checks=[(c.column, c.kind, c.alias) for c in checks], rows=df.height,
                  nulls=[int(n) for n in nulls], counts={k: int(v or 0) for k, v in counts.items()},
                  examples=examples, quarantined=bad.height, extra=extra, missing=missing)
    return ValidationResult(valid=protect(valid, contract, pii_key),
                            quarantine=protect(quarantine, contract, pii_key),
                            report=build_report(tally, contract, options), tally=tally)


def _fails(col: ColumnContract, dtype: pl.DataType, checks: list[_Check]) -> list[pl.Expr]:
    """One expression that is true where any of the column's rules fails (fast forms for typed input)."""
    if not checks:
        return []
    raw = pl.col(col.name)
    ok: pl.Expr | None = None
    numeric = (col.type == "float" and dtype == pl.Float64) or (col.type == "integer" and dtype == pl.Int64)
    if numeric:
        low = -float("inf") if col.min is None else col.min
        high = float("inf") if col.max is None else col.max
        ok = raw.is_between(low, high)  # NaN sorts above +inf in polars, so it fails here too
    elif col.type == "category" and dtype == pl.String and col.categories is not None:
        ok = raw.is_in(pl.Series(col.categories, dtype=pl.String).implode())
    if ok is None:
        return [pl.any_horizontal(c.flag for c in checks)]
    nullable = col.nullable and col.role != "target"
    return [~(ok | raw.is_null()) if nullable else ~ok.fill_null(False)]


def _without_rows(df: pl.DataFrame, rows: pl.Series, failed: pl.Series) -> pl.DataFrame:
    """``df`` minus the failing ``rows``: zero-copy slices between them when they are few, else a filter."""
    if rows.len() == 0:
        return df
    if rows.len() > 1000:
        return df.filter(~failed)
    edges = [-1, *rows.to_list(), df.height]
    parts = [df.slice(a + 1, b - a - 1) for a, b in itertools.pairwise(edges) if b - a > 1]
    return pl.concat(parts, rechunk=False) if parts else df.head(0)


def _checked_columns(df: pl.DataFrame, contract: Contract, require_target: bool) -> list[ColumnContract]:
    """The contract columns to check and output; a required column missing from the data is an error."""
    checked: list[ColumnContract] = []
    extra = [name for name in df.columns if name not in {c.name for c in contract.columns}]
    for col in contract.columns:
        if col.role == "ignore":
            continue
        if col.name in df.columns:
            checked.append(col)
            continue
        if col.role in ("id", "timestamp") or (col.role == "target" and not require_target):
            continue
        raise DataError(
            f"the data has no column {col.name!r}, which the contract requires (role {col.role})",
            expected="every feature and target column of the contract: "
            + ", ".join(c.name for c in contract.columns if c.role in ("feature", "target")),
            fix=f"{close_match_hint(col.name, extra)}add the column to the data, or edit the contract",
        )
    return checked


def _number(raw: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """The column as a float (text parsed), null where it is not a number."""
    source = raw if dtype.is_numeric() else raw.cast(pl.String).str.strip_chars()
    return source.cast(pl.Float64, strict=False)


def _cast(col: ColumnContract, dtype: pl.DataType) -> pl.Expr:
    """The column converted to its contract type; a value that cannot be converted becomes null."""
    raw = pl.col(col.name)
    kind = col.type
    if (kind == "integer" and dtype == pl.Int64) or (kind == "boolean" and dtype == pl.Boolean) or (
            kind == "float" and dtype == pl.Float64):
        return raw  # already typed (NaN and inf fail the non_finite check, so never reach valid rows)
    if kind == "string":
        return raw.cast(pl.String)
    text = raw.cast(pl.String).str.strip_chars()
    if kind == "integer":
        if dtype.is_integer():
            return raw.cast(pl.Int64, strict=False)
        if dtype.is_float():
            return pl.when(raw.is_finite() & (raw == raw.round(0))).then(raw.cast(pl.Int64, strict=False))
        return text.cast(pl.Int64, strict=False)
    if kind == "float":
        number = raw.cast(pl.Float64) if dtype.is_float() else _number(raw, dtype)
        return pl.when(number.is_finite()).then(number)
    if kind == "boolean":
        return text.str.to_lowercase().replace_strict(_BOOLEAN_WORDS, default=None, return_dtype=pl.Boolean)
    if kind == "datetime":
        if dtype.is_temporal():
            return raw.cast(pl.Datetime("us"), strict=False)
        return text.str.strptime(pl.Datetime("us"), col.format, strict=False) if col.format else \
            text.str.to_datetime(time_unit="us", strict=False)
    # category: text input from CSV is already trimmed by the reader; other types are converted
    return raw if dtype == pl.String else text


def _column_checks(i: int, col: ColumnContract, dtype: pl.DataType) -> tuple[pl.Expr, list[_Check]]:
    """The typed expression and the violation checks that can fail for this column and input type."""
    raw = pl.col(col.name)
    typed = _cast(col, dtype)
    shown = as_text(col.name, dtype)
    prefix = pl.lit(f"{col.name}: ")
    checks: list[_Check] = []
    numeric = col.type in ("integer", "float")
    lossless = (col.type == "integer" and dtype.is_integer()) or (col.type == "float" and dtype.is_numeric()
                and not dtype.is_float()) or (col.type in ("category", "string") and dtype == pl.String) or (
                col.type == "boolean" and dtype == pl.Boolean)
    non_finite: pl.Expr | None = None
    if numeric and not dtype.is_integer():
        number = _number(raw, dtype)
        non_finite = number.is_not_null() & ~number.is_finite()
        checks.append(_Check(i, "non_finite", non_finite,
                             pl.concat_str(prefix, pl.lit("'"), shown, pl.lit("' is not a finite number"))))
    if not lossless:
        bad_type = raw.is_not_null() & typed.is_null()
        if non_finite is not None:
            bad_type = bad_type & ~non_finite
        checks.append(_Check(i, "type", bad_type, pl.concat_str(
            prefix, pl.lit("'"), shown, pl.lit(f"' is not {TYPE_WORDS[col.type]}"))))
    if col.role == "target" or not col.nullable:
        what = "the target is missing" if col.role == "target" else "missing, but the column is not nullable"
        checks.append(_Check(i, "null", raw.is_null(), pl.lit(f"{col.name}: {what}")))
    if col.categories is not None:
        noun = "class" if col.role == "target" else "category"
        bad_domain = (typed.is_not_null() & ~typed.cast(pl.String).is_in(col.categories)).fill_null(False)
        checks.append(_Check(i, "domain", bad_domain, pl.concat_str(
            prefix, pl.lit("'"), shown, pl.lit(f"' is not a known {noun}"))))
    if numeric and (col.min is not None or col.max is not None):
        below = typed < col.min if col.min is not None else pl.lit(False)
        above = typed > col.max if col.max is not None else pl.lit(False)
        bounds = f"[{format_number(col.min)}, {format_number(col.max)}]"
        out_of_range = below | above
        if col.type == "float":
            out_of_range = out_of_range & typed.is_finite()  # NaN/inf are non_finite, not out of range
        checks.append(_Check(i, "range", out_of_range.fill_null(False), pl.concat_str(
            prefix, shown, pl.lit(f" is outside the range {bounds}"))))
    return typed, checks


def _duplicate_check(checked: list[ColumnContract], options: ValidationSpec) -> _Check | None:
    """Rows repeating an earlier row (on every column, or on the key columns) go to quarantine."""
    keys = options.key_columns if options.deduplicate == "keys" else [c.name for c in checked]
    names = {c.name for c in checked}
    unknown = [k for k in keys if k not in names]
    if unknown:
        raise DataError(
            f"validation.key_columns names {', '.join(map(repr, unknown))}, not checked columns of the data",
            expected="columns of the contract present in the data: " + ", ".join(sorted(names)),
            fix=f"{close_match_hint(unknown[0], sorted(names))}fix validation.key_columns",
        )
    key = pl.struct([pl.col(k) for k in keys])
    what = "duplicate of row " if options.deduplicate == "exact" else "same key (" + ", ".join(keys) + ") as row "
    flag = ~key.is_first_distinct()
    return _Check(-1, "duplicate", flag, pl.concat_str(pl.lit(what), pl.col(_FIRST).cast(pl.String)),
                  extra=pl.when(flag).then(pl.col(_ROW).min().over(keys)).alias(_FIRST))


def as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """The original value as text (nested values as JSON)."""
    if dtype.is_nested():
        return pl.struct(pl.col(name).alias("v")).struct.json_encode().str.json_path_match("$.v").alias(name)
    return pl.col(name).cast(pl.String)


def format_number(value: float | None) -> str:
    if value is None:
        return "…"
    return str(int(value)) if float(value).is_integer() else repr(value)


def build_report(tally: Tally, contract: Contract, options: ValidationSpec) -> dict[str, Any]:
    """A JSON-serialisable summary: row counts, per-column violations, null fractions and anomalies."""
    rows, checked, result_counts = tally.rows, tally.checked, tally.counts
    columns: dict[str, Any] = {}
    for i, col in enumerate(checked):
        fraction = tally.nulls[i] / rows if rows else 0.0
        columns[col.name] = {
            "violations": {kind: int(result_counts.get(f"__keel_{kind}{i}") or 0) for kind in KINDS},
            "null_fraction": fraction,
            "max_null_fraction": col.max_null_fraction,
            "exceeded": fraction > col.max_null_fraction,
        }
    duplicates = int(result_counts.get("__keel_duplicate-1") or 0)
    quarantined, extra = tally.quarantined, tally.extra
    found = row_anomalies(checked, checks=tally.checks, counts=result_counts, examples=tally.examples, rows=rows)
    found += dataset_anomalies(checked, columns, options, rows=rows, quarantined=quarantined, extra=extra)
    return {
        "contract_version": contract.version,
        "rows_in": rows,
        "rows_valid": rows - quarantined,
        "rows_quarantined": quarantined,
        "duplicates_quarantined": duplicates,
        "columns": columns,
        "extra_columns": extra,
        "missing_columns": tally.missing,
        "anomalies": found,
        "fatal": [a for a in found if a["fatal"]],
    }
