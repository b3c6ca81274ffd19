"""Profile a table: per-column statistics that later data (drift) is measured against.

The profile is plain JSON (format ``keelml.profile/1``, described in docs/data.md): counts, nulls
and distinct values for every column; for numbers min/max/mean/std, quantiles, a quantile grid and
a histogram on fixed edges; for categories, booleans and text the most frequent values and, when
the contract lists the column's categories, the count of every one of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import polars as pl

from keelml.data.contract import ColumnType, Contract

PROFILE_FORMAT = "keelml.profile/1"
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
MAX_TEXT_CATEGORIES = 100
"""Without a contract, a text column with at most this many distinct values is a category."""

_NUMERIC: tuple[ColumnType, ...] = ("integer", "float")
_BOOLEAN_WORDS = {"true": True, "false": False}


def profile_frame(df: pl.DataFrame, contract: Contract | None = None, *, bins: int = 20,
                  top: int = 50) -> dict[str, Any]:
    """The profile of ``df``: a JSON-serialisable dict, the same for the same data and arguments.

    With a contract, a column's type and role come from it (values that do not fit the type count
    as missing: profile validated data); without one, typed columns keep their type and a text
    column is read as integer, float or boolean when every value parses as one. Histogram edges are
    the distinct inner values of a ``bins``-quantile grid; ``top`` values are listed per category.
    """
    if bins < 1 or top < 0:
        raise ValueError("bins must be >= 1 and top >= 0")
    kinds = _kinds(df, contract)
    typed = df.select(_typed(name, df.schema[name], kind).alias(f"c{i}") for i, (name, kind) in enumerate(kinds))
    scalars = typed.select(
        expr for i, (_, kind) in enumerate(kinds) for expr in _scalar_exprs(f"c{i}", kind, bins)
    ).row(0, named=True) if kinds else {}
    edges = {i: _edges(scalars, f"c{i}", bins) for i, (_, kind) in enumerate(kinds) if kind in _NUMERIC}
    hist_exprs = [expr for i, cuts in edges.items() for expr in _below_exprs(pl.col(f"c{i}"), cuts, f"c{i}")]
    domains = _domains(kinds, contract)
    queries = [typed.lazy().select(hist_exprs or [pl.lit(0).alias("none")])]
    text_columns = [i for i, (_, kind) in enumerate(kinds) if kind not in _NUMERIC or i in domains]
    queries += [_value_counts(typed.lazy(), f"c{i}", top, domains.get(i)) for i in text_columns]
    results = pl.collect_all(queries)
    counts = dict(zip(text_columns, results[1:], strict=True))
    return assemble_profile(df.height, kinds, contract, scalars=scalars, below=results[0].row(0, named=True),
                            counts=counts, edges=edges, bins=bins, top=top)


def assemble_profile(rows: int, kinds: list[tuple[str, ColumnType]], contract: Contract | None, *,
                     scalars: dict[str, Any], below: dict[str, Any], counts: dict[int, pl.DataFrame],
                     edges: dict[int, list[float]], bins: int, top: int) -> dict[str, Any]:
    """The profile from its parts: per-column statistics (named ``c{i}_...``), histogram counts below
    each edge, and the ranked value counts of the text columns (see :func:`ranked_counts`)."""
    domains = _domains(kinds, contract)
    columns: list[dict[str, Any]] = []
    for i, (name, kind) in enumerate(kinds):
        key = f"c{i}"
        nulls = int(scalars[f"{key}_nulls"])
        entry: dict[str, Any] = {
            "name": name,
            "type": kind,
            "role": _role(contract, name),
            "count": rows - nulls,
            "nulls": nulls,
            "null_fraction": nulls / rows if rows else 0.0,
            "distinct": int(scalars[f"{key}_distinct"]),
        }
        if kind in _NUMERIC:
            entry.update(_numeric_entry(scalars, below, key, kind, bins, edges[i], rows - nulls))
        if i in counts:
            entry.update(_category_entry(counts[i], top, rows - nulls, domains.get(i)))
        columns.append(entry)
    return {
        "format": PROFILE_FORMAT,
        "rows": rows,
        "columns": columns,
        "contract_version": contract.version if contract is not None else None,
        "settings": {"bins": bins, "top": top, "quantiles": list(QUANTILES)},
    }


def apply_edges(series: pl.Series, edges: Sequence[float]) -> list[int]:
    """Counts of ``series`` in the bins of a profile histogram: ``len(edges) + 1`` numbers.

    Bin 0 is ``(-inf, edges[0])``, bin k is ``[edges[k-1], edges[k])``, the last is
    ``[edges[-1], +inf)``; infinite values fall in the outer bins; nulls and NaN are not counted.
    ``-inf``/``+inf`` entries in ``edges`` are ignored (the outer edges are always infinite). Text
    is parsed as numbers; values that do not parse are not counted.
    """
    cuts = [float(e) for e in edges if math.isfinite(float(e))]
    if any(b <= a for a, b in pairwise(cuts)):
        raise ValueError("histogram edges must be strictly increasing")
    values = series.cast(pl.Float64) if series.dtype.is_numeric() else (
        series.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False))
    frame = pl.DataFrame({"v": values})
    row = frame.select(
        (pl.col("v").count() - pl.col("v").is_nan().sum()).alias("v_valid"),
        *_below_exprs(pl.col("v"), cuts, "v"),
    ).row(0, named=True)
    return _bin_counts(row, "v", len(cuts), int(row["v_valid"]))


def _kinds(df: pl.DataFrame, contract: Contract | None) -> list[tuple[str, ColumnType]]:
    """Each column's profile type: the contract's, else its own, else parsed from its text."""
    return column_kinds(df.schema, contract, lambda names: text_kinds(df.select(text_stats(names)).row(0), names))


def column_kinds(schema: pl.Schema, contract: Contract | None,
                 parse: Callable[[list[str]], dict[str, ColumnType]]) -> list[tuple[str, ColumnType]]:
    """Each column's profile type; ``parse`` decides the text columns the contract does not type."""
    known = {c.name: c.type for c in contract.columns} if contract is not None else {}
    kinds: dict[str, ColumnType] = {}
    text: list[str] = []
    for name, dtype in schema.items():
        if name in known:
            kinds[name] = known[name]
        elif dtype.is_integer():
            kinds[name] = "integer"
        elif dtype.is_float():
            kinds[name] = "float"
        elif dtype == pl.Boolean:
            kinds[name] = "boolean"
        elif dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
            text.append(name)
        else:
            kinds[name] = "string"
    if text:
        kinds.update(parse(text))
    return [(name, kinds[name]) for name in schema.names()]


