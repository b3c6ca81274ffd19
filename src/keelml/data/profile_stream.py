"""Profile a source chunk by chunk, in two or three passes, with memory bounded by the chunk size.

Pass 0 (only for text columns the contract does not type) decides their types; pass 1 gathers the
statistics; pass 2 counts the histogram. Counts, nulls, min/max, NaN/inf counts, value counts and
histogram counts are exact; mean and std merge per-chunk moments (Chan et al.), equal to the
whole-column values up to float rounding. Quantiles and the grid are exact while a column has at
most ``EXACT_VALUES`` finite values; past that each chunk adds ``SKETCH_POINTS`` equally spaced order
statistics (each standing for its share of the chunk) to a merged summary, so a quantile's rank is
off by at most about ``1 / SKETCH_POINTS`` of the rows. Distinct counts of numeric columns are exact
up to ``EXACT_VALUES`` distinct values, then a HyperLogLog estimate (about 1% error); those of text
columns are exact (their value counts are kept, so memory grows with their distinct values).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import numpy as np
import polars as pl

from keelml.data.contract import ColumnType, Contract
from keelml.data.profile import (
    _NUMERIC,
    MAX_TEXT_CATEGORIES,
    QUANTILES,
    _below_exprs,
    _domains,
    _edges,
    _typed,
    assemble_profile,
    column_kinds,
    count_values,
    ranked_counts,
    text_kinds,
    text_stats,
)

EXACT_VALUES = 100_000
SKETCH_POINTS = 4096
HLL_BITS = 14

Chunks = Callable[[], Iterable[pl.DataFrame]]


def profile_chunks(chunks: Chunks, contract: Contract | None = None, *, bins: int = 20,
                   top: int = 50) -> dict[str, Any]:
    """The profile (as :func:`keelml.data.profile.profile_frame`) of the rows of ``chunks()``, which
    is called once per pass and must give the same chunks each time."""
    if bins < 1 or top < 0:
        raise ValueError("bins must be >= 1 and top >= 0")
    schema: pl.Schema | None = None
    for first in chunks():
        schema = first.schema
        break
    if schema is None:
        raise ValueError("no chunks to profile")
    kinds = column_kinds(schema, contract, lambda names: _text_kinds(chunks, names))
    domains = _domains(kinds, contract)
    text_columns = [i for i, (_, kind) in enumerate(kinds) if kind not in _NUMERIC or i in domains]
    numeric = [i for i, (_, kind) in enumerate(kinds) if kind in _NUMERIC]
    stats = {i: _Numeric() for i in numeric}
    nulls = dict.fromkeys(range(len(kinds)), 0)
    counted: dict[int, pl.DataFrame] = {}
    rows = 0
    for chunk in chunks():
        typed = _typed_chunk(chunk, kinds)
        rows += typed.height
        row = typed.select(pl.col(f"c{i}").null_count().alias(f"c{i}_nulls") for i in range(len(kinds))).hstack(
            typed.select(e for i in numeric for e in _Numeric.exprs(f"c{i}", kinds[i][1]))).row(0, named=True)
        for i in range(len(kinds)):
            nulls[i] += int(row[f"c{i}_nulls"])
        for i in numeric:
            stats[i].add(row, f"c{i}", typed.get_column(f"c{i}"), kinds[i][1])
        for i in text_columns:
            part = count_values(typed.lazy(), f"c{i}").collect()
            have = counted.get(i)
            counted[i] = part if have is None else pl.concat([have, part]).group_by("value").agg(pl.col("count").sum())
    scalars: dict[str, Any] = {}
    for i in range(len(kinds)):
        scalars[f"c{i}_nulls"] = nulls[i]
        if i in stats:
            scalars.update(stats[i].scalars(f"c{i}", bins))
        if i in counted:
            scalars[f"c{i}_distinct"] = counted[i].height
        elif i not in stats:
            scalars[f"c{i}_distinct"] = 0
    edges = {i: _edges(scalars, f"c{i}", bins) for i in numeric}
    below: dict[str, Any] = {}
    for i in numeric:  # from the values held in memory; a second pass for the columns summarised
        if (held := stats[i].values.below(edges[i])) is not None:
            below.update({f"c{i}_below{k}": n + stats[i].neg_inf for k, n in enumerate(held)})
    below.update(_histograms(chunks, kinds, {i: edges[i] for i in numeric if stats[i].values.points is not None}))
    counts = {i: ranked_counts(counted[i].lazy(), top, domains.get(i)).collect() for i in text_columns}
    return assemble_profile(rows, kinds, contract, scalars=scalars, below=below, counts=counts, edges=edges,
                            bins=bins, top=top)


def _typed_chunk(chunk: pl.DataFrame, kinds: list[tuple[str, ColumnType]]) -> pl.DataFrame:
    return chunk.select(_typed(name, chunk.schema[name], kind).alias(f"c{i}") for i, (name, kind) in enumerate(kinds))


def _text_kinds(chunks: Chunks, names: list[str]) -> dict[str, ColumnType]:
    """Pass 0: the types of untyped text columns (distinct values tracked up to the category limit)."""
    sums = [0] * (4 * len(names))
    seen: list[pl.Series | None] = [pl.Series([], dtype=pl.String) for _ in names]
    for chunk in chunks():
        part = chunk.select(text_stats(names, distinct=False)).row(0)
        sums = [a + int(b or 0) for a, b in zip(sums, part, strict=True)]
        for j, name in enumerate(names):
            have = seen[j]
            if have is not None:
                values = chunk.get_column(name).cast(pl.String).str.strip_chars().drop_nulls()
                union = pl.concat([have, values.unique()]).unique()
                seen[j] = union if union.len() <= MAX_TEXT_CATEGORIES else None
    row: list[int] = []
    for j in range(len(names)):
        have = seen[j]
        row += [*sums[4 * j:4 * j + 4], MAX_TEXT_CATEGORIES + 1 if have is None else have.len()]
    return text_kinds(row, names)


def _histograms(chunks: Chunks, kinds: list[tuple[str, ColumnType]], edges: dict[int, list[float]]) -> dict[str, Any]:
    """Pass 2: for each edge, how many values lie below it (summed over chunks)."""
    exprs = [e for i, cuts in edges.items() for e in _below_exprs(pl.col(f"c{i}"), cuts, f"c{i}")]
    below: dict[str, Any] = {}
    if not exprs:
        return below
    for chunk in chunks():
        row = _typed_chunk(chunk, kinds).select(exprs).row(0, named=True)
        for key, value in row.items():
            below[key] = below.get(key, 0) + int(value or 0)
    return below


class _Numeric:
    """Mergeable statistics of one numeric column."""

    def __init__(self) -> None:
        self.low: Any = None
        self.high: Any = None
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.nan = self.pos_inf = self.neg_inf = 0
        self.values = _Quantiles()
        self.distinct = _Distinct()

    @staticmethod
    def exprs(key: str, kind: ColumnType) -> list[pl.Expr]:
        """One chunk's statistics of the column ``key`` (all columns go into one select)."""
        col = pl.col(key)
        finite = col.filter(col.is_finite()) if kind == "float" else col.drop_nulls()
        number = finite.cast(pl.Float64)
        zero = pl.lit(0, pl.UInt32)
        return [
            (col.is_nan().sum() if kind == "float" else zero).alias(f"{key}_nan"),
            ((col == math.inf).sum() if kind == "float" else zero).alias(f"{key}_pos_inf"),
            ((col == -math.inf).sum() if kind == "float" else zero).alias(f"{key}_neg_inf"),
            finite.min().alias(f"{key}_min"),
            finite.max().alias(f"{key}_max"),
            finite.len().alias(f"{key}_n"),
            number.mean().alias(f"{key}_mean"),
            (number - number.mean()).pow(2).sum().alias(f"{key}_m2"),
        ]

    def add(self, row: dict[str, Any], key: str, col: pl.Series, kind: ColumnType) -> None:
        """Merge one chunk: its statistics ``row`` (from :meth:`exprs`) and the column's values."""
        self.nan += int(row[f"{key}_nan"])
        self.pos_inf += int(row[f"{key}_pos_inf"])
        self.neg_inf += int(row[f"{key}_neg_inf"])
        self.distinct.add(col.drop_nulls())
        n = int(row[f"{key}_n"])
        if n == 0:
            return
        low, high = row[f"{key}_min"], row[f"{key}_max"]
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        mean, m2 = float(row[f"{key}_mean"]), float(row[f"{key}_m2"])
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total
        finite = col.filter(col.is_finite()) if kind == "float" else col.drop_nulls()
        self.values.add(finite.sort())

    def scalars(self, key: str, bins: int) -> dict[str, Any]:
        grid = [j / bins for j in range(bins + 1)]
        return {
            f"{key}_distinct": self.distinct.count(),
            f"{key}_min": self.low,
            f"{key}_max": self.high,
            f"{key}_mean": self.mean if self.n else None,
            f"{key}_std": math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else None,
            f"{key}_nan": self.nan,
            f"{key}_pos_inf": self.pos_inf,
            f"{key}_neg_inf": self.neg_inf,
            f"{key}_quantiles": self.values.quantiles(list(QUANTILES), "linear"),
            f"{key}_grid": self.values.quantiles(grid, "nearest"),
        }


