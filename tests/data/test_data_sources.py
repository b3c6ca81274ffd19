from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from keelml.data.sources import file_digest, read_source
from keelml.errors import DataError
from keelml.spec import SourceSpec


def _csv(tmp_path: Path, text: str | bytes, name: str = "d.csv") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def test_adult_train_is_read_cleanly(adult_train: pl.DataFrame, adult_columns: list[str]) -> None:
    assert adult_train.shape == (32_561, 15)
    assert adult_train.columns == adult_columns
    assert all(dtype == pl.String for dtype in adult_train.dtypes)
    assert adult_train.row(0)[:3] == ("39", "State-gov", "77516")
    leading = adult_train.select(pl.any_horizontal(pl.all().str.starts_with(" ")).sum()).item()
    assert leading == 0
    assert adult_train.filter(pl.all_horizontal(pl.all() == "?")).height == 0
    assert (adult_train["workclass"] == "?").sum() == 0
    assert adult_train["workclass"].null_count() == 1836
    assert set(adult_train["income"].unique()) == {"<=50K", ">50K"}


def test_adult_test_labels_are_rewritten(adult_test: pl.DataFrame) -> None:
    assert adult_test.shape == (16_281, 15)
    assert adult_test.row(0)[0] == "25"
    assert set(adult_test["income"].unique()) == {"<=50K", ">50K"}
    assert adult_test["income"].value_counts().sort("income")["count"].to_list() == [12_435, 3_846]


def test_comment_prefix_also_skips_the_adult_test_banner(adult_source: Callable[..., SourceSpec],
                                                         adult_dir: Path) -> None:
    df = read_source(adult_source("adult.test", comment_prefix="|"), str(adult_dir / "adult.test"))
    assert df.height == 16_281


def test_header_whitespace_nulls_and_blank_lines(tmp_path: Path) -> None:
    path = _csv(tmp_path, "a , b,c\n 1 , x ,NA\n\n2,,y\n , , \n")
    df = read_source(SourceSpec(path="d.csv"), path)
    assert df.columns == ["a", "b", "c"]
    assert df.rows() == [("1", "x", None), ("2", None, "y")]


def test_columns_rename_a_header_and_replace_maps_values(tmp_path: Path) -> None:
    path = _csv(tmp_path, "x;y\n1;no\n2;yes\n")
    csv = {"delimiter": ";", "columns": ["id", "flag"]}
    spec = SourceSpec.model_validate({"path": "d.csv", "csv": csv, "replace": {"flag": {"no": "n"}}})
    df = read_source(spec, path)
    assert df.columns == ["id", "flag"]
    assert df["flag"].to_list() == ["n", "yes"]


def test_quoted_delimiters_are_not_field_count_errors(tmp_path: Path) -> None:
    path = _csv(tmp_path, 'a,b\n"x, y",1\nz,2\n')
    assert read_source(SourceSpec(path="d.csv"), path)["a"].to_list() == ["x, y", "z"]


@pytest.mark.parametrize("row", ["4,5", "4,5,6,7"])
def test_wrong_field_count_names_file_line_and_expected_columns(tmp_path: Path, row: str) -> None:
    path = _csv(tmp_path, f"a,b,c\n1,2,3\n{row}\n7,8,9\n")
    with pytest.raises(DataError) as info:
        read_source(SourceSpec(path="d.csv"), path)
    message = str(info.value)
    assert path in message
    assert "line 3" in message
    assert "3 columns" in message


def test_missing_file_message_names_path_and_spec_key(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.csv")
    with pytest.raises(DataError) as info:
        read_source(SourceSpec(path="nope.csv"), missing)
    assert missing in info.value.what
    assert info.value.fix is not None and "data.train.path" in info.value.fix
    with pytest.raises(DataError, match="not found"):
        file_digest(missing)


def test_columns_count_mismatch(tmp_path: Path) -> None:
    path = _csv(tmp_path, "1,2,3\n4,5,6\n")
    spec = SourceSpec.model_validate({"path": "d.csv", "csv": {"has_header": False, "columns": ["a", "b"]}})
    with pytest.raises(DataError, match=r"has 3 columns but data\.\*\.csv\.columns lists 2"):
        read_source(spec, path)


def test_replace_unknown_column_suggests_a_name(tmp_path: Path) -> None:
    path = _csv(tmp_path, "income,age\n>50K.,3\n")
    spec = SourceSpec.model_validate({"path": "d.csv", "replace": {"incom": {"a": "b"}}})
    with pytest.raises(DataError) as info:
        read_source(spec, path)
    assert "'incom'" in info.value.what
    assert info.value.fix is not None and "did you mean 'income'" in info.value.fix


@pytest.mark.parametrize("text", ["", "\n\n", "a,b\n", "a,b\n , \n"])
def test_empty_inputs_are_errors(tmp_path: Path, text: str) -> None:
    with pytest.raises(DataError, match=r"empty|no data"):
        read_source(SourceSpec(path="d.csv"), _csv(tmp_path, text))


def test_bad_encoding_and_lossy_option(tmp_path: Path) -> None:
    path = _csv(tmp_path, b"a,b\ncaf\xe9,1\n")
    with pytest.raises(DataError) as info:
        read_source(SourceSpec(path="d.csv"), path)
    assert "UTF-8" in info.value.what
    assert info.value.fix is not None and "utf8-lossy" in info.value.fix
    lossy = SourceSpec.model_validate({"path": "d.csv", "csv": {"encoding": "utf8-lossy"}})
    assert read_source(lossy, path)["a"].to_list() == ["caf\ufffd"]


def test_parquet_and_jsonl_are_read_typed_with_replace(tmp_path: Path) -> None:
    frame = pl.DataFrame({"n": [1, 2, 3], "s": ["a", "b", "a"]})
    frame.write_parquet(tmp_path / "d.parquet")
    spec = SourceSpec.model_validate({"path": "d.parquet", "replace": {"n": {"3": "30"}, "s": {"a": "z"}}})
    df = read_source(spec, str(tmp_path / "d.parquet"))
    assert df.schema == pl.Schema({"n": pl.Int64, "s": pl.String})
    assert df.rows() == [(1, "z"), (2, "b"), (30, "z")]
    buffer = io.BytesIO()
    frame.write_ndjson(buffer)
    path = _csv(tmp_path, buffer.getvalue(), "d.jsonl")
    text_spec = SourceSpec.model_validate({"path": "d.jsonl", "replace": {"n": {"1": "one"}}})
    df = read_source(text_spec, path)
    assert df["n"].to_list() == ["one", "2", "3"]


def test_corrupt_parquet_is_a_data_error(tmp_path: Path) -> None:
    path = _csv(tmp_path, b"PAR1 definitely not parquet", "d.parquet")
    with pytest.raises(DataError, match="could not be read as Parquet"):
        read_source(SourceSpec(path="d.parquet"), path)


def test_fsspec_url_and_digest(tmp_path: Path) -> None:
    path = _csv(tmp_path, "a,b\n1,2\n")
    assert read_source(SourceSpec(path="d.csv"), f"file://{path}").rows() == [("1", "2")]
    assert file_digest(path) == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert file_digest(f"file://{path}") == file_digest(path)
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 9000)
    assert file_digest(str(big)) == hashlib.sha256(big.read_bytes()).hexdigest()