def text_stats(names: list[str], *, distinct: bool = True) -> list[pl.Expr]:
    """Per text column: present values, and how many parse as integer, float and boolean (and distinct)."""
    exprs: list[pl.Expr] = []
    for name in names:
        text = pl.col(name).cast(pl.String).str.strip_chars()
        exprs += [
            text.count(),
            text.cast(pl.Int64, strict=False).count(),
            text.cast(pl.Float64, strict=False).is_finite().sum(),
            text.str.to_lowercase().is_in(list(_BOOLEAN_WORDS)).sum(),
        ]
        if distinct:
            exprs.append(text.drop_nulls().n_unique())
    return [e.alias(f"s{j}") for j, e in enumerate(exprs)]


def text_kinds(row: Sequence[Any], names: list[str]) -> dict[str, ColumnType]:
    """Integer, float or boolean when every present value parses as one; else category or string.

    ``row`` holds the five :func:`text_stats` numbers of each column in turn."""
    kinds: dict[str, ColumnType] = {}
    for i, name in enumerate(names):
        present, ints, floats, bools, distinct = row[5 * i:5 * i + 5]
        if present and ints == present:
            kinds[name] = "integer"
        elif present and floats == present:
            kinds[name] = "float"
        elif present and bools == present:
            kinds[name] = "boolean"
        else:
            kinds[name] = "category" if distinct <= MAX_TEXT_CATEGORIES else "string"
    return kinds


def _typed(name: str, dtype: pl.DataType, kind: ColumnType) -> pl.Expr:
    """The column as its profile type; a value that does not convert becomes null (NaN and inf stay)."""
    raw = pl.col(name)
    if dtype.is_nested():
        text = pl.struct(raw.alias("v")).struct.json_encode().str.json_path_match("$.v")
    else:
        text = raw.cast(pl.String)
    if kind == "integer":
        if dtype.is_integer():
            return raw.cast(pl.Int64, strict=False)
        if dtype.is_float():
            return pl.when(raw.is_finite() & (raw == raw.round(0))).then(raw.cast(pl.Int64, strict=False))
        return text.str.strip_chars().cast(pl.Int64, strict=False)
    if kind == "float":
        return (raw if dtype.is_numeric() else text.str.strip_chars()).cast(pl.Float64, strict=False)
    if kind == "boolean":
        if dtype == pl.Boolean:
            return raw
        return text.str.strip_chars().str.to_lowercase().replace_strict(
            _BOOLEAN_WORDS, default=None, return_dtype=pl.Boolean)
    return text


def _scalar_exprs(key: str, kind: ColumnType, bins: int) -> list[pl.Expr]:
    """Every single-value statistic of one column (all columns go into one select)."""
    col = pl.col(key)
    exprs = [col.null_count().alias(f"{key}_nulls"), col.drop_nulls().n_unique().alias(f"{key}_distinct")]
    if kind not in _NUMERIC:
        return exprs
    finite = col.filter(col.is_finite()) if kind == "float" else col
    exprs += [
        finite.min().alias(f"{key}_min"),
        finite.max().alias(f"{key}_max"),
        finite.cast(pl.Float64).mean().alias(f"{key}_mean"),
        finite.cast(pl.Float64).std().alias(f"{key}_std"),
        (col.is_nan().sum() if kind == "float" else pl.lit(0)).alias(f"{key}_nan"),
        (col == math.inf).sum().alias(f"{key}_pos_inf") if kind == "float" else pl.lit(0).alias(f"{key}_pos_inf"),
        (col == -math.inf).sum().alias(f"{key}_neg_inf") if kind == "float" else pl.lit(0).alias(f"{key}_neg_inf"),
    ]
    exprs += [  # one list-valued quantile expression sorts the column once for all levels
        finite.quantile(list(QUANTILES), "linear").alias(f"{key}_quantiles"),
        finite.quantile([j / bins for j in range(bins + 1)], "nearest").alias(f"{key}_grid"),
    ]
    return exprs


