"""The profile: statistics against numpy, fixed histogram edges, categories and domains, JSON, determinism."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from keelml.data.contract import Contract
from keelml.data.infer import infer_contract
from keelml.data.profile import PROFILE_FORMAT, QUANTILES, apply_edges, profile_frame
from keelml.data.validate import validate_frame
from keelml.spec.data import ContractSpec


def _numbers(seed: int = 7, n: int = 5000) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(size=n)
    x[:40] = np.nan
    x[40] = np.inf
    x[41] = -np.inf
    values = [None if i % 50 == 0 else float(v) for i, v in enumerate(x)]
    return pl.DataFrame({"x": pl.Series(values, dtype=pl.Float64), "k": rng.integers(0, 30, size=n)})


def _column(profile: dict, name: str) -> dict:
    return next(c for c in profile["columns"] if c["name"] == name)


def test_numeric_statistics_match_numpy() -> None:
    df = _numbers()
    col = _column(profile_frame(df), "x")
    present = df["x"].drop_nulls().to_numpy()
    finite = present[np.isfinite(present)]
    assert col["type"] == "float"
    assert col["nulls"] == df["x"].null_count() == 100
    assert col["count"] == 4900 and col["null_fraction"] == pytest.approx(0.02)
    assert (col["nan"], col["pos_inf"], col["neg_inf"]) == (39, 1, 1)  # row 0 is null, not NaN
    assert col["min"] == finite.min() and col["max"] == finite.max()
    assert col["mean"] == pytest.approx(finite.mean())
    assert col["std"] == pytest.approx(finite.std(ddof=1))
    for q in QUANTILES:
        assert col["quantiles"][str(q)] == pytest.approx(np.quantile(finite, q))
    assert col["distinct"] == len(set(finite.tolist())) + 3  # NaN, +inf and -inf count once each


def test_histogram_edges_are_fixed_quantiles_and_counts_add_up() -> None:
    df = _numbers()
    col = _column(profile_frame(df, bins=10), "x")
    edges, counts = col["histogram"]["edges"], col["histogram"]["counts"]
    assert all(math.isfinite(e) for e in edges) and edges == sorted(set(edges))
    assert len(counts) == len(edges) + 1 == 10
    assert sum(counts) == col["count"] - col["nan"]  # +-inf land in the outer bins, NaN and nulls nowhere
    assert len(col["grid"]) == 11 and col["grid"][0] == col["min"] and col["grid"][-1] == col["max"]
    assert edges == col["grid"][1:-1]
    finite = df["x"].drop_nulls().drop_nans()
    expected = np.histogram(finite.to_numpy(), bins=[-np.inf, *edges, np.inf])[0].tolist()
    # numpy's last bin is closed on the right, which cannot matter for an infinite upper edge
    assert counts == expected
    assert apply_edges(df["x"], edges) == counts


def test_integer_edges_are_observed_values() -> None:
    col = _column(profile_frame(_numbers()), "k")
    assert col["type"] == "integer" and isinstance(col["min"], int) and isinstance(col["max"], int)
    assert all(float(e).is_integer() for e in col["histogram"]["edges"])
    assert sum(col["histogram"]["counts"]) == 5000 and col["distinct"] == 30


def test_apply_edges_puts_every_new_value_in_a_bin() -> None:
    edges = [0.0, 1.0, 2.0]
    new = pl.Series([-1e300, -0.5, 0.0, 0.5, 1.0, 2.0, 7.0, math.inf, -math.inf, None, math.nan])
    assert apply_edges(new, edges) == [3, 2, 1, 3]
    assert apply_edges(new, [-math.inf, *edges, math.inf]) == [3, 2, 1, 3]  # explicit outer edges are the same
    assert apply_edges(pl.Series(["0.5", " 3 ", "abc", None]), edges) == [0, 1, 0, 1]  # text is parsed
    assert apply_edges(pl.Series([1, 2, 3]), []) == [3]
    with pytest.raises(ValueError, match="strictly increasing"):
        apply_edges(new, [1.0, 0.0])


def test_categories_top_other_and_ties_are_deterministic() -> None:
    values = ["b"] * 5 + ["a"] * 5 + ["c"] * 3 + ["d"] + [None] * 2
    col = _column(profile_frame(pl.DataFrame({"s": values}), top=3), "s")
    assert col["type"] == "category"
    assert col["top"] == [{"value": "a", "count": 5}, {"value": "b", "count": 5}, {"value": "c", "count": 3}]
    assert col["other"] == 1 and col["count"] == 14 and col["nulls"] == 2 and col["distinct"] == 4
    assert "domain" not in col and "histogram" not in col


def test_contract_domain_counts_every_category_including_unseen_ones() -> None:
    df = pl.DataFrame({"color": ["red", "red", "blue", "mauve", None], "y": ["0", "1", "0", "1", "1"]})
    contract = Contract.model_validate({
        "target": "y", "task": "binary", "classes": ["0", "1"],
        "columns": [
            {"name": "color", "type": "category", "categories": ["blue", "green", "red"]},
            {"name": "y", "type": "integer", "role": "target", "categories": ["0", "1"]},
        ],
    })
    profile = profile_frame(df, contract)
    color, y = _column(profile, "color"), _column(profile, "y")
    assert color["domain"] == {"blue": 1, "green": 0, "red": 2}
    assert color["outside_domain"] == 1 and color["role"] == "feature"
    assert y["type"] == "integer" and y["role"] == "target" and y["domain"] == {"0": 2, "1": 3}
    assert profile["contract_version"] == contract.version


def test_text_columns_are_typed_without_a_contract() -> None:
    df = pl.DataFrame({
        "n": ["1", " 2", None, "30"],
        "f": ["1.5", "2", "-3e2", "4"],
        "b": ["TRUE", "false", "true", None],
        "t": ["x1", "x2", "x3", "x4"],
    })
    kinds = {c["name"]: c["type"] for c in profile_frame(df)["columns"]}
    assert kinds == {"n": "integer", "f": "float", "b": "boolean", "t": "category"}
    b = _column(profile_frame(df), "b")
    assert b["top"] == [{"value": "true", "count": 2}, {"value": "false", "count": 1}]
    many = pl.DataFrame({"id": [f"id-{i}" for i in range(150)]})
    assert profile_frame(many)["columns"][0]["type"] == "string"


def test_profile_is_strict_json_and_deterministic() -> None:
    df = _numbers().with_columns(pl.Series("s", ["u", "v"] * 2500))
    first = profile_frame(df)
    text = json.dumps(first, allow_nan=False, sort_keys=True)
    assert json.loads(text) == first
    assert json.dumps(profile_frame(df), allow_nan=False, sort_keys=True) == text
    assert first["format"] == PROFILE_FORMAT and first["rows"] == 5000
    assert [c["name"] for c in first["columns"]] == ["x", "k", "s"]
    assert first["settings"] == {"bins": 20, "top": 50, "quantiles": list(QUANTILES)}


def test_empty_and_all_null_columns() -> None:
    df = pl.DataFrame({"x": pl.Series([None, None], dtype=pl.Float64), "s": pl.Series([None, None], dtype=pl.String)})
    profile = profile_frame(df)
    x, s = profile["columns"]
    assert x["count"] == 0 and x["null_fraction"] == 1.0 and x["min"] is None and x["std"] is None
    assert x["histogram"] == {"edges": [], "counts": [0]}
    assert s["top"] == [] and s["other"] == 0
    empty = profile_frame(df.head(0))
    assert empty["rows"] == 0 and empty["columns"][0]["null_fraction"] == 0.0
    json.dumps(empty, allow_nan=False)


def test_profile_of_the_validated_adult_data(adult_train: pl.DataFrame) -> None:
    contract = infer_contract(adult_train, target="income", options=ContractSpec())
    valid = validate_frame(adult_train, contract).valid
    profile = profile_frame(valid, contract)
    assert profile["rows"] == valid.height
    age = _column(profile, "age")
    assert age["type"] == "integer" and 17 <= age["quantiles"]["0.5"] <= 60
    assert sum(age["histogram"]["counts"]) == valid.height
    workclass = _column(profile, "workclass")
    assert list(workclass["domain"]) == contract.column("workclass").categories
    assert sum(workclass["domain"].values()) == workclass["count"] and workclass["outside_domain"] == 0
    income = _column(profile, "income")
    assert income["role"] == "target" and set(income["domain"]) == {"<=50K", ">50K"}
    # a later batch on the same edges: every row lands in some bin
    later = apply_edges(valid["age"] + 50, age["histogram"]["edges"])
    assert sum(later) == valid.height and later[-1] > 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        profile_frame(pl.DataFrame({"a": [1]}), bins=0)
