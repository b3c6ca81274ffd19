"""Infer a data contract (types, nullability, domains, ranges, roles, task) from a training frame."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from keelml.data.contract import ColumnContract, ColumnType, Contract, PiiAction, PiiKind, Role, Task, close_match_hint
from keelml.data.pii import detect_pii
from keelml.errors import DataError
from keelml.spec.data import ContractSpec

MAX_INTEGER_CLASSES = 20
"""An integer target with at most this many distinct values is a class label, not a quantity."""

_INTEGER_DTYPES = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
_BOOLEAN_WORDS = {"true": True, "false": False}
DATETIME_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%.f",
                    "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%.fZ", "%Y/%m/%d", "%d/%m/%Y")
"""Text formats recognised as datetimes (the first one that reads every value wins)."""
_ID_NAME = re.compile(r"(^|_)(id|uuid|key|number|no)$|^(row|record|index)$", re.IGNORECASE)


@dataclass(frozen=True)
class _Typed:
    """A column's inferred type and its values converted to that type."""

    type: ColumnType
    values: pl.Series
    format: str | None = None


def infer_contract(
    df: pl.DataFrame,
    *,
    target: str,
    options: ContractSpec,
    drop_columns: Sequence[str] = (),
    sensitive_columns: Sequence[str] = (),
) -> Contract:
    """Infer the contract of ``df``: one entry per column not dropped, in frame order.

    Numeric ranges are the ``options.range_quantiles`` quantiles widened by
    ``options.range_margin * (hi - lo)`` on each side (integers rounded outward); values outside
    them, like unseen categories, are quarantined at validation. The target gets no range.
    Task: a float target, or an integer one with more than 20 distinct values, is regression;
    otherwise 2 classes is binary, more is multiclass (classes sorted as strings).
    """
    _check_names(df, target, drop_columns, sensitive_columns, list(options.pii))
    dropped, sensitive = set(drop_columns), set(sensitive_columns)
    columns = [
        _infer_column(df[name], options, is_target=name == target, sensitive=name in sensitive)
        for name in df.columns
        if name not in dropped
    ]
    index = next(i for i, c in enumerate(columns) if c.name == target)
    task = _task(columns[index], df[target], options)
    classes: list[str] | None = None
    if task != "regression":
        classes = _classes(columns[index], df[target])
        columns[index] = columns[index].model_copy(update={"categories": classes})
    if not any(c.role == "feature" for c in columns):
        skipped = [f"{c.name} ({c.role})" for c in columns if c.role != "target"]
        raise DataError(
            "no feature columns are left to learn from"
            + (f"; the other columns are: {', '.join(skipped)}" if skipped else ""),
            expected="at least one column with role feature besides the target",
            fix="remove columns from data.drop_columns, or edit the roles in the contract file",
        )
    return Contract(target=target, task=task, classes=classes, columns=columns)


def _check_names(
    df: pl.DataFrame, target: str, drop_columns: Sequence[str], sensitive_columns: Sequence[str],
    pii_columns: Sequence[str],
) -> None:
    available = ", ".join(df.columns)
    if target not in df.columns:
        raise DataError(
            f"the target column {target!r} is not in the data",
            expected=f"one of the columns: {available}",
            fix=f"{close_match_hint(target, df.columns)}set data.target to the column to predict",
        )
    for key, names in (("data.drop_columns", drop_columns), ("data.sensitive_columns", sensitive_columns),
                       ("contract.pii", pii_columns)):
        for name in names:
            if name not in df.columns:
                raise DataError(
                    f"{key} names {name!r}, which is not a column of the data",
                    expected=f"one of the columns: {available}",
                    fix=f"{close_match_hint(name, df.columns)}fix or remove it in {key}",
                )
    if target in drop_columns:
        raise DataError(
            f"the target {target!r} is also listed in data.drop_columns",
            expected="the target to be kept",
            fix=f"remove {target!r} from data.drop_columns",
        )
    both = sorted(set(drop_columns) & set(sensitive_columns))
    if both:
        raise DataError(
            f"{', '.join(both)} is listed in both data.drop_columns and data.sensitive_columns",
            expected="sensitive columns to be kept so fairness can be measured on them",
            fix="remove it from one of the two lists",
        )