def _edges(scalars: dict[str, Any], key: str, bins: int) -> list[float]:
    """Histogram edges: the distinct inner values of the quantile grid (the outer edges are infinite)."""
    inner = [_finite(v) for v in scalars[f"{key}_grid"][1:-1]]
    return sorted({v for v in inner if v is not None})


def _below_exprs(col: pl.Expr, cuts: Sequence[float], key: str) -> list[pl.Expr]:
    """For each edge, how many values lie strictly below it (NaN and null never do)."""
    return [(col < cut).sum().alias(f"{key}_below{k}") for k, cut in enumerate(cuts)]


def _bin_counts(row: dict[str, Any], key: str, n_cuts: int, valid: int) -> list[int]:
    """Per-bin counts from the cumulative "below edge" counts."""
    cumulative = [0, *(int(row[f"{key}_below{k}"]) for k in range(n_cuts)), valid]
    return [b - a for a, b in pairwise(cumulative)]


def _numeric_entry(scalars: dict[str, Any], below: dict[str, Any], key: str, kind: ColumnType,
                   bins: int, edges: list[float], present: int) -> dict[str, Any]:
    nan = int(scalars[f"{key}_nan"])
    low, high = scalars[f"{key}_min"], scalars[f"{key}_max"]
    native = int if kind == "integer" else float
    return {
        "min": None if low is None else native(low),
        "max": None if high is None else native(high),
        "mean": _finite(scalars[f"{key}_mean"]),
        "std": _finite(scalars[f"{key}_std"]),
        "nan": nan,
        "pos_inf": int(scalars[f"{key}_pos_inf"]),
        "neg_inf": int(scalars[f"{key}_neg_inf"]),
        "quantiles": {str(q): _finite(v) for q, v in zip(QUANTILES, scalars[f"{key}_quantiles"], strict=True)},
        "grid": [_finite(v) for v in scalars[f"{key}_grid"]],
        "histogram": {"edges": edges, "counts": _bin_counts(below, key, len(edges), present - nan)},
    }


def _domains(kinds: list[tuple[str, ColumnType]], contract: Contract | None) -> dict[int, list[str]]:
    """Column index -> the contract's categories (or classes) for that column, where it lists them."""
    if contract is None:
        return {}
    listed = {c.name: c.categories for c in contract.columns if c.categories is not None}
    return {i: list(listed[name]) for i, (name, _) in enumerate(kinds) if name in listed}


def _value_counts(frame: pl.LazyFrame, key: str, top: int, domain: list[str] | None) -> pl.LazyFrame:
    """Present values with their counts, most frequent first (ties by value): the top ones and the domain's."""
    return ranked_counts(count_values(frame, key), top, domain)


def count_values(frame: pl.LazyFrame, key: str) -> pl.LazyFrame:
    """Each present value of a column (as text) with its count (columns ``value`` and ``count``)."""
    value = pl.col(key).cast(pl.String)
    return frame.select(value.alias("value")).drop_nulls().group_by("value").len(name="count")


def ranked_counts(counted: pl.LazyFrame, top: int, domain: list[str] | None) -> pl.LazyFrame:
    """Value counts ranked, most frequent first (ties by value): the top ones and the domain's."""
    ranked = counted.sort(["count", "value"], descending=[True, False]).with_row_index("rank")
    keep = pl.col("rank") < top
    if domain is not None:
        keep = keep | pl.col("value").is_in(domain)
    return ranked.filter(keep)


def _category_entry(counts: pl.DataFrame, top: int, present: int, domain: list[str] | None) -> dict[str, Any]:
    leaders = counts.filter(pl.col("rank") < top)
    listed = [{"value": v, "count": int(n)} for v, n in zip(leaders["value"], leaders["count"], strict=True)]
    entry: dict[str, Any] = {"top": listed, "other": present - sum(item["count"] for item in listed)}
    if domain is not None:
        seen = dict(zip(counts["value"].to_list(), counts["count"].to_list(), strict=True))
        entry["domain"] = {category: int(seen.get(category, 0)) for category in domain}
        entry["outside_domain"] = present - sum(entry["domain"].values())
    return entry


def _role(contract: Contract | None, name: str) -> str | None:
    if contract is None:
        return None
    return next((c.role for c in contract.columns if c.name == name), None)


def _finite(value: Any) -> float | None:
    """A float for JSON: None for missing, NaN or infinite values."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
