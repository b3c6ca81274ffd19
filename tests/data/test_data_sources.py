from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from keelml.data.files import batch_digest, list_batch
from keelml.data.sources import REJECT_SCHEMA, file_digest, read_files, read_source, read_source_with_rejects
from keelml.errors import DataError
from keelml.spec.data import SourceSpec


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
    assert "expected 3" in message


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


def _read(tmp_path: Path, text: str | bytes, name: str = "d.csv", **csv: object) -> tuple[pl.DataFrame, pl.DataFrame]:
    path = _csv(tmp_path, text, name)
    return read_source_with_rejects(SourceSpec.model_validate({"path": name, "csv": csv}), path)


def test_wrong_field_counts_are_rejected_with_line_text_and_reason(tmp_path: Path) -> None:
    raw, rejects = _read(tmp_path, "a,b,c\n1,2,3\n4,5\n6,7,8\n9,10,11,12\n13,14,15\n")
    assert raw.rows() == [("1", "2", "3"), ("6", "7", "8"), ("13", "14", "15")]
    assert rejects.schema == REJECT_SCHEMA
    assert rejects.select("_file", "_line", "_raw", "_reason").rows() == [
        ("d.csv", 3, "4,5", "line 3 has 2 fields, expected 3"),
        ("d.csv", 5, "9,10,11,12", "line 5 has 4 fields, expected 3"),
    ]
    assert "_file" not in raw.columns


def test_broken_quoting_is_rejected_but_quoted_fields_spanning_lines_are_kept(tmp_path: Path) -> None:
    text = ('a,b,c\n1,"x,y",3\n2,"two\nlines",4\n5,b"c,6\n"ab"c,1,2\n7,"say ""hi""",9\n'
            '10,11,12\n13,14,15\n16,17,18\n19,20,21\n')
    raw, rejects = _read(tmp_path, text)
    assert raw["a"].to_list() == ["1", "2", "7", "10", "13", "16", "19"]
    assert raw["b"].to_list()[:3] == ["x,y", "two\nlines", 'say "hi"']
    assert rejects["_line"].to_list() == [5, 6]
    assert rejects["_raw"].to_list() == ['5,b"c,6', '"ab"c,1,2']
    assert all("broken quoting" in r for r in rejects["_reason"])


@pytest.mark.parametrize(("tail", "reason"), [
    ('7,"trun', "line 5 has broken quoting (a quote is opened but not closed)"),
    ("7,8", "line 5 has 2 fields, expected 3"),
])
def test_a_truncated_last_line_is_a_reject(tmp_path: Path, tail: str, reason: str) -> None:
    raw, rejects = _read(tmp_path, f"a,b,c\r\n1,2,3\r\n4,5,6\r\n\r\n{tail}")
    assert raw.rows() == [("1", "2", "3"), ("4", "5", "6")]
    assert rejects.select("_line", "_raw", "_reason").rows() == [(5, tail, reason)]


def test_an_unclosed_quote_mid_file_loses_only_its_own_line(tmp_path: Path) -> None:
    raw, rejects = _read(tmp_path, 'a,b,c\n1,2,"oops\n3,4,5\n6,7,8\n9,"ok\nfine",10\n')
    assert raw.rows() == [("3", "4", "5"), ("6", "7", "8"), ("9", "ok\nfine", "10")]
    assert rejects["_line"].to_list() == [2]


def test_headerless_files_expect_the_most_common_width_and_skip_rows_comments(tmp_path: Path) -> None:
    text = 'banner, with "quote\n# note\n1;2;3\n4;5\n# 7;8\n6;7;8\n'
    raw, rejects = _read(tmp_path, text, delimiter=";", has_header=False, skip_rows=1, comment_prefix="#")
    assert raw.rows() == [("1", "2", "3"), ("6", "7", "8")]
    assert rejects.select("_line", "_reason").rows() == [(4, "line 4 has 2 fields, expected 3")]


def test_strict_read_source_still_raises_on_rejects(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"line 2 has broken quoting .*\(1 malformed record"):
        read_source(SourceSpec(path="d.csv"), _csv(tmp_path, 'a,b\n1,"2\n3,4\n5,6\n'))


@pytest.mark.parametrize(("text", "message"), [
    ("a,b\n1,2,3\n4,5,6\n7,8\n", r"2 of 3 records are malformed \(not 2 fields separated by ',' like the header\)"),
    ("a;b;c\n1;2;3\n", None),
    ('a,b\n"1,2",3\n', None),
    ('"a,b\n1,2\n3,4\n', r"the header \(line 1\) has broken quoting"),
    ("a,b\n1,\"x\n", r"1 of 1 records are malformed"),
])
def test_files_that_mostly_do_not_parse_are_errors(tmp_path: Path, text: str, message: str | None) -> None:
    if message is None:  # well formed: a different delimiter or no header still reads, as one column or a row
        assert _read(tmp_path, text)[1].height == 0
        return
    with pytest.raises(DataError, match=message) as info:
        _read(tmp_path, text)
    assert info.value.fix is not None and "data.*.csv" in info.value.fix


def test_a_parquet_file_read_as_csv_is_an_encoding_error(tmp_path: Path) -> None:
    pl.DataFrame({"a": list(range(50))}).write_parquet(tmp_path / "d.parquet")
    with pytest.raises(DataError, match="is not valid UTF-8"):
        read_source(SourceSpec.model_validate({"path": "d.parquet", "format": "csv"}), str(tmp_path / "d.parquet"))


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-16", "utf-8-sig"])
def test_python_codecs_are_decoded_to_utf8(tmp_path: Path, encoding: str) -> None:
    text = "name,city\nJosé,Zürich\nZoë,€uro\n" if encoding != "latin-1" else "name,city\nJosé,Zürich\n"
    raw, rejects = _read(tmp_path, text.encode(encoding), encoding=encoding)
    assert raw.columns == ["name", "city"]
    assert raw.row(0) == ("José", "Zürich")
    assert rejects.height == 0


