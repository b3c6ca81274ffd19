"""Chunked reading, validation and profiling give the results of reading the whole file at once."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from tests.helpers import keel_here

from keelml.data import budget, profile_stream
from keelml.data.chunked import iter_chunks
from keelml.data.contract import Contract, contract_from_yaml
from keelml.data.profile import profile_frame
from keelml.data.profile_stream import profile_chunks
from keelml.data.sink import FrameSink
from keelml.data.sources import read_files
from keelml.data.stream import validate_chunks
from keelml.data.validate import validate_frame
from keelml.errors import DataError
from keelml.spec.data import SourceSpec

CONTRACT = """
target: label
task: binary
classes: ["yes", "no"]
columns:
  - {name: id, type: integer, role: id}
  - {name: age, type: integer, min: 0, max: 130, nullable: true}
  - {name: income, type: float, nullable: true}
  - {name: color, type: category, categories: [red, green, blue], nullable: false}
  - {name: label, type: category, categories: ["yes", "no"], role: target}
"""
CHUNK_SIZES = (1, 7, 10_000)


def _messy_csv(path: Path, *, rows: int = 400, malformed: bool = True, newline: str = "\n") -> Path:
    """Bad values of every kind, quoted fields spanning lines, blank lines and (optionally) broken records."""
    rng = random.Random(7)
    lines = ["id,age,income,color,label,note"]
    for i in range(rows):
        age = rng.choice([str(rng.randint(0, 120)), "", "abc", "-5", "200", " 33 "])
        income = rng.choice([f"{rng.uniform(0, 1e5):.2f}", "NaN", "inf", "-inf", "", "x", "1e3"])
        color = rng.choice(["red", "green", "blue", "purple", "", "NA"])
        label = rng.choice(["yes", "no", "", "maybe"])
        note = rng.choice(['"multi\nline, note"', "plain", '"quoted ""x"""', '"a\n\nb"'])
        lines.append(f"{i},{age},{income},{color},{label},{note}")
        if malformed and i % 97 == 5:
            lines.append("bad,row")
        if malformed and i % 131 == 7:
            lines.append('x,"broken,1,2,3,4')
        if i % 50 == 3:
            lines.append("")
    path.write_bytes((newline.join(lines) + newline).encode())
    return path


def _contract() -> Contract:
    return contract_from_yaml(CONTRACT, source="test")


def _read_in_chunks(source: SourceSpec, location: str, rows: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    chunks = list(iter_chunks(source, location, rows))
    offsets = [c.offset for c in chunks]
    assert offsets == [sum(c.frame.height for c in chunks[:k]) for k in range(len(chunks))]
    return pl.concat([c.frame for c in chunks]), pl.concat([c.rejects for c in chunks])


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_chunks_hold_the_rows_and_rejects_of_a_whole_read(tmp_path: Path, newline: str) -> None:
    path = _messy_csv(tmp_path / "messy.csv", newline=newline)
    source = SourceSpec(path=str(path))
    whole, rejects, _ = read_files(source, str(path))
    assert rejects.height > 5 and "line" in rejects["_reason"][0]
    for rows in CHUNK_SIZES:
        frame, found = _read_in_chunks(source, str(path), rows)
        assert frame.equals(whole), rows
        assert found.equals(rejects), rows  # same records, same file line numbers and reasons


def test_chunks_follow_every_dialect_option(tmp_path: Path) -> None:
    text = "# comment\nskipped line\n1;x y;'a;b'\n# more\n2;;'multi\nline'\n\n3; z ;-\n4;w;'it''s'\n5;v\n"
    path = tmp_path / "odd.csv"
    path.write_bytes(text.encode("latin-1") + "6;é;ü\n".encode("latin-1"))
    source = SourceSpec.model_validate({"path": str(path), "csv": {
        "delimiter": ";", "has_header": False, "columns": ["n", "s", "t"], "skip_rows": 2, "comment_prefix": "#",
        "quote_char": "'", "null_values": ["-"], "encoding": "latin-1"}, "replace": {"s": {"w": "W"}}})
    whole, rejects, _ = read_files(source, str(path))
    assert whole.height == 5 and rejects.height == 1 and whole["s"].to_list()[-1] == "é"
    for rows in (1, 2, 3, 100):
        frame, found = _read_in_chunks(source, str(path), rows)
        assert frame.equals(whole) and found.equals(rejects), rows


def test_validation_in_chunks_equals_the_whole_file(tmp_path: Path) -> None:
    path = _messy_csv(tmp_path / "messy.csv")
    source = SourceSpec(path=str(path))
    whole, _, _ = read_files(source, str(path))
    expected = validate_frame(whole, _contract())
    assert 0 < expected.report["rows_quarantined"] < whole.height
    for rows in (7, 10_000):
        written: list[pl.DataFrame] = []
        result = validate_chunks(iter_chunks(source, str(path), rows), _contract(), on_quarantine=written.append)
        assert result.report == expected.report, rows  # counts, reasons, null fractions, anomalies
        assert pl.concat(written).equals(expected.quarantine), rows  # every quarantined row, with its _row
        assert result.quarantine.equals(expected.quarantine), rows
        assert result.rejected == 8


def _close(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (where, a, b)
    else:
        assert a == b, (where, a, b)


@pytest.mark.parametrize("with_contract", [False, True])
def test_profile_in_chunks_equals_the_whole_file(tmp_path: Path, with_contract: bool) -> None:
    path = _messy_csv(tmp_path / "messy.csv", malformed=False)
    source = SourceSpec(path=str(path))
    whole, _, _ = read_files(source, str(path))
    contract = _contract() if with_contract else None
    expected = profile_frame(whole, contract)
    for rows in (7, 10_000):
        _close(profile_chunks(lambda rows=rows: (c.frame for c in iter_chunks(source, str(path), rows)), contract),
               expected)


def test_parquet_is_read_by_record_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frame = pl.DataFrame({"x": rng.normal(size=1000), "k": rng.choice(["a", "b", None], 1000).tolist(),
                          "n": rng.integers(0, 5, 1000)})
    path = tmp_path / "data.parquet"
    frame.write_parquet(path)
    chunks = list(iter_chunks(SourceSpec(path=str(path)), str(path), 128))
    assert len(chunks) == 8 and pl.concat([c.frame for c in chunks]).equals(frame)
    _close(profile_chunks(lambda: (c.frame for c in iter_chunks(SourceSpec(path=str(path)), str(path), 128))),
           profile_frame(frame))


def test_large_columns_get_approximate_quantiles_and_distinct_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_stream, "EXACT_VALUES", 2_000)
    monkeypatch.setattr(profile_stream, "SKETCH_POINTS", 256)
    rng = np.random.default_rng(11)
    frame = pl.DataFrame({"x": rng.lognormal(size=60_000), "i": rng.integers(0, 50_000, 60_000)})
    expected = profile_frame(frame)
    got = profile_chunks(lambda: frame.iter_slices(1_000))
    for want, have in zip(expected["columns"], got["columns"], strict=True):
        assert have["count"] == want["count"] and have["min"] == want["min"] and have["max"] == want["max"]
        assert math.isclose(have["mean"], want["mean"], rel_tol=1e-9)
        assert abs(have["distinct"] - want["distinct"]) <= 0.03 * want["distinct"]  # HyperLogLog
        values = frame[want["name"]].sort()
        for level, value in have["quantiles"].items():  # the rank of each estimate is within 1% of the level
            rank = values.search_sorted(value) / len(values)
            assert abs(rank - float(level)) <= 0.01, (want["name"], level, rank)
        assert sum(have["histogram"]["counts"]) == want["count"]  # exact counts for the estimated edges


def test_frame_sink_writes_only_complete_files(tmp_path: Path) -> None:
    frame = pl.DataFrame({"a": ["x", "y"], "_row": [1, 2]})
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), FrameSink(target) as sink:
        sink.write(frame)
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
    with FrameSink(target) as sink:
        sink.write(frame.head(0))
        sink.commit()
    assert target.read_text() == "a,_row\n"
    with FrameSink(tmp_path / "out.parquet") as sink:
        sink.write(frame)
        sink.write(frame)
        sink.commit()
    assert pl.read_parquet(tmp_path / "out.parquet").equals(pl.concat([frame, frame]))


