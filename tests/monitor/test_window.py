"""Reading a window of the prediction log: files, time and count windows, feedback labels."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from keelml.errors import DataError, NotFoundError
from keelml.monitor.window import read_prediction_log, window_frame


def write_log(directory: Path) -> None:
    """Two prediction files as the server writes them, one still open (.part), and feedback."""
    directory.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"request_id": ["a", "a", "b"], "row": [0, 1, 0], "ts": [100.0, 100.0, 200.0],
                  "version": [1, 1, 1], "x": [1.0, 2.0, 3.0], "prediction": ["no", "yes", "no"]},
                 ).write_parquet(directory / "predictions-1.parquet")
    pl.DataFrame({"request_id": ["c"], "row": [0], "ts": [300.0], "version": [2], "x": [4.0],
                  "prediction": ["yes"], "latency_ms": [7.5]}).write_parquet(directory / "predictions-2.parquet")
    pl.DataFrame({"request_id": ["d"], "row": [0], "ts": [400.0], "version": [2], "x": [5.0],
                  "prediction": ["no"]}).write_parquet(directory / "predictions-3.parquet.part")
    pl.DataFrame({"request_id": ["a", "c", "a"], "row": [1, 0, 1], "label": ["no", "yes", "yes"],
                  "ts": [150.0, 350.0, 160.0]}).write_parquet(directory / "feedback-1.parquet")


def test_reads_complete_files_joins_newest_feedback(tmp_path: Path) -> None:
    write_log(tmp_path)
    frame = read_prediction_log(tmp_path).sort("ts", "row")
    assert frame["x"].to_list() == [1.0, 2.0, 3.0, 4.0]  # the .part file is not read
    assert frame["model_version"].to_list() == [1, 1, 1, 2]  # "version" renamed
    assert frame["label"].to_list() == [None, "yes", None, "yes"]  # by request and row; newest label wins
    assert frame["latency_ms"].to_list() == [None, None, None, 7.5]  # columns missing from a file are null


def test_time_and_count_windows(tmp_path: Path) -> None:
    write_log(tmp_path)
    assert read_prediction_log(tmp_path, since=200.0)["x"].sort().to_list() == [3.0, 4.0]
    since = dt.datetime.fromtimestamp(150, dt.UTC)
    assert read_prediction_log(tmp_path, since=since)["x"].sort().to_list() == [3.0, 4.0]
    assert read_prediction_log(tmp_path, last=2)["x"].to_list() == [3.0, 4.0]
    assert window_frame(tmp_path, "2", now=1000.0)["x"].to_list() == [3.0, 4.0]
    assert window_frame(tmp_path, "15m", now=1000.0)["x"].sort().to_list() == [1.0, 2.0, 3.0, 4.0]
    assert window_frame(tmp_path, "800s", now=1000.0)["x"].sort().to_list() == [3.0, 4.0]
    assert window_frame(tmp_path, 1, now=1000.0)["x"].to_list() == [4.0]


def test_datetime_timestamps_and_single_files(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    stamps = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC)]
    pl.DataFrame({"ts": stamps, "prediction": ["a", "b"]}).write_parquet(path)
    frame = read_prediction_log(path, since=dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC))
    assert frame["prediction"].to_list() == ["b"] and frame["ts"].to_list() == [stamps[1].timestamp()]


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no prediction log"):
        read_prediction_log(tmp_path / "missing")
    assert read_prediction_log(tmp_path).height == 0  # an empty directory is an empty window
    pl.DataFrame({"prediction": ["a"]}).write_parquet(tmp_path / "p.parquet")
    with pytest.raises(DataError, match="no ts column"):
        read_prediction_log(tmp_path, since=0.0)
    with pytest.raises(DataError, match="neither a duration"):
        window_frame(tmp_path, "yesterday")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="broken.parquet: not a readable Parquet file"):
        read_prediction_log(tmp_path)