def test_a_wrong_codec_is_a_helpful_error_and_unknown_codecs_are_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        _read(tmp_path, b"a,b\nx,y\n1,2\n", encoding="utf-16")
    assert "is not valid utf-16" in info.value.what
    assert info.value.fix is not None and "latin-1" in info.value.fix
    with pytest.raises(ValueError, match="unknown encoding 'klingon'"):
        SourceSpec.model_validate({"path": "d.csv", "csv": {"encoding": "klingon"}})
    with pytest.raises(ValueError, match="not a text encoding"):
        SourceSpec.model_validate({"path": "d.csv", "csv": {"encoding": "base64"}})


def test_default_utf8_error_suggests_the_encoding_option(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        _read(tmp_path, b"a,b\ncaf\xe9,1\n")
    assert "bad byte at offset 7" in info.value.what
    assert info.value.fix is not None and "latin-1" in info.value.fix


def _batch(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


def test_a_glob_reads_batches_in_name_order_with_per_file_counts(tmp_path: Path) -> None:
    _batch(tmp_path / "batches", {"b2.csv": "a,b\n3,4\n5\n", "b1.csv": "a,b\n1,2\n", "b10.csv": "a,b\n6,7\n",
                                  "notes.txt": "not data"})
    spec = SourceSpec(path="batches/*.csv")
    raw, rejects, summary = read_files(spec, str(tmp_path / "batches" / "*.csv"))
    assert raw.columns == ["a", "b"]
    assert raw.rows() == [("1", "2"), ("6", "7"), ("3", "4")]  # b1, b10, b2: sorted by name
    assert rejects.select("_file", "_line").rows() == [("b2.csv", 3)]
    assert summary == {"rows": 3, "rejected": 1, "files": [
        {"name": "b1.csv", "rows": 1, "rejected": 0}, {"name": "b10.csv", "rows": 1, "rejected": 0},
        {"name": "b2.csv", "rows": 1, "rejected": 1}]}


def test_a_directory_reads_its_files_and_skips_hidden_ones(tmp_path: Path) -> None:
    _batch(tmp_path / "in", {"1.csv": "a\nx\n", "2.csv": "a\ny\n", ".tmp.csv": "a\nz\n", "_SUCCESS": ""})
    (tmp_path / "in" / "sub").mkdir()
    assert read_source(SourceSpec(path="in"), str(tmp_path / "in"))["a"].to_list() == ["x", "y"]
    pl.DataFrame({"n": [1]}).write_parquet(tmp_path / "pq" / "p1.parquet", mkdir=True)
    pl.DataFrame({"n": [2.5]}).write_parquet(tmp_path / "pq" / "p2.parquet")
    assert read_source(SourceSpec(path="pq"), str(tmp_path / "pq"))["n"].to_list() == [1.0, 2.5]


def test_batch_digest_follows_names_and_contents(tmp_path: Path) -> None:
    _batch(tmp_path / "b", {"1.csv": "a\nx\n", "2.csv": "a\ny\n"})
    first = batch_digest(list_batch(str(tmp_path / "b")))
    assert first == batch_digest(list_batch(str(tmp_path / "b" / "*.csv")))
    (tmp_path / "b" / "2.csv").rename(tmp_path / "b" / "3.csv")
    renamed = batch_digest(list_batch(str(tmp_path / "b")))
    (tmp_path / "b" / "3.csv").write_text("a\nz\n")
    assert len({first, renamed, batch_digest(list_batch(str(tmp_path / "b")))}) == 3


def test_batch_errors_name_the_pattern_and_the_odd_file(tmp_path: Path) -> None:
    pattern = str(tmp_path / "none" / "*.csv")
    with pytest.raises(DataError, match=r"no data files match .*none/\*\.csv"):
        read_source(SourceSpec(path="none/*.csv"), pattern)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no data files match"):
        list_batch(str(tmp_path / "empty"))
    _batch(tmp_path / "b", {"1.csv": "a,b\n1,2\n", "2.csv": "a,c\n1,2\n"})
    with pytest.raises(DataError, match=r"batch file 2\.csv has the columns \['a', 'c'\], but 1\.csv has"):
        read_source(SourceSpec(path="b"), str(tmp_path / "b"))


def test_fsspec_url_globs(tmp_path: Path) -> None:
    _batch(tmp_path / "b", {"1.csv": "a\nx\n", "2.csv": "a\ny\n"})
    files = list_batch(f"file://{tmp_path}/b/*.csv")
    assert [name for name, _ in files] == ["1.csv", "2.csv"]
    assert read_source(SourceSpec(path="b/*.csv"), files)["a"].to_list() == ["x", "y"]


def test_csv_reading_holds_about_two_copies_of_the_file(tmp_path: Path) -> None:
    import tracemalloc

    row = "1,some text here,3.25,category_a,more words,42\n"
    text = "a,b,c,d,e,f\n" + row * 40_000 + "1,2\n"
    path = _csv(tmp_path, text)
    tracemalloc.start()
    raw, rejects = read_source_with_rejects(SourceSpec(path="d.csv"), path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert raw.height == 40_000 and rejects.height == 1
    assert peak < 2.5 * len(text)  # Python-side allocations: the bytes and one derived copy
