"""`keel contract infer`, `keel validate` and `keel profile` on small real files, through the real entry point."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from keelml.cli.main import main
from keelml.data.contract import contract_from_yaml

ROWS = "age,color,income,label\n30,red,1000.5,yes\n41,blue,2000,no\n52,red,,yes\n28,blue,1500,no\n"
HOSTILE_NAME = "<script>alert('x')</script>"
HOSTILE_VALUE = "\"><img src=x onerror=alert(1)></style>"


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def keel(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run `keel ARGS` in process (the real main(): error formatting and exit codes included)."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def _user_error(result: Result, *fragments: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    assert "Traceback" not in result.err and "expected:" in result.err and "fix:" in result.err
    for fragment in fragments:
        assert fragment in result.err, result.err


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    path.write_text(ROWS)
    return path


@pytest.fixture
def contract(tmp_path: Path, data: Path, keel) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / "contract.yaml"
    result = keel("contract", "infer", str(data), "--target", "label", "-o", str(path))
    assert result.code == 0, result.err
    return path


def test_contract_infer_to_stdout_and_to_a_file(data: Path, contract: Path, keel) -> None:  # type: ignore[no-untyped-def]
    shown = keel("contract", "infer", str(data), "--target", "label")
    assert shown.code == 0 and shown.out.startswith("# keelml data contract")
    parsed = contract_from_yaml(shown.out, source="stdout")
    assert parsed.target == "label" and parsed.task == "binary" and parsed.classes == ["no", "yes"]
    assert parsed.column("age").type == "integer" and parsed.column("color").categories == ["blue", "red"]
    assert contract_from_yaml(contract.read_text(), source="file") == parsed


def test_contract_infer_errors(data: Path, keel) -> None:  # type: ignore[no-untyped-def]
    _user_error(keel("contract", "infer", str(data)), "no target column given", "label")
    _user_error(keel("contract", "infer", str(data), "--target", "lable"), "'lable' is not in",
                "did you mean 'label'?")
    _user_error(keel("contract", "infer", str(data.parent / "nope.csv"), "--target", "label"),
                "data file not found", "nope.csv")


def test_validate_counts_reasons_and_strict(tmp_path: Path, contract: Path, keel) -> None:  # type: ignore[no-untyped-def]
    batch = tmp_path / "batch.csv"
    batch.write_text("age,color,income,label\n33,red,1000,no\nold,red,1200,yes\n35,green,1300,no\n36,blue,1400,maybe\n")
    result = keel("validate", str(batch), "--contract", str(contract))
    assert result.code == 0, result.err
    assert "4 rows: 1 accepted, 3 quarantined" in result.out
    assert "age: 'old' is not an integer" in result.out and "'green' is not a known category" in result.out
    strict = keel("validate", str(batch), "--contract", str(contract), "--strict", "--json")
    assert strict.code == 1
    outcome = json.loads(strict.out)
    assert outcome["rows_in"] == outcome["rows_accepted"] + outcome["rows_quarantined"] == 4
    assert outcome["columns"]["color"]["violations"]["domain"] == 1
    assert outcome["columns"]["label"]["violations"]["domain"] == 1
    assert [e["row"] for e in outcome["examples"]] == [1, 2, 3]
    passing = keel("validate", str(batch), "--contract", str(contract), "--strict", "--format", "csv")
    assert passing.code == 1
    good = tmp_path / "good.csv"
    good.write_text("age,color,income,label\n33,red,1000,no\n")
    assert keel("validate", str(good), "--contract", str(contract), "--strict").code == 0


def test_validate_writes_the_quarantine_and_accepts_data_without_target(tmp_path: Path, contract: Path,
                                                                       keel) -> None:  # type: ignore[no-untyped-def]
    batch = tmp_path / "scoring.csv"
    batch.write_text("age,color,income\n33,red,1000\n-5,red,1200\n")
    out = tmp_path / "q" / "quarantine.parquet"
    result = keel("validate", str(batch), "--contract", str(contract), "--quarantine", str(out), "--strict")
    assert result.code == 1 and "1 accepted, 1 quarantined" in result.out
    rows = pl.read_parquet(out)
    assert rows["_row"].to_list() == [1] and "age: -5 is outside the range" in rows["_reason"][0]
    as_csv = tmp_path / "quarantine.csv"
    assert keel("validate", str(batch), "--contract", str(contract), "--quarantine", str(as_csv)).code == 0
    assert pl.read_csv(as_csv)["_row"].to_list() == [1]
    _user_error(keel("validate", str(batch), "--contract", str(contract), "--quarantine", str(tmp_path / "q.txt")),
                "unknown file type '.txt'", ".parquet")


def test_validate_input_errors(data: Path, contract: Path, keel) -> None:  # type: ignore[no-untyped-def]
    _user_error(keel("validate", str(data)), "no contract given", "keel contract infer")
    _user_error(keel("validate", str(data), "--contract", str(data.parent / "none.yaml")),
                "contract file not found")
    broken = data.parent / "broken.yaml"
    broken.write_text("target: label\ncolumns: 3\n")
    _user_error(keel("validate", str(data), "--contract", str(broken)), "broken.yaml")
    _user_error(keel("validate", str(data), "--contract", str(contract), "--delimiter", ";;"),
                "invalid reading option --delimiter")
    _user_error(keel("validate", str(data), "--contract", str(contract), "--format", "xls"),
                "invalid reading option --format")
    other = data.parent / "other.csv"
    other.write_text("a,b\n1,2\n")
    _user_error(keel("validate", str(other), "--contract", str(contract)), "no column 'age'")


def test_reading_options_and_spec_sources(tmp_path: Path, keel) -> None:  # type: ignore[no-untyped-def]
    raw = tmp_path / "raw.txt"
    raw.write_text("1;?;x\n2;5;y\n3;6;x\n")
    result = keel("profile", str(raw), "--delimiter", ";", "--no-header", "--null-value", "?", "--json")
    assert result.code == 0, result.err
    columns = json.loads(result.out)["columns"]
    assert len(columns) == 3 and columns[0]["name"] != "1"  # the first line is data, not a header
    assert columns[1]["type"] == "integer" and columns[1]["nulls"] == 1
    spec = tmp_path / "pipeline.yaml"
    spec.write_text("name: t\ndata:\n  target: c\n  train:\n    path: raw.txt\n"
                    "    csv: {delimiter: ';', has_header: false, null_values: ['?'], columns: [a, b, c]}\n")
    from_spec = keel("profile", "--spec", str(spec), "--json")
    assert from_spec.code == 0
    assert [c["name"] for c in json.loads(from_spec.out)["columns"]] == ["a", "b", "c"]
    assert [c["nulls"] for c in json.loads(from_spec.out)["columns"]] == [0, 1, 0]
    inferred = keel("contract", "infer", "--spec", str(spec))
    assert inferred.code == 0 and "target: c" in inferred.out
    _user_error(keel("profile", "--spec", str(spec), "--role", "test"), "no data.test source")
    _user_error(keel("profile"), "no data given")


def test_profile_table_json_and_contract(data: Path, contract: Path, keel) -> None:  # type: ignore[no-untyped-def]
    table = keel("profile", str(data))
    assert table.code == 0, table.err
    assert "4 rows, 4 columns" in table.out
    assert re.search(r"income\s+│ float\s+│\s+25.0%", table.out), table.out
    with_contract = json.loads(keel("profile", str(data), "--contract", str(contract), "--json").out)
    assert with_contract["format"] == "keelml.profile/1"
    color = next(c for c in with_contract["columns"] if c["name"] == "color")
    assert color["domain"] == {"blue": 2, "red": 2} and color["role"] == "feature"


def test_profile_html_is_offline_and_escapes_hostile_values(tmp_path: Path, keel) -> None:  # type: ignore[no-untyped-def]
    hostile = tmp_path / "hostile.jsonl"
    lines = [{HOSTILE_NAME: HOSTILE_VALUE, "n": i, "esc": "\x1b[2J[b]x[/b]"} for i in range(5)]
    hostile.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    page_path = tmp_path / "out" / "profile.html"
    result = keel("profile", str(hostile), "--html", str(page_path))
    assert result.code == 0, result.err
    assert "\x1b" not in result.out and "\\x1b[2J" in result.out  # escape sequences are shown, not sent
    assert "[b]x[/b]" in result.out  # rich markup in data is printed literally
    page = page_path.read_text()
    assert HOSTILE_NAME not in page and HOSTILE_VALUE not in page and "<img" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&lt;/style&gt;" in page
    assert "<script" not in page.lower() and "\x1b" not in page
    external = re.findall(r"(?:src|href)\s*=\s*['\"]?\s*(?:https?:)?//", page)
    assert external == [] and "@import" not in page and "url(" not in page
    assert page.count("<svg") >= 2 and "<style>" in page


def test_help_lists_the_data_commands(keel) -> None:  # type: ignore[no-untyped-def]
    shown = keel("--help")
    for command in ("validate", "profile", "contract"):
        assert command in shown.out