def _infer_type(series: pl.Series, options: ContractSpec) -> _Typed:
    """The column type: native for typed columns; parsed from text for strings."""
    dtype = series.dtype
    if dtype in _INTEGER_DTYPES:
        return _Typed("integer", series)
    if dtype.is_float():
        return _Typed("float", series.cast(pl.Float64))
    if dtype == pl.Boolean:
        return _Typed("boolean", series)
    if dtype.is_temporal():
        return _Typed("datetime", series)
    try:
        text = series.cast(pl.String).str.strip_chars()
    except pl.exceptions.PolarsError:
        raise DataError(
            f"column {series.name!r} has the unsupported type {dtype}",
            expected="numbers, booleans or text",
            fix=f"flatten or convert {series.name!r} before training, or add it to data.drop_columns",
        ) from None
    present = text.len() - text.null_count()
    if present == 0:
        return _Typed("string", text)
    ints = text.cast(pl.Int64, strict=False)
    if ints.len() - ints.null_count() == present:
        return _Typed("integer", ints)
    floats = text.cast(pl.Float64, strict=False)
    if int(floats.is_finite().sum()) == present:
        return _Typed("float", floats)
    lowered = text.str.to_lowercase()
    if int(lowered.is_in(list(_BOOLEAN_WORDS)).sum()) == present:
        flags = lowered.replace_strict(_BOOLEAN_WORDS, default=None, return_dtype=pl.Boolean)
        return _Typed("boolean", flags)
    fmt = _datetime_format(text, present)
    if fmt is not None:
        return _Typed("datetime", text.str.strptime(pl.Datetime("us"), fmt, strict=False), fmt)
    kind: ColumnType = "category" if text.drop_nulls().n_unique() <= options.max_categories else "string"
    return _Typed(kind, text)


def _datetime_format(text: pl.Series, present: int) -> str | None:
    """The first of DATETIME_FORMATS that reads every present value, if any (only text with a digit)."""
    sample = text.drop_nulls().head(1000)
    if sample.len() == 0 or not bool(sample.str.contains(r"^\d").all()):
        return None
    for fmt in DATETIME_FORMATS:
        parsed = sample.str.strptime(pl.Datetime("us"), fmt, strict=False)
        if parsed.null_count() == 0:
            full = text.str.strptime(pl.Datetime("us"), fmt, strict=False)
            if full.len() - full.null_count() == present:
                return fmt
    return None


def _infer_column(
    series: pl.Series, options: ContractSpec, *, is_target: bool, sensitive: bool
) -> ColumnContract:
    """One column's contract; the target's categories are filled in later, once the task is known."""
    typed = _infer_type(series, options)
    values = typed.values
    n_rows = series.len()
    nulls = series.null_count()
    present = values.drop_nulls()
    pii, action = (None, None) if is_target else _pii(series, typed, options)
    if pii is not None and typed.type == "category":
        typed = _Typed("string", values)  # personal data: no list of its values in the contract
    unique = typed.type in ("integer", "string") and n_rows > 0 and values.n_unique() == n_rows
    role: Role = "feature"
    if is_target:
        role = "target"
    elif typed.type == "datetime":
        role = "timestamp"
    elif pii is not None and action != "keep":
        role = "id" if unique else "ignore"
    elif typed.type == "string" or (typed.type == "integer" and unique and _ID_NAME.search(series.name)):
        role = "id" if unique and present.len() > 0 else "ignore"
    nullable = nulls > 0 and not is_target
    categories: list[str] | None = None
    if typed.type == "category" and not is_target and pii is None:
        categories = sorted(str(v) for v in present.cast(pl.String).unique().to_list())
    numeric_feature = role == "feature" and pii is None
    low, high = _range(present, typed.type, options) if numeric_feature else (None, None)
    return ColumnContract(
        name=series.name,
        type=typed.type,
        role=role,
        nullable=nullable,
        max_null_fraction=_allowed_nulls(nulls / n_rows, options) if nullable else 0.0,
        categories=categories,
        min=low,
        max=high,
        unique=unique,
        sensitive=sensitive,
        format=typed.format,
        pii=pii,
        pii_action=action,
    )