class _Quantiles:
    """All values while there are few; past ``EXACT_VALUES`` a weighted summary of order statistics."""

    def __init__(self) -> None:
        self.parts: list[pl.Series] = []
        self.size = 0
        self.points: np.ndarray | None = None
        self.weights: np.ndarray | None = None

    def add(self, values: pl.Series) -> None:
        if self.points is None and self.size + values.len() <= EXACT_VALUES:
            self.parts.append(values)
            self.size += values.len()
            return
        if self.points is None:
            exact = np.concatenate([p.cast(pl.Float64).to_numpy() for p in self.parts]) if self.parts else np.zeros(0)
            self.points, self.weights = exact, np.ones(len(exact))
            self.parts = []
        assert self.weights is not None
        sample, weight = _order_statistics(values.cast(pl.Float64).to_numpy(), SKETCH_POINTS)
        self.points = np.concatenate([self.points, sample])
        self.weights = np.concatenate([self.weights, weight])
        self.size += values.len()
        if len(self.points) > EXACT_VALUES:
            self.points, self.weights = _compress(self.points, self.weights, EXACT_VALUES // 2)

    def below(self, cuts: list[float]) -> list[int] | None:
        """How many values lie below each cut, when all values are held (else None)."""
        if self.points is not None:
            return None
        values = pl.concat(self.parts).cast(pl.Float64) if self.parts else pl.Series([], dtype=pl.Float64)
        return [int((values < cut).sum()) for cut in cuts]

    def quantiles(self, levels: list[float], method: Literal["linear", "nearest"]) -> list[float | None]:
        if self.points is None:
            if not self.parts:
                return [None] * len(levels)
            series = pl.concat(self.parts)
            return [_as_float(series.quantile(q, method)) for q in levels]
        assert self.weights is not None
        order = np.argsort(self.points, kind="stable")
        values, weights = self.points[order], self.weights[order]
        ends = np.cumsum(weights)
        centers = ends - weights / 2 - 0.5
        ranks = [q * (ends[-1] - 1) for q in levels]
        if method == "linear":
            return [float(np.interp(r, centers, values)) for r in ranks]
        return [float(values[min(int(np.searchsorted(ends, round(r), side="right")), len(values) - 1)])
                for r in ranks]


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _order_statistics(values: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """``points`` equally spaced order statistics of sorted ``values``, each weighing its share (or all)."""
    n = len(values)
    if n <= points:
        return values, np.ones(n)
    index = ((np.arange(points) + 0.5) * n / points).astype(np.int64)
    return values[index], np.full(points, n / points)


def _compress(points: np.ndarray, weights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(points, kind="stable")
    values, ends = points[order], np.cumsum(weights[order])
    targets = (np.arange(size) + 0.5) * ends[-1] / size
    index = np.minimum(np.searchsorted(ends, targets), len(values) - 1)
    return values[index], np.full(size, ends[-1] / size)


class _Distinct:
    """Distinct values: an exact set of 64-bit hashes, then HyperLogLog registers once it grows large."""

    def __init__(self) -> None:
        self.hashes = np.zeros(0, dtype=np.uint64)
        self.pending: list[np.ndarray] = []
        self.waiting = 0
        self.registers: np.ndarray | None = None

    def add(self, values: pl.Series) -> None:
        hashes = values.hash(seed=0).to_numpy()
        if self.registers is not None:
            self._update(hashes)
            return
        self.pending.append(hashes)
        self.waiting += len(hashes)
        if self.waiting > max(len(self.hashes), 1 << 16):  # merge now and then: linear time overall
            self._merge()

    def _merge(self) -> None:
        self.hashes = np.unique(np.concatenate([self.hashes, *self.pending]))
        self.pending, self.waiting = [], 0
        if len(self.hashes) > EXACT_VALUES:
            self.registers = np.zeros(1 << HLL_BITS, dtype=np.uint8)
            self._update(self.hashes)
            self.hashes = np.zeros(0, dtype=np.uint64)

    def _update(self, hashes: np.ndarray) -> None:
        assert self.registers is not None
        index = (hashes >> np.uint64(64 - HLL_BITS)).astype(np.int64)
        rest = hashes << np.uint64(HLL_BITS)
        _, exponent = np.frexp(rest.astype(np.float64))  # bit length of rest (0 for 0)
        rank = np.minimum(64 - exponent + 1, 64 - HLL_BITS + 1).astype(np.uint8)
        np.maximum.at(self.registers, index, rank)

    def count(self) -> int:
        if self.registers is None:
            self._merge()
        if self.registers is None:
            return len(self.hashes)
        m = len(self.registers)
        estimate = 0.7213 / (1 + 1.079 / m) * m * m / float(np.sum(2.0 ** -self.registers.astype(np.float64)))
        zeros = int(np.count_nonzero(self.registers == 0))
        if estimate <= 2.5 * m and zeros:
            estimate = m * math.log(m / zeros)
        return round(estimate)
