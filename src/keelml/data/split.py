"""A deterministic, optionally stratified train/test split of a frame."""

from __future__ import annotations

import numpy as np
import polars as pl

from keelml.errors import DataError

MAX_STRATA = 100
"""A target with more distinct values than this (e.g. a regression target) is stratified by deciles."""
_QUANTILE_BINS = 10


def split_frame(
    df: pl.DataFrame, *, target: str, test_size: float, stratify: bool, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split ``df`` into (train, test), keeping the input row order within each part.

    The same seed always gives the same split. With ``stratify`` each target class (nulls form
    their own group) puts ``round(test_size * n_class)`` rows in test, at least one on each side
    when the class has two or more rows; a target with more than ``MAX_STRATA`` distinct values is
    stratified by its deciles instead. Without it, ``round(test_size * n)`` random rows go to test.
    """
    if not 0.0 < test_size < 1.0:
        raise DataError(
            f"test_size must be between 0 and 1, got {test_size}",
            expected="a fraction such as 0.2",
            fix="set split.test_size to a number strictly between 0 and 1",
        )
    if stratify and target not in df.columns:
        raise DataError(
            f"cannot stratify on {target!r}: it is not a column of the data",
            expected="the target column to be present",
            fix="check data.target, or set split.stratify: false",
        )
    n = df.height
    keys = pl.Series("key", np.random.default_rng(seed).random(n))
    group = _strata(df[target]) if stratify else pl.repeat(0, n, eager=True)
    frame = pl.DataFrame({"group": group, "key": keys})
    size = pl.len().over("group")
    wanted = (size.cast(pl.Float64) * test_size).round(0, mode="half_to_even").cast(pl.Int64)
    n_test = pl.when(size >= 2).then(wanted.clip(1, size - 1)).otherwise(0)
    position = pl.col("key").rank("ordinal").over("group")
    is_test = frame.select((position <= n_test).alias("is_test"))["is_test"]
    test, train = df.filter(is_test), df.filter(~is_test)
    if train.height == 0 or test.height == 0:
        empty = "test" if test.height == 0 else "train"
        raise DataError(
            f"splitting {n} row(s) with test_size {test_size} leaves the {empty} set empty",
            expected="enough rows for both a train and a test set (each class needs 2+ rows)",
            fix="add more data, change split.test_size, or give a separate data.test file",
        )
    return train, test


def _strata(target: pl.Series) -> pl.Series:
    """Group labels: the target itself, or its decile for a target with many distinct values."""
    if target.n_unique() <= MAX_STRATA:
        return target
    rank = target.rank("ordinal").cast(pl.Float64)
    bins = ((rank - 1) * _QUANTILE_BINS / max(target.len(), 1)).floor().cast(pl.Int64)
    return bins.fill_null(-1).alias("group")
