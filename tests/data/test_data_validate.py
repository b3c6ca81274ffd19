from __future__ import annotations

import json

import polars as pl
import pytest

from keelml.data.contract import ColumnContract, Contract
from keelml.data.infer import infer_contract
from keelml.data.validate import validate_frame
from keelml.errors import DataError
from keelml.spec.data import ContractSpec


def _contract() -> Contract:
    return Contract(
        target="y",
        task="binary",
        classes=["no", "yes"],
        columns=[
            ColumnContract(name="age", type="integer", nullable=False, max_null_fraction=0.0, min=0, max=120),
            ColumnContract(name="score", type="float", min=0.0, max=1.0),
            ColumnContract(name="color", type="category", categories=["blue", "red"]),
            ColumnContract(name="ok", type="boolean"),
            ColumnContract(name="note", type="string", role="ignore"),
            ColumnContract(name="uid", type="string", role="id"),
            ColumnContract(name="y", type="category", role="target", nullable=False,
                           max_null_fraction=0.0, categories=["no", "yes"]),
        ],
    )


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "age": ["30", "abc", None, "200", "41", "5"],
            "score": ["0.5", "0.1", "0.2", "0.3", "nan", "0.9"],
            "color": ["red", "blue", "green", "red", None, "blue"],
            "ok": ["TRUE", "false", "x", "true", None, "False"],
            "note": ["a", "b", "c", "d", "e", "f"],
            "uid": ["1", "2", "3", "4", "5", "6"],
            "y": ["yes", "no", "no", None, "maybe", "no"],
            "extra": ["q"] * 6,
        },
        schema_overrides={"age": pl.String},
    )


def test_quarantine_reasons_and_invariant() -> None:
    df = _frame()
    result = validate_frame(df, _contract())
    report = result.report
    assert report["rows_in"] == 6
    assert report["rows_valid"] + report["rows_quarantined"] == report["rows_in"]
    assert result.valid.height == report["rows_valid"] == 2
    assert result.quarantine.height == report["rows_quarantined"] == 4
    quarantine = result.quarantine
    reasons = dict(zip(quarantine["_row"].to_list(), quarantine["_reason"].to_list(), strict=True))
    assert reasons[1] == "age: 'abc' is not an integer"
    assert reasons[2] == (
        "age: missing, but the column is not nullable; color: 'green' is not a known category; "
        "ok: 'x' is not true or false"
    )
    assert reasons[3] == "age: 200 is outside the range [0, 120]; y: the target is missing"
    assert reasons[4] == "score: 'nan' is not a finite number; y: 'maybe' is not a known class"
    assert result.quarantine.columns == [*df.columns, "_row", "_reason"]
    assert result.quarantine.row(0)[:3] == ("abc", "0.1", "blue")
    assert all(dtype == pl.String for dtype in result.quarantine.drop("_row").dtypes)
    assert result.quarantine["_row"].dtype in (pl.Int64, pl.UInt32)


def test_valid_rows_are_typed_in_contract_order() -> None:
    result = validate_frame(_frame(), _contract())
    assert result.valid.schema == pl.Schema(
        {"age": pl.Int64, "score": pl.Float64, "color": pl.String, "ok": pl.Boolean, "uid": pl.String,
         "y": pl.String}
    )
    assert result.valid.rows() == [(30, 0.5, "red", True, "1", "yes"), (5, 0.9, "blue", False, "6", "no")]


def test_report_is_json_with_counts_and_null_fractions() -> None:
    report = validate_frame(_frame(), _contract()).report
    json.dumps(report)
    assert report["extra_columns"] == ["extra"]
    assert report["columns"]["age"]["violations"] == {"type": 1, "non_finite": 0, "null": 1, "domain": 0, "range": 1}
    assert report["columns"]["score"]["violations"]["non_finite"] == 1
    assert report["columns"]["color"]["violations"]["domain"] == 1
    age = report["columns"]["age"]
    assert age["null_fraction"] == pytest.approx(1 / 6) and age["exceeded"] is True
    assert report["columns"]["color"]["exceeded"] is False
    assert "note" not in report["columns"]


def test_missing_columns() -> None:
    df = _frame().drop("uid", "note")
    assert "uid" not in validate_frame(df, _contract()).valid.columns
    with pytest.raises(DataError) as info:
        validate_frame(df.drop("score"), _contract())
    assert "'score'" in info.value.what
    scoring = validate_frame(df.drop("y"), _contract(), require_target=False)
    assert "y" not in scoring.valid.columns
    with pytest.raises(DataError, match="'y'"):
        validate_frame(df.drop("y"), _contract())


def test_typed_input_is_checked_too() -> None:
    contract = _contract()
    df = pl.DataFrame({
        "age": [1.0, 2.5, 3.0], "score": [0.1, 0.2, 2.0], "color": ["red"] * 3,
        "ok": [True, False, None], "y": ["no", "yes", "no"],
    })
    result = validate_frame(df, contract)
    assert result.valid["age"].to_list() == [1]
    assert result.quarantine["_reason"].to_list() == [
        "age: '2.5' is not an integer", "score: 2.0 is outside the range [0, 1]",
    ]


def test_adult_test_against_train_contract(adult_train: pl.DataFrame, adult_test: pl.DataFrame) -> None:
    contract = infer_contract(adult_train, target="income", options=ContractSpec())
    result = validate_frame(adult_test, contract)
    report = result.report
    assert report["rows_in"] == 16_281
    assert report["rows_valid"] + report["rows_quarantined"] == 16_281
    assert report["rows_quarantined"] < 100
    assert result.valid["income"].unique().sort().to_list() == ["<=50K", ">50K"]
    assert result.valid["age"].dtype == pl.Int64
    assert result.valid["workclass"].null_count() > 0
    assert not report["columns"]["workclass"]["exceeded"]
