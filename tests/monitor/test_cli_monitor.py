"""`keel monitor` on a small Adult project: exit codes, JSON, the log action and retraining."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from tests.helpers import ADULT, small_adult_project

from keelml.cli.main import main
from keelml.pipeline import run

COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
           "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", "income"]


def fast(spec: Path) -> None:
    """Logistic regression and no model tests: the same pipeline, a few seconds per run."""
    text = spec.read_text().replace("family: hist_gradient_boosting", "family: logistic_regression")
    spec.write_text(text[:text.index("# Model tests")] + text[text.index("store:"):])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = small_adult_project(tmp_path_factory.mktemp("adult-monitor"), train_rows=1500, test_rows=800,
                               cv_folds=2, bootstrap_rounds=20)
    fast(spec)
    assert run(spec).registration is not None
    return spec


def write_log(directory: Path, *, shifted: bool = False) -> Path:
    """Held-out Adult rows as a prediction log (prediction = the true label) with feedback."""
    raw = pl.read_csv(ADULT / "adult.test", has_header=False, new_columns=COLUMNS, skip_rows=1, n_rows=600,
                      null_values=[" ?"]).with_columns(pl.col(pl.String).str.strip_chars())
    labels = raw["income"].str.replace(r"\.$", "")
    if shifted:
        raw = raw.with_columns(pl.col("age") + 20, pl.lit("Self-emp-inc").alias("workclass"))
    n = raw.height
    ids = [f"r{i}" for i in range(n)]
    directory.mkdir(parents=True, exist_ok=True)
    raw.drop("income").with_columns(
        pl.Series("request_id", ids), pl.lit(0).alias("row"), pl.Series("ts", time.time() - np.linspace(600, 1, n)),
        pl.lit(1).alias("version"), labels.alias("prediction"), pl.lit(0.9).alias("score"),
        pl.Series("latency_ms", np.full(n, 3.0)),
    ).write_parquet(directory / "predictions-1.parquet")
    pl.DataFrame({"request_id": ids, "row": [0] * n, "label": labels, "ts": [time.time()] * n}).write_parquet(
        directory / "feedback-1.parquet")
    return directory


def keel(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def monitor_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = keel(capsys, "monitor", *args, "--json")
    assert out.strip(), err
    return code, json.loads(out)


def test_unchanged_traffic_exits_0(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "log")
    code, report = monitor_json(capsys, "adult-income", "-f", str(project), "--log", str(log))
    assert code == 0 and report["fired"] == [] and report["actions"] == []
    assert report["model"] == {"name": "adult-income", "version": 1} and report["rows"] == 600
    assert report["drift"]["drifted"] == [] and report["drift"]["evaluated"] == 15  # 14 features + prediction
    assert report["performance"]["available"] and report["performance"]["primary"]["value"] == 1.0
    assert report["model_versions_in_window"] == [1]


def test_shifted_traffic_fires_logs_and_exits_1(project: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "log", shifted=True)
    code, report = monitor_json(capsys, "adult-income", "-f", str(project), "--log", str(log), "--window", "1h")
    assert code == 1
    assert {"age", "workclass"} <= set(report["drift"]["drifted"])
    assert [r["rule"] for r in report["fired"]] == ["feature_drift"]
    [action] = report["actions"]
    assert action["status"] == "done"
    line = json.loads(Path(action["path"]).read_text().splitlines()[-1])
    assert line["model"] == "adult-income" and "age" in line["drifted_columns"]
    code, out, _ = keel(capsys, "monitor", "adult-income", "-f", str(project), "--log", str(log), "--no-actions")
    assert code == 1 and re.search(r"age\s+│\s*numeric\s+│\s*drift", out) and "rule feature_drift: FIRED" in out


def test_small_windows_and_bad_input(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "log", shifted=True)
    code, report = monitor_json(capsys, "adult-income", "-f", str(project), "--log", str(log), "--window", "20")
    assert code == 0 and report["rows"] == 20
    assert {c["verdict"] for c in report["drift"]["columns"]} == {"insufficient"}
    assert report["rules"][0]["status"] == "not evaluated"
    for args, message in [(["--window", "yesterday"], "neither a duration"),
                          (["--log", str(tmp_path / "nowhere")], "no prediction log"),
                          (["--reference", str(log / "feedback-1.parquet")], "cannot read the reference profile")]:
        code, _, err = keel(capsys, "monitor", "adult-income", "-f", str(project), "--log", str(log), *args)
        assert code == 2 and message in err, err
    code, _, err = keel(capsys, "monitor", "no-such-model", "-f", str(project), "--log", str(log))
    assert code == 2 and "no model named 'no-such-model'" in err
    code, _, err = keel(capsys, "monitor", "adult-income@production", "-f", str(project), "--log", str(log))
    assert code == 2 and "has no alias 'production'" in err


def test_reference_profile_file(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "log")
    shifted = write_log(tmp_path / "shifted", shifted=True)
    frame = pl.read_parquet(shifted / "predictions-1.parquet").drop("request_id", "row", "ts", "version", "score",
                                                                    "latency_ms")
    frame.write_parquet(tmp_path / "ref.parquet")
    code, out, _ = keel(capsys, "profile", str(tmp_path / "ref.parquet"), "--json")
    assert code == 0
    (tmp_path / "profile.json").write_text(out)
    code, report = monitor_json(capsys, "adult-income", "-f", str(project), "--log", str(log), "--reference",
                                str(tmp_path / "profile.json"), "--no-actions")
    assert code == 1 and {"age", "workclass"} <= set(report["drift"]["drifted"])


def test_retrain_action_reports_the_gate(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_log(tmp_path / "log", shifted=True)
    original = project.read_text()
    retrain = "\nmonitor:\n  actions: [{type: retrain, max_regression: 0.05}]\n"
    try:
        project.write_text(original.replace("min_score: 0.80", "min_score: 0.99") + retrain)
        code, report = monitor_json(capsys, "adult-income", "-f", str(project), "--log", str(log))
        [action] = report["actions"]
        assert code == 1 and action["status"] == "refused by gate" and "roc_auc" in action["detail"]
        assert action["gate"]["passed"] is False
        assert action["candidate"]["version"] == 2 and action["candidate"]["status"] == "rejected"

        train = project.parent / "adult.data"  # newer data arrives: 300 more rows
        rows = (ADULT / "adult.data").read_text().splitlines()
        train.write_text("\n".join(rows[:1800]) + "\n")
        project.write_text(original + retrain)
        code, report = monitor_json(capsys, "adult-income", "-f", str(project), "--log", str(log))
        [action] = report["actions"]
        # v2 is the refused candidate (registered as rejected): the accepted retrain is v3
        assert code == 1 and action["gate"]["passed"] and action["candidate"]["version"] == 3
        assert action["status"] == "promoted" and action["promotion"]["to_version"] == 3
        assert action["comparison"]["passed"] and action["comparison"]["current"] > 0.8

        code, report = monitor_json(capsys, "adult-income", "-f", str(project), "--log", str(log))
        assert report["model"]["version"] == 3 and report["actions"][0]["status"] == "unchanged"
    finally:
        project.write_text(original)
