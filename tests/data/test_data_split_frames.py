from __future__ import annotations

import polars as pl
import pytest

from keelml.data.frames import decode_table, encode_table
from keelml.data.split import split_frame
from keelml.errors import DataError, IntegrityError


def _labelled() -> pl.DataFrame:
    return pl.DataFrame({"x": list(range(103)), "y": ["a"] * 80 + ["b"] * 20 + ["c"] * 3})


def test_split_is_deterministic_and_partitions_rows() -> None:
    df = _labelled()
    train, test = split_frame(df, target="y", test_size=0.2, stratify=True, seed=7)
    again = split_frame(df, target="y", test_size=0.2, stratify=True, seed=7)
    assert train.equals(again[0]) and test.equals(again[1])
    other = split_frame(df, target="y", test_size=0.2, stratify=True, seed=8)
    assert not test.equals(other[1])
    assert sorted(train["x"].to_list() + test["x"].to_list()) == list(range(103))
    assert train["x"].is_sorted() and test["x"].is_sorted()


def test_split_stratifies_per_class() -> None:
    _, test = split_frame(_labelled(), target="y", test_size=0.2, stratify=True, seed=1)
    counts = dict(test["y"].value_counts().iter_rows())
    assert counts == {"a": 16, "b": 4, "c": 1}


def test_unstratified_split_size() -> None:
    train, test = split_frame(_labelled(), target="y", test_size=0.25, stratify=False, seed=1)
    assert (train.height, test.height) == (77, 26)


def test_split_errors_when_a_side_is_empty() -> None:
    singletons = pl.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    with pytest.raises(DataError, match="test set empty"):
        split_frame(singletons, target="y", test_size=0.2, stratify=True, seed=0)
    with pytest.raises(DataError, match="empty"):
        split_frame(singletons.head(1), target="y", test_size=0.5, stratify=False, seed=0)


def test_table_codec_round_trip_and_determinism() -> None:
    df = pl.DataFrame({
        "i": [1, None, 3], "f": [0.5, 1.5, None], "s": ["a", None, "c"], "b": [True, False, None],
    })
    data = encode_table(df)
    assert data[:4] == b"PAR1"
    assert encode_table(df) == data
    assert encode_table(pl.concat([df.head(1), df.tail(2)], rechunk=False)) == data
    assert decode_table(data).equals(df)
    assert decode_table(data).schema == df.schema
    with pytest.raises(IntegrityError):
        decode_table(b"not parquet")
