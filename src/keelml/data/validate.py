"""Enforce a data contract: split a frame into typed valid rows and quarantined rows with reasons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from keelml.data.contract import ColumnContract, ColumnType, Contract, close_match_hint
from keelml.errors import DataError

ROW_COLUMN = "_row"
REASON_COLUMN = "_reason"
KINDS = ("type", "null", "domain", "range")
_DTYPES: dict[ColumnType, pl.DataType] = {
    "integer": pl.Int64(),
    "float": pl.Float64(),
    "boolean": pl.Boolean(),
    "category": pl.String(),
    "string": pl.String(),
}
_TYPE_WORDS: dict[ColumnType, str] = {
    "integer": "an integer",
    "float": "a finite number",
    "boolean": "true or false",
    "category": "text",
    "string": "text",
}
_BOOLEAN_WORDS = {"true": True, "false": False}


@dataclass(frozen=True)
class ValidationResult:
    """Passing rows (typed), failing rows (original text, ``_row``, ``_reason``) and a report."""

    valid: pl.DataFrame
    quarantine: pl.DataFrame
    report: dict[str, Any]


def validate_frame(df: pl.DataFrame, contract: Contract, *, require_target: bool = True) -> ValidationResult:
    """Check every row against ``contract``; nothing is dropped silently.

    ``valid`` holds the passing rows: the contract's columns except role ``ignore``, cast to their
    types, in contract order. ``quarantine`` holds the failing rows with all input columns as
    text plus ``_row`` (0-based input row) and ``_reason`` (every violation, joined by "; ").
    With ``require_target=False`` (scoring new data) a missing target column is allowed.
    """
    for reserved in (ROW_COLUMN, REASON_COLUMN):
        if reserved in df.columns:
            raise DataError(
                f"the data has a column named {reserved!r}, a name keelml reserves for quarantine",
                expected=f"no input column called {ROW_COLUMN} or {REASON_COLUMN}",
                fix=f"rename the column {reserved!r} in the data",
            )
    known = {c.name for c in contract.columns}
    checked = _checked_columns(df, contract, require_target)
    missing = [c.name for c in contract.columns if c.name not in df.columns]
    extra = [name for name in df.columns if name not in known]
    row = "__keel_row"
    frame = df.lazy().with_row_index(row).with_columns(pl.col(row).cast(pl.Int64))
    exprs: list[pl.Expr] = []
    reasons: list[pl.Expr] = []
    for i, col in enumerate(checked):
        typed, flags, messages = _column_checks(col, df.schema[col.name])
        exprs.append(typed.alias(f"__keel_t{i}"))
        exprs.extend(flag.alias(f"__keel_{kind}{i}") for kind, flag in zip(KINDS, flags, strict=True))
        reasons.extend(
            pl.when(pl.col(f"__keel_{kind}{i}")).then(message)
            for kind, message in zip(KINDS, messages, strict=True)
        )
    reason = pl.concat_str(reasons, separator="; ", ignore_nulls=True) if reasons else pl.lit("")
    frame = frame.with_columns(exprs).with_columns(reason.fill_null("").alias("__keel_reason"))
    result = frame.collect()
    failed = pl.col("__keel_reason") != ""
    valid = result.filter(~failed).select(
        pl.col(f"__keel_t{i}").cast(_DTYPES[col.type]).alias(col.name) for i, col in enumerate(checked)
    )
    quarantine = result.filter(failed).select(
        *(_as_text(name, df.schema[name]) for name in df.columns),
        pl.col(row).alias(ROW_COLUMN),
        pl.col("__keel_reason").alias(REASON_COLUMN),
    )
    report = _report(df, result, checked, contract, quarantine.height, extra, missing)
    return ValidationResult(valid=valid, quarantine=quarantine, report=report)


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
        if col.role == "id" or (col.role == "target" and not require_target):
            continue
        raise DataError(
            f"the data has no column {col.name!r}, which the contract requires (role {col.role})",
            expected="every feature and target column of the contract: "
            + ", ".join(c.name for c in contract.columns if c.role in ("feature", "target")),
            fix=f"{close_match_hint(col.name, extra)}add the column to the data, or edit the contract",
        )
    return checked


def _cast(name: str, dtype: pl.DataType, kind: ColumnType) -> pl.Expr:
    """The column converted to ``kind``; a value that cannot be converted becomes null."""
    raw = pl.col(name)
    text = raw.cast(pl.String).str.strip_chars()
    if kind == "integer":
        if dtype.is_integer():
            return raw.cast(pl.Int64, strict=False)
        if dtype.is_float():
            return pl.when(raw.is_finite() & (raw == raw.round(0))).then(raw.cast(pl.Int64, strict=False))
        return text.cast(pl.Int64, strict=False)
    if kind == "float":
        source = raw if dtype.is_numeric() else text
        number = source.cast(pl.Float64, strict=False)
        return pl.when(number.is_finite()).then(number)
    if kind == "boolean":
        if dtype == pl.Boolean:
            return raw
        return text.str.to_lowercase().replace_strict(_BOOLEAN_WORDS, default=None, return_dtype=pl.Boolean)
    return text if kind == "category" else raw.cast(pl.String)


def _column_checks(col: ColumnContract, dtype: pl.DataType) -> tuple[pl.Expr, list[pl.Expr], list[pl.Expr]]:
    """The typed expression, the four violation flags (type, null, domain, range) and their messages."""
    raw = pl.col(col.name)
    shown = _as_text(col.name, dtype)
    typed = _cast(col.name, dtype, col.type)
    prefix = pl.lit(f"{col.name}: ")
    bad_type = raw.is_not_null() & typed.is_null()
    type_msg = pl.concat_str(prefix, pl.lit("'"), shown, pl.lit(f"' is not {_TYPE_WORDS[col.type]}"))
    nullable = col.nullable and col.role != "target"
    bad_null = raw.is_null() & pl.lit(not nullable)
    what = "the target is missing" if col.role == "target" else "missing, but the column is not nullable"
    null_msg = pl.lit(f"{col.name}: {what}")
    if col.categories is not None:
        bad_domain = typed.is_not_null() & ~typed.cast(pl.String).is_in(col.categories)
        noun = "class" if col.role == "target" else "category"
        domain_msg = pl.concat_str(prefix, pl.lit("'"), shown, pl.lit(f"' is not a known {noun}"))
    else:
        bad_domain, domain_msg = pl.lit(False), pl.lit(None, dtype=pl.String)
    below = typed < col.min if col.min is not None and col.type in ("integer", "float") else pl.lit(False)
    above = typed > col.max if col.max is not None and col.type in ("integer", "float") else pl.lit(False)
    bounds = f"[{_number(col.min)}, {_number(col.max)}]"
    range_msg = pl.concat_str(prefix, shown, pl.lit(f" is outside the range {bounds}"))
    flags = [bad_type, bad_null, bad_domain.fill_null(False), (below | above).fill_null(False)]
    return typed, flags, [type_msg, null_msg, domain_msg, range_msg]


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """The original value as text (nested values as JSON)."""
    if dtype.is_nested():
        return pl.struct(pl.col(name).alias("v")).struct.json_encode().str.json_path_match("$.v").alias(name)
    return pl.col(name).cast(pl.String)


def _number(value: float | None) -> str:
    if value is None:
        return "…"
    return str(int(value)) if float(value).is_integer() else repr(value)


def _report(
    df: pl.DataFrame,
    result: pl.DataFrame,
    checked: list[ColumnContract],
    contract: Contract,
    quarantined: int,
    extra: list[str],
    missing: list[str],
) -> dict[str, Any]:
    """A JSON-serialisable summary: row counts, per-column violations and null fractions."""
    rows = df.height
    counts = result.select(
        pl.col(f"__keel_{kind}{i}").sum().alias(f"{kind}{i}") for i in range(len(checked)) for kind in KINDS
    ).row(0, named=True) if checked else {}
    nulls = df.select(pl.col(c.name).null_count() for c in checked).row(0) if checked else ()
    columns: dict[str, Any] = {}
    for i, col in enumerate(checked):
        fraction = nulls[i] / rows if rows else 0.0
        columns[col.name] = {
            "violations": {kind: int(counts[f"{kind}{i}"]) for kind in KINDS},
            "null_fraction": fraction,
            "max_null_fraction": col.max_null_fraction,
            "exceeded": fraction > col.max_null_fraction,
        }
    return {
        "contract_version": contract.version,
        "rows_in": rows,
        "rows_valid": rows - quarantined,
        "rows_quarantined": quarantined,
        "columns": columns,
        "extra_columns": extra,
        "missing_columns": missing,
    }
