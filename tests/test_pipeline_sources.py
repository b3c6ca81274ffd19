"""Sources through the pipeline: DataFrames from the Python API, batches, and CSV reader rejects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from keelml.data.frames import decode_table
from keelml.errors import SpecError
from keelml.pipeline import RunOutcome, run
from keelml.registry.project import Project, open_project
from keelml.spec.pipeline import load_spec


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame({"x": x, "k": rng.integers(0, 5, size=n),
                         "colour": rng.choice(["red", "green", "blue"], size=n),
                         "label": np.where(x + rng.normal(scale=0.5, size=n) > 0, "yes", "no")})


def _spec(tmp_path: Path, data: str, extra: str = "") -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"name: sources-test\ndata:\n  target: label\n{data}\n"
                    "model:\n  family: logistic_regression\n  cv_folds: 2\n"
                    f"evaluate:\n  bootstrap_rounds: 10\nstore:\n  path: .keel\n{extra}")
    return path


@contextmanager
def _project(spec: Path) -> Iterator[Project]:
    project = open_project(load_spec(spec), create=False)
    try:
        yield project
    finally:
        project.close()


def _output(spec: Path, outcome: RunOutcome, step: str, name: str) -> Any:
    artifact = next(s for s in outcome.steps if s.name == step).outputs[name]
    with _project(spec) as project:
        data = project.artifacts.get(artifact)
    return decode_table(data) if name in ("raw", "rejects", "quarantine", "train") else json.loads(data)


def test_frames_replace_the_spec_sources_and_are_cached_by_content(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "  train:\n    path: never-read.csv\n  test:\n    format: dataframe")
    train, test = _frame(240, 1), pl.from_pandas(_frame(120, 2))
    first = run(spec, frames={"train": train, "test": test})
    assert {s.status for s in first.steps} == {"ran"}
    assert first.registration is not None and first.registration.version == 1
    assert first.validation is not None and first.validation["train"]["rows_in"] == 240
    raw = _output(spec, first, "ingest", "raw")
    assert raw.columns == ["x", "k", "colour", "label"] and raw.schema["x"] == pl.Float64

    again = run(spec, frames={"train": train.copy(), "test": test.clone()})
    assert {s.status for s in again.steps} == {"cached"}

    changed = train.copy()
    changed.loc[0, "x"] = 99.0
    third = run(spec, frames={"train": changed, "test": test}, only="validate")
    assert [(s.name, s.status) for s in third.steps] == [("ingest", "ran"), ("ingest_test", "cached"),
                                                         ("validate", "ran")]


@pytest.mark.parametrize(("extra", "message"), [
    (None, "data.train has format: dataframe but no frame was given"),
    ({"test": [1, 2]}, r"frames\['test'\] is a builtins.list"),
    ({"validation": pd.DataFrame({"a": [1]})}, r"frames names the role\(s\) 'validation'"),
])
def test_frames_errors_leave_no_store(tmp_path: Path, extra: dict[str, Any] | None, message: str) -> None:
    spec = _spec(tmp_path, "  train:\n    format: dataframe\n  test:\n    format: dataframe")
    frames = {} if extra is None else {"train": _frame(20, 1), "test": _frame(20, 2), **extra}
    with pytest.raises(SpecError, match=message):
        run(spec, frames=frames)
    assert not (tmp_path / ".keel").exists()


def test_malformed_csv_lines_reach_the_quarantine_and_the_report(tmp_path: Path) -> None:
    frame = _frame(60, 3)
    lines = frame.to_csv(index=False).splitlines()
    lines.insert(5, "1.5,2")                      # line 6: too few fields
    lines.insert(9, '0.3,1,"red,no')              # line 10: an unclosed quote
    lines.append("0.1,3,blue,yes,extra")          # line 64: too many fields
    lines.append("-0.2,1,red,")                   # line 65: parses, fails the contract (no target)
    lines.append('0.4,2,"gre')                    # line 66: truncated last line, no newline
    (tmp_path / "train.csv").write_text("\n".join(lines))
    spec = _spec(tmp_path, "  train:\n    path: train.csv")
    outcome = run(spec, only="validate")
    report = _output(spec, outcome, "validate", "report")["train"]
    physical_rows = 60 + 5
    assert report["rows_rejected_by_reader"] == 4
    assert report["rows_in"] == physical_rows
    assert report["rows_valid"] + report["rows_quarantined"] == physical_rows
    assert report["rows_quarantined"] == 5
    quarantine = _output(spec, outcome, "validate", "quarantine")
    readers = quarantine.filter(pl.col("_line").is_not_null()).sort("_line")
    assert readers["_line"].to_list() == [6, 10, 64, 66]
    assert readers["_raw"].to_list()[0] == "1.5,2"
    assert readers["_reason"].to_list()[0] == "line 6 has 2 fields, expected 4"
    assert set(quarantine["_source"]) == {"train"}
    assert quarantine.filter(pl.col("_line").is_null())["_reason"].to_list() == ["label: the target is missing"]
    summary = _output(spec, outcome, "ingest", "summary")
    assert summary == {"rows": 61, "rejected": 4, "files": [{"name": "train.csv", "rows": 61, "rejected": 4}]}


def test_a_glob_of_batches_is_one_source_and_a_new_batch_reruns_ingest(tmp_path: Path) -> None:
    batches = tmp_path / "batches"
    batches.mkdir()
    frame = _frame(90, 4)
    for i in range(3):
        frame.iloc[i * 30:(i + 1) * 30].to_csv(batches / f"part-{i}.csv", index=False)
    spec = _spec(tmp_path, "  train:\n    path: batches/*.csv")
    first = run(spec, only="validate")
    raw = _output(spec, first, "ingest", "raw")
    assert raw.height == 90 and raw.columns == ["x", "k", "colour", "label"]
    summary = _output(spec, first, "ingest", "summary")
    assert [(f["name"], f["rows"]) for f in summary["files"]] == [("part-0.csv", 30), ("part-1.csv", 30),
                                                                  ("part-2.csv", 30)]
    assert {s.status for s in run(spec, only="validate").steps} == {"cached"}
    _frame(10, 5).to_csv(batches / "part-3.csv", index=False)
    assert run(spec, only="validate").steps[0].status == "ran"


def test_an_empty_frame_or_query_result_stops_before_the_store(tmp_path: Path) -> None:
    from keelml.errors import DataError

    spec = _spec(tmp_path, "  train:\n    format: dataframe")
    with pytest.raises(DataError, match=r"frames\['train'\] has no rows"):
        run(spec, frames={"train": _frame(10, 1).iloc[:0]})
    (tmp_path / "d.db").write_bytes(b"")
    spec = _spec(tmp_path, "  train:\n    format: sql\n    query: SELECT 1 AS label WHERE 1 = 0\n"
                           "    url: sqlite:///d.db")
    with pytest.raises(DataError, match=r"the query of data.train on sqlite:///.*d\.db has no rows"):
        run(spec)
    assert not (tmp_path / ".keel").exists()