def _pii(series: pl.Series, typed: _Typed, options: ContractSpec) -> tuple[PiiKind | None, PiiAction | None]:
    """(kind, action) for a column that holds personal data: declared in contract.pii, or detected."""
    declared = options.pii.get(series.name)
    if typed.type not in ("string", "category", "integer") and declared is None:
        return None, None
    kind = detect_pii(series.cast(pl.String)) if options.detect_pii else None
    if declared is not None:
        return kind or "declared", declared
    return (kind, options.pii_action) if kind is not None else (None, None)


def _allowed_nulls(observed: float, options: ContractSpec) -> float:
    """Observed null fraction plus the margin, rounded up to 4 decimals, at most 1."""
    return min(1.0, math.ceil((observed + options.null_fraction_margin) * 10_000) / 10_000)


def _range(present: pl.Series, kind: ColumnType, options: ContractSpec) -> tuple[float | None, float | None]:
    """Widened quantile bounds of the finite values; rounded outward (integers to whole numbers).

    The bounds are the `range_quantiles` widened by `range_margin` times their span on each side;
    a column with no negative value keeps a lower bound of at least 0.
    """
    if kind not in ("integer", "float"):
        return None, None
    finite = present.filter(present.is_finite()) if kind == "float" else present
    if finite.len() == 0:
        return None, None
    q_low, q_high = options.range_quantiles
    low = finite.quantile(q_low, interpolation="linear")
    high = finite.quantile(q_high, interpolation="linear")
    assert low is not None and high is not None
    pad = options.range_margin * (high - low)
    observed_min = finite.min()
    low, high = low - pad, high + pad
    if isinstance(observed_min, int | float) and observed_min >= 0:
        low = max(low, 0.0)  # a column never seen negative (ages, counts, amounts) stays non-negative
    if kind == "integer":
        return float(math.floor(low)), float(math.ceil(high))
    span = high - low or abs(high) or 1.0
    digits = 3 - math.floor(math.log10(span))
    step = 10.0**-digits
    return _tidy(math.floor(low / step) * step, digits), _tidy(math.ceil(high / step) * step, digits)


def _tidy(value: float, digits: int) -> float:
    """``value`` without binary noise such as 0.30000000000000004 (for a readable contract file)."""
    return round(value, digits) if digits > 0 else float(value)


def _classes(column: ColumnContract, series: pl.Series) -> list[str]:
    """The distinct target values in their canonical text form, sorted as strings."""
    text = series.cast(pl.String).str.strip_chars()
    if column.type == "integer" and series.dtype == pl.String:
        text = text.cast(pl.Int64).cast(pl.String)
    elif column.type == "boolean":
        text = text.str.to_lowercase()
    return sorted(str(v) for v in text.drop_nulls().unique().to_list())


def _task(column: ColumnContract, series: pl.Series, options: ContractSpec) -> Task:
    """binary / multiclass / regression from the target's type and number of distinct values."""
    name = column.name
    distinct = series.drop_nulls().n_unique()
    if distinct < 2:
        seen = "only nulls" if distinct == 0 else f"the single value {series.drop_nulls()[0]!r}"
        raise DataError(
            f"the target {name!r} has {seen}: a target with one class cannot be learned",
            expected="a target with at least two distinct values",
            fix="check data.target and that the training file holds examples of every outcome",
        )
    if column.type == "float" or (column.type == "integer" and distinct > MAX_INTEGER_CLASSES):
        return "regression"
    if column.type == "string":
        raise DataError(
            f"the target {name!r} has {distinct} distinct text values, more than "
            f"contract.max_categories ({options.max_categories})",
            expected="a class label with few distinct values, or a numeric target for regression",
            fix="check data.target, or raise contract.max_categories",
        )
    return "binary" if distinct == 2 else "multiclass"
