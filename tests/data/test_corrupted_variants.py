"""Corrupted variants of the real Adult data: each ends in its documented outcome, and nothing is lost.

The contract is inferred from 3,000 clean training rows; each variant is a corrupted copy of the next
rows, read through the same spec options and validated like a test source. The documented outcome is
either quarantine (accepted + quarantined = rows read) or a DataError that names the rule and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from keelml.data.sources import read_source, read_source_with_rejects
from keelml.errors import DataError
from keelml.pipeline.steps import data as steps
from keelml.spec.data import ContractSpec, SourceSpec, ValidationSpec

ADULT = Path(__file__).resolve().parents[2] / "examples" / "adult" / "adult.data"
COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
           "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
           "income"]
LINES = ADULT.read_text().splitlines()
CLEAN, FRESH = LINES[:3000], LINES[3000:4000]


def _source(path: Path, **csv: Any) -> SourceSpec:
    return SourceSpec.model_validate({"path": str(path), "csv": {"has_header": False, "columns": COLUMNS,
                                                                 "null_values": ["?"], **csv}})


def _run(tmp_path: Path, lines: list[str], validation: dict[str, Any] | None = None,
         **csv: Any) -> dict[str, Any]:
    """Ingest the clean training file and the variant, then validate both like `keel run` does."""
    train, variant = tmp_path / "train.csv", tmp_path / "variant.csv"
    train.write_text("\n".join(CLEAN) + "\n")
    variant.write_text("\n".join(lines) + ("\n" if lines and not lines[-1].endswith("\n") else ""))
    raw = read_source(_source(train), str(train))
    raw_test, rejects = read_source_with_rejects(_source(variant, **csv), str(variant))
    params = {"target": "income", "drop_columns": [], "sensitive_columns": [],
              "options": ContractSpec().model_dump(mode="json"),
              "validation": ValidationSpec.model_validate(validation or {}).model_dump(mode="json")}
    out = steps.validate(params=params, raw=raw, raw_test=raw_test, rejects_test=rejects, pii_key=b"k" * 32)
    report = out["report"]["test"]
    assert report["rows_valid"] + report["rows_quarantined"] == report["rows_in"] == raw_test.height + rejects.height
    assert report["rows_in"] == len([line for line in lines if line.strip()]) - (1 if csv.get("has_header") else 0)
    assert out["test"].height == report["rows_valid"]
    assert out["quarantine"].filter(pl.col("_source") == "test").height == report["rows_quarantined"]
    return {"report": report, "quarantine": out["quarantine"].filter(pl.col("_source") == "test")}


def _fields(line: str) -> list[str]:
    return [f.strip() for f in line.split(",")]


def _edit(column: str, change: Callable[[str], str], every: int = 10) -> list[str]:
    index = COLUMNS.index(column)
    out = []
    for i, line in enumerate(FRESH):
        fields = _fields(line)
        if i % every == 0:
            fields[index] = change(fields[index])
        out.append(", ".join(fields))
    return out


def test_clean_rows_are_all_accepted(tmp_path: Path) -> None:
    report = _run(tmp_path, FRESH)["report"]
    assert report["rows_in"] == 1000 and report["rows_quarantined"] <= 2


def test_wrong_types_are_quarantined_with_the_value(tmp_path: Path) -> None:
    result = _run(tmp_path, _edit("age", lambda _: "forty"))
    assert result["report"]["columns"]["age"]["violations"]["type"] == 100
    assert "age: 'forty' is not an integer" in result["quarantine"]["_reason"].to_list()


def test_unseen_categories_are_quarantined(tmp_path: Path) -> None:
    result = _run(tmp_path, _edit("workclass", lambda _: "Space-agency", every=20))
    anomaly = next(a for a in result["report"]["anomalies"] if a["kind"] == "domain")
    assert (anomaly["column"], anomaly["count"], anomaly["examples"][0]) == ("workclass", 50, "Space-agency")


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "NaN"])
def test_nan_and_inf_are_quarantined_as_non_finite(tmp_path: Path, bad: str) -> None:
    result = _run(tmp_path, _edit("hours-per-week", lambda _: bad, every=25))
    counts = result["report"]["columns"]["hours-per-week"]["violations"]
    assert counts["non_finite"] == 40 and counts["type"] == 0  # null_values is ["?"]: NaN is not a null marker


def test_duplicated_rows_are_kept_unless_deduplication_is_asked(tmp_path: Path) -> None:
    lines = FRESH + FRESH[:50]
    kept = _run(tmp_path, lines)["report"]
    assert kept["rows_in"] == 1050 and kept["duplicates_quarantined"] == 0
    # the test source is never deduplicated; training data is
    train = tmp_path / "t.csv"
    train.write_text("\n".join(CLEAN + CLEAN[:50]) + "\n")
    raw = read_source(_source(train), str(train))
    out = steps.validate(params={"target": "income", "drop_columns": [], "sensitive_columns": [],
                                 "options": ContractSpec().model_dump(mode="json"),
                                 "validation": {"deduplicate": "exact"}}, raw=raw)
    report = out["report"]["train"]
    assert report["rows_in"] == 3050 and report["duplicates_quarantined"] >= 50
    assert report["rows_valid"] + report["rows_quarantined"] == 3050


def test_shuffled_columns_in_a_headed_file_are_matched_by_name(tmp_path: Path) -> None:
    order = list(reversed(COLUMNS))
    lines = [", ".join(order)] + [", ".join(reversed(_fields(line))) for line in FRESH]
    report = _run(tmp_path, lines, has_header=True, columns=None)["report"]
    assert report["rows_in"] == 1000 and report["rows_quarantined"] <= 2


def test_shuffled_columns_in_a_headerless_file_stop_the_run(tmp_path: Path) -> None:
    lines = [", ".join(reversed(_fields(line))) for line in FRESH]
    with pytest.raises(DataError) as info:
        _run(tmp_path, lines)
    assert "rows broke the contract" in info.value.what and "max_quarantine_fraction" in (info.value.fix or "")


def test_a_column_emptied_past_its_null_limit_stops_the_run(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        _run(tmp_path, _edit("occupation", lambda _: "?", every=2))
    assert "column 'occupation'" in info.value.what and "null_fraction: warn" in (info.value.fix or "")
    relaxed = _run(tmp_path, _edit("occupation", lambda _: "?", every=2), validation={"null_fraction": "warn"})
    assert relaxed["report"]["rows_in"] == 1000


def test_missing_labels_are_quarantined(tmp_path: Path) -> None:
    result = _run(tmp_path, _edit("income", lambda _: "?", every=50))
    anomaly = next(a for a in result["report"]["anomalies"] if a["kind"] == "missing_label")
    assert anomaly["column"] == "income" and anomaly["count"] == 20


def test_a_truncated_last_line_is_quarantined_as_a_reader_reject(tmp_path: Path) -> None:
    lines = [*FRESH[:-1], FRESH[-1][: len(FRESH[-1]) // 2]]
    result = _run(tmp_path, lines)
    report, quarantine = result["report"], result["quarantine"]
    assert report["rows_rejected_by_reader"] == 1 and report["rows_in"] == 1000
    reject = quarantine.filter(pl.col("_line").is_not_null())
    assert reject["_line"].to_list() == [1000]
    assert "fields, expected 15" in reject["_reason"][0] and reject["_raw"][0] == lines[-1]


def test_broken_quotes_are_quarantined_and_the_rest_is_read(tmp_path: Path) -> None:
    lines = list(FRESH)
    lines[10] = lines[10].replace("State-gov", '"State-gov').replace("Private", '"Private', 1)
    lines[20] = '"' + lines[20]
    result = _run(tmp_path, lines)
    report = result["report"]
    assert report["rows_in"] == 1000 and report["rows_rejected_by_reader"] >= 1
    assert report["rows_valid"] >= 990