def test_auto_chunking_follows_file_size_and_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.csv"
    path.write_text("a\n" * 1000)
    assert budget.auto_chunk_rows(str(path), 5) == 5 and budget.auto_chunk_rows(str(path), 0) == 0
    monkeypatch.setattr(budget, "memory_budget", lambda: 10**9)
    assert budget.auto_chunk_rows(str(path), None) == 0
    monkeypatch.setattr(budget, "memory_budget", lambda: 100)
    assert budget.auto_chunk_rows(str(path), None) == budget.DEFAULT_CHUNK_ROWS
    assert budget.auto_chunk_rows("s3://bucket/a.csv", None) == 0


def _keel(*args: str) -> tuple[int, str, str]:
    result = keel_here(*args)
    return result.returncode, result.stdout, result.stderr


def test_cli_streams_with_the_same_output(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    path = _messy_csv(tmp_path / "clean.csv", malformed=False)
    contract = tmp_path / "contract.yaml"
    contract.write_text(CONTRACT)
    outputs = {}
    for rows in ("0", "9"):
        quarantine = tmp_path / f"q{rows}.csv"
        code, out, err = _keel("validate", str(path), "--contract", str(contract), "--json",
                               "--quarantine", str(quarantine), "--chunk-rows", rows)
        assert code == 0, err
        report = json.loads(out)
        report.pop("quarantine_file")
        code, profile, err = _keel("profile", str(path), "--json", "--chunk-rows", rows)
        assert code == 0, err
        outputs[rows] = (report, quarantine.read_bytes(), json.loads(profile))
    assert outputs["0"][0] == outputs["9"][0] and outputs["0"][1] == outputs["9"][1]
    _close(outputs["0"][2], outputs["9"][2])
    assert outputs["0"][0]["rows_quarantined"] > 0


def test_cli_reports_malformed_records_like_a_whole_read(tmp_path: Path) -> None:
    path = _messy_csv(tmp_path / "messy.csv")
    contract = tmp_path / "contract.yaml"
    contract.write_text(CONTRACT)
    errors = []
    for rows in ("0", "9"):
        quarantine = tmp_path / f"q{rows}.parquet"
        code, _, err = _keel("validate", str(path), "--contract", str(contract), "--chunk-rows", rows,
                             "--quarantine", str(quarantine))
        assert code == 2 and not quarantine.exists()
        errors.append(err)
    assert errors[0] == errors[1] and "8 malformed record(s) in total" in errors[0]


def test_wide_encodings_are_refused_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_bytes("a,b\n1,2\n".encode("utf-16"))
    source = SourceSpec.model_validate({"path": str(path), "csv": {"encoding": "utf-16"}})
    with pytest.raises(DataError, match="cannot be read in chunks"):
        list(iter_chunks(source, str(path), 10))
