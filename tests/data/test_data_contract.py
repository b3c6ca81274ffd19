from __future__ import annotations

import polars as pl
import pytest
import yaml

from keelml.data.contract import Contract, contract_from_yaml, contract_to_yaml
from keelml.data.infer import infer_contract
from keelml.errors import DataError
from keelml.spec.data import ContractSpec

OPTIONS = ContractSpec()


@pytest.fixture(scope="module")
def adult_contract(adult_train: pl.DataFrame) -> Contract:
    return infer_contract(adult_train, target="income", options=OPTIONS, sensitive_columns=["sex", "race"])


def test_adult_inference(adult_contract: Contract, adult_train: pl.DataFrame) -> None:
    c = adult_contract
    assert c.task == "binary"
    assert c.classes == ["<=50K", ">50K"]
    assert [col.name for col in c.columns] == adult_train.columns
    age = c.column("age")
    assert (age.type, age.role, age.nullable, age.max_null_fraction) == ("integer", "feature", False, 0.0)
    assert age.min is not None and age.max is not None
    assert age.min <= 17 and age.max >= 90 and age.min == int(age.min)
    work = c.column("workclass")
    assert work.type == "category" and work.nullable
    assert work.categories is not None and "Private" in work.categories and "?" not in work.categories
    assert work.categories == sorted(work.categories)
    assert work.max_null_fraction == pytest.approx(1836 / 32_561 + OPTIONS.null_fraction_margin, abs=1e-4)
    income = c.column("income")
    assert (income.role, income.nullable, income.categories) == ("target", False, ["<=50K", ">50K"])
    assert c.column("sex").sensitive and not c.column("age").sensitive
    assert c.column("hours-per-week").type == "integer"


def test_types_roles_and_ranges_on_a_small_frame() -> None:
    n = 40
    df = pl.DataFrame({
        "id": [f"u{i}" for i in range(n)],
        "note": [f"text {i % 30}" for i in range(n)],
        "x": [str(i / 2) for i in range(n)],
        "flag": ["True", "false"] * (n // 2),
        "k": [str(i) for i in range(n)],
        "y": ["a", "b", "c", None] * (n // 4),
    })
    c = infer_contract(df, target="y", options=ContractSpec(max_categories=10, range_quantiles=(0.0, 1.0)))
    assert [(col.name, col.type, col.role) for col in c.columns] == [
        ("id", "string", "id"),
        ("note", "string", "ignore"),
        ("x", "float", "feature"),
        ("flag", "boolean", "feature"),
        ("k", "integer", "feature"),
        ("y", "category", "target"),
    ]
    assert c.task == "multiclass" and c.classes == ["a", "b", "c"]
    x = c.column("x")
    # widened by half the span on each side, but a column never seen negative keeps min >= 0
    assert (x.min, x.max) == (0.0, 19.5 + 0.5 * 19.5)
    k = c.column("k")
    assert (k.min, k.max, k.unique) == (0.0, 59.0, True)
    assert not c.column("y").nullable


def test_integer_targets_pick_classification_or_regression() -> None:
    few = pl.DataFrame({"x": ["1", "2", "3", "4"], "y": ["1", "0", "1", "0"]})
    assert infer_contract(few, target="y", options=OPTIONS).classes == ["0", "1"]
    many = pl.DataFrame({"x": list(range(50)), "y": list(range(50))})
    c = infer_contract(many, target="y", options=OPTIONS)
    y = c.column("y")
    assert (c.task, c.classes, y.min, y.categories) == ("regression", None, None, None)


def test_one_class_target_cannot_be_learned() -> None:
    df = pl.DataFrame({"x": ["1", "2"], "y": ["yes", "yes"]})
    with pytest.raises(DataError, match="one class cannot be learned"):
        infer_contract(df, target="y", options=OPTIONS)
    nulls = pl.DataFrame({"x": ["1", "2"], "y": [None, None]}, schema={"x": pl.String, "y": pl.String})
    with pytest.raises(DataError, match="only nulls"):
        infer_contract(nulls, target="y", options=OPTIONS)


def test_name_errors() -> None:
    df = pl.DataFrame({"age": ["1", "2"], "income": ["a", "b"]})
    with pytest.raises(DataError) as info:
        infer_contract(df, target="incme", options=OPTIONS)
    assert info.value.expected is not None and "age, income" in info.value.expected
    assert info.value.fix is not None and "did you mean 'income'" in info.value.fix
    with pytest.raises(DataError, match="drop_columns names 'agee'"):
        infer_contract(df, target="income", options=OPTIONS, drop_columns=["agee"])
    with pytest.raises(DataError, match="sensitive_columns names 'sexx'"):
        infer_contract(df, target="income", options=OPTIONS, sensitive_columns=["sexx"])
    with pytest.raises(DataError, match="no feature columns"):
        infer_contract(df, target="income", options=OPTIONS, drop_columns=["age"])


def test_yaml_round_trip(adult_contract: Contract) -> None:
    text = contract_to_yaml(adult_contract)
    assert text.startswith("#")
    assert "edit" in text.splitlines()[1] or "edit" in text.splitlines()[2]
    assert yaml.safe_load(text)["columns"][0]["name"] == "age"
    again = contract_from_yaml(text, "contract.yaml")
    assert again == adult_contract
    assert again.version == adult_contract.version


def test_yaml_errors_name_the_field_and_source(adult_contract: Contract) -> None:
    data = yaml.safe_load(contract_to_yaml(adult_contract))
    data["columns"][1]["type"] = "text"
    with pytest.raises(DataError) as info:
        contract_from_yaml(yaml.safe_dump(data), "my/contract.yaml")
    assert "my/contract.yaml" in info.value.what
    assert "columns.1.type" in info.value.what and "'workclass'" in info.value.what
    with pytest.raises(DataError, match="not valid YAML"):
        contract_from_yaml("a: [1, 2", "c.yaml")
    with pytest.raises(DataError, match="must be a YAML mapping"):
        contract_from_yaml("- 1\n", "c.yaml")
    data = yaml.safe_load(contract_to_yaml(adult_contract))
    data["target"] = "age"
    with pytest.raises(DataError, match="role: target"):
        contract_from_yaml(yaml.safe_dump(data), "c.yaml")


def test_columns_with_negative_values_keep_a_widened_negative_bound() -> None:
    df = pl.DataFrame({"t": [str(v) for v in range(-10, 10)], "y": ["a", "b"] * 10})
    c = infer_contract(df, target="y", options=ContractSpec(range_quantiles=(0.0, 1.0)))
    assert (c.column("t").min, c.column("t").max) == (-20.0, 19.0)  # integers round outward
