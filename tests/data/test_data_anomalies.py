"""Structured anomalies, dataset-level rules, duplicates, NaN/inf, PII and datetime columns."""

from __future__ import annotations

import polars as pl
import pytest

from keelml.data.anomalies import enforce
from keelml.data.contract import ColumnContract, Contract, contract_from_yaml, contract_to_yaml
from keelml.data.infer import infer_contract
from keelml.data.pii import detect_pii, hash_value
from keelml.data.validate import validate_frame
from keelml.errors import DataError
from keelml.spec.data import ContractSpec, ValidationSpec

KEY = b"k" * 32


def _contract(**changes: object) -> Contract:
    cols = [
        ColumnContract(name="x", type="float", min=0.0, max=10.0, max_null_fraction=0.2),
        ColumnContract(name="n", type="integer", min=0, max=100, nullable=False, max_null_fraction=0.0),
        ColumnContract(name="c", type="category", categories=["a", "b"], max_null_fraction=0.5),
        ColumnContract(name="y", type="category", role="target", nullable=False, max_null_fraction=0.0,
                       categories=["no", "yes"]),
    ]
    return Contract(target="y", task="binary", classes=["no", "yes"], columns=cols, **changes)  # type: ignore[arg-type]


def _frame(rows: int = 20) -> pl.DataFrame:
    return pl.DataFrame({
        "x": [float(i % 10) for i in range(rows)],
        "n": list(range(rows)),
        "c": ["a", "b"] * (rows // 2),
        "y": ["no", "yes"] * (rows // 2),
    })


def _kinds(report: dict[str, object]) -> dict[tuple[object, object], dict[str, object]]:
    return {(a["column"], a["kind"]): a for a in report["anomalies"]}  # type: ignore[index, union-attr]


def test_nan_and_inf_are_their_own_anomaly_with_examples() -> None:
    df = _frame().with_columns(x=pl.Series([float("nan"), float("inf"), -float("inf")] + [1.0] * 17))
    result = validate_frame(df, _contract())
    anomaly = _kinds(result.report)[("x", "non_finite")]
    assert anomaly["count"] == 3 and anomaly["level"] == "row" and not anomaly["fatal"]
    assert anomaly["examples"] == ["NaN", "inf", "-inf"]
    assert anomaly["expected"] == "a finite number (not NaN or infinity)"
    assert result.report["columns"]["x"]["violations"]["type"] == 0
    assert result.quarantine["_reason"].to_list()[0] == "x: 'NaN' is not a finite number"
    assert result.valid.height + result.quarantine.height == df.height


def test_text_nan_inf_and_garbage_are_told_apart() -> None:
    df = _frame(4).cast(pl.String).with_columns(x=pl.Series(["nan", "inf", "abc", "2.5"]))
    report = validate_frame(df, _contract()).report
    assert report["columns"]["x"]["violations"]["non_finite"] == 2
    assert report["columns"]["x"]["violations"]["type"] == 1
    kinds = _kinds(report)
    assert kinds[("x", "type")]["examples"] == ["abc"] and kinds[("x", "type")]["expected"] == "a finite number"


def test_missing_label_out_of_domain_and_out_of_range() -> None:
    df = _frame(6).with_columns(y=pl.Series(["no", None, "maybe", "yes", "no", "yes"]),
                                n=pl.Series([1, 2, 3, 500, 5, 6]), c=pl.Series(["a", "b", "z", "a", "b", "a"]))
    kinds = _kinds(validate_frame(df, _contract()).report)
    assert kinds[("y", "missing_label")]["count"] == 1
    assert kinds[("y", "domain")]["examples"] == ["maybe"]
    assert kinds[("c", "domain")]["expected"] == "one of: a, b"
    assert kinds[("n", "range")]["examples"] == ["500"] and kinds[("n", "range")]["expected"] == "a value in [0, 100]"


def test_null_fraction_over_the_limit_stops_the_run_unless_warned() -> None:
    df = _frame().with_columns(x=pl.when(pl.col("n") < 10).then(None).otherwise(pl.col("x")))
    result = validate_frame(df, _contract())
    anomaly = _kinds(result.report)[("x", "null_fraction")]
    assert anomaly["fatal"] and anomaly["level"] == "dataset" and anomaly["observed"] == "50.00% nulls"
    with pytest.raises(DataError) as info:
        enforce(result.report, "train")
    assert "column 'x' has 50.00% nulls" in info.value.what
    assert "validation.null_fraction: warn" in (info.value.fix or "")
    relaxed = validate_frame(df, _contract(), options=ValidationSpec(null_fraction="warn"))
    enforce(relaxed.report, "train")  # a warning only
    assert not _kinds(relaxed.report)[("x", "null_fraction")]["fatal"]


def test_too_many_quarantined_rows_stop_the_run_naming_the_cause() -> None:
    df = _frame().with_columns(c=pl.Series(["z"] * 5 + ["a"] * 15))
    result = validate_frame(df, _contract(), options=ValidationSpec(max_quarantine_fraction=0.1))
    with pytest.raises(DataError) as info:
        enforce(result.report, "test")
    assert "5 of 20 rows broke the contract" in info.value.what.replace("25.00% quarantined", "5")
    assert "c: domain x5" in info.value.what
    assert "validation.max_quarantine_fraction" in (info.value.fix or "")
    enforce(validate_frame(df, _contract(), options=ValidationSpec(max_quarantine_fraction=0.3)).report, "test")


def test_extra_columns_warn_by_default_and_can_be_fatal() -> None:
    df = _frame().with_columns(surprise=pl.lit(1))
    kinds = _kinds(validate_frame(df, _contract()).report)
    assert not kinds[(None, "extra_columns")]["fatal"]
    strict = validate_frame(df, _contract(), options=ValidationSpec(extra_columns="error"))
    with pytest.raises(DataError, match="surprise"):
        enforce(strict.report, "train")


def test_duplicates_are_quarantined_with_the_row_they_repeat() -> None:
    df = pl.concat([_frame(4), _frame(4).head(2)])
    plain = validate_frame(df, _contract(), dedupe=True)
    assert plain.report["rows_quarantined"] == 0  # deduplicate: none by default
    result = validate_frame(df, _contract(), options=ValidationSpec(deduplicate="exact"), dedupe=True)
    assert result.report["rows_quarantined"] == result.report["duplicates_quarantined"] == 2
    assert result.quarantine["_reason"].to_list() == ["duplicate of row 0", "duplicate of row 1"]
    assert result.valid.height == 4
    by_key = validate_frame(df.with_columns(x=pl.Series([1.0, 2.0, 3.0, 4.0, 9.0, 9.0])), _contract(),
                            options=ValidationSpec(deduplicate="keys", key_columns=["n"]), dedupe=True)
    assert by_key.report["rows_quarantined"] == 2
    assert by_key.quarantine["_reason"][0] == "same key (n) as row 0"
    with pytest.raises(DataError, match="validation.key_columns"):
        validate_frame(df, _contract(), options=ValidationSpec(deduplicate="keys", key_columns=["nope"]),
                       dedupe=True)


@pytest.mark.parametrize(("values", "kind"), [
    (["ann@example.org", "bob.smith@mail.co.uk", "x_y@corp.com"], "email"),
    (["+44 20 7946 0958", "(555) 123-4567", "555-987-6543"], "phone"),
    (["123-45-6789", "987-65-4321", "111-22-3333"], "national_id"),
    (["4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009"], "card_number"),
    ([f"{first} {last}" for first in ("Mary", "John A.", "Li", "Ana") for last in ("Smith", "Doe", "Wei")],
     "person_name"),
    (["red", "green", "blue"], None),
    (["12.5", "13", "7"], None),
])
def test_pii_detection(values: list[str], kind: str | None) -> None:
    assert detect_pii(pl.Series("v", values)) == kind


def test_pii_columns_are_flagged_dropped_or_hashed_and_never_in_the_contract() -> None:
    rows = 40
    df = pl.DataFrame({
        "email": [f"user{i}@example.com" for i in range(rows)],
        "full_name": [f"Person{i} Family{i}" for i in range(rows)],
        "age": [str(20 + i % 30) for i in range(rows)],
        "y": ["no", "yes"] * (rows // 2),
    })
    contract = infer_contract(df, target="y", options=ContractSpec(pii={"full_name": "hash"}))
    email, name = contract.column("email"), contract.column("full_name")
    assert (email.pii, email.pii_action, email.role) == ("email", "drop", "id")
    assert name.pii_action == "hash" and name.role == "id" and name.categories is None
    text = contract_to_yaml(contract)
    assert "user1@example.com" not in text and "Person1" not in text
    assert contract_from_yaml(text, "c.yaml") == contract
    result = validate_frame(df.with_columns(age=pl.Series(["x"] + ["30"] * (rows - 1))), contract, pii_key=KEY)
    assert "email" not in result.valid.columns and "email" not in result.quarantine.columns
    assert result.valid["full_name"][0] == hash_value("Person1 Family1", KEY)
    assert result.quarantine["full_name"][0] == hash_value("Person0 Family0", KEY)
    stored = str(result.valid.rows()) + str(result.quarantine.rows())
    assert "@example.com" not in stored and "Family" not in stored


def test_a_pii_feature_must_be_kept_explicitly() -> None:
    bad = _contract().columns[0].model_copy(update={"pii": "declared", "pii_action": "drop"})
    contract = _contract().model_copy(update={"columns": [bad, *_contract().columns[1:]]})
    with pytest.raises(DataError, match="holds personal data"):
        contract_from_yaml(contract_to_yaml(contract), "c.yaml")


def test_datetime_columns_become_timestamps_checked_by_format() -> None:
    df = pl.DataFrame({"when": ["2024-01-0" + str(1 + i % 9) for i in range(20)], "x": [1.0] * 20,
                       "y": ["a", "b"] * 10})
    contract = infer_contract(df, target="y", options=ContractSpec())
    when = contract.column("when")
    assert (when.type, when.role, when.format) == ("datetime", "timestamp", "%Y-%m-%d")
    result = validate_frame(df.with_columns(when=pl.Series(["not a date", *df["when"].to_list()[1:]])), contract)
    assert result.valid["when"].dtype == pl.Datetime("us")
    assert result.quarantine["_reason"].to_list() == ["when: 'not a date' is not a date/time"]


def test_accepted_plus_quarantined_is_always_the_input() -> None:
    df = _frame(200).with_columns(
        x=pl.when(pl.col("n") % 7 == 0).then(float("nan")).otherwise(pl.col("x")),
        c=pl.when(pl.col("n") % 11 == 0).then(pl.lit("zz")).otherwise(pl.col("c")),
    )
    df = pl.concat([df, df.head(13)])
    result = validate_frame(df, _contract(), options=ValidationSpec(deduplicate="exact"), dedupe=True)
    report = result.report
    assert report["rows_valid"] + report["rows_quarantined"] == df.height == 213
    assert result.quarantine["_row"].n_unique() == report["rows_quarantined"]


@pytest.mark.parametrize("values", [["77516", "83311", "215646", "2174", "0"], ["12", "13", "40"],
                                    ["1234567", "7654321", "5550000"]])
def test_plain_numbers_are_not_phone_numbers(values: list[str]) -> None:
    assert detect_pii(pl.Series("fnlwgt", values)) is None
    assert detect_pii(pl.Series("phone", ["5550001", "5550002", "5550003"])) == "phone"


def test_the_adult_data_has_no_personal_data_columns(adult_train: pl.DataFrame) -> None:
    contract = infer_contract(adult_train, target="income", options=ContractSpec())
    assert [c.name for c in contract.columns if c.pii] == []
    assert all(c.role in ("feature", "target") for c in contract.columns)
