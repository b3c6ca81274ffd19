"""`keel run SPEC --step NAME`: one step, its inputs from the cache, as an orchestrator task runs it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import keel_here

from keelml.orchestrators.topology import step_graph
from keelml.spec.pipeline import load_spec

STANDARD = ["ingest", "ingest_test", "validate", "profile", "split", "train", "evaluate", "model_tests", "export",
            "privacy", "robustness", "gate", "bundle", "register"]


def test_a_step_whose_upstream_is_not_cached_fails_naming_the_step_to_run_first(spec: Path) -> None:
    result = keel_here("run", str(spec), "--step", "train")
    assert result.returncode == 2, result.stderr
    assert "step 'train' needs step 'ingest', which has no cached result" in result.stderr
    assert f"keel run {spec} --step ingest" in result.stderr and "--with-upstream" in result.stderr
    assert "Traceback" not in result.stderr
    again = keel_here("runs", "list", "-f", str(spec), "--json")  # the refused task is recorded as a failed run
    assert again.returncode == 0, again.stderr
    assert [r["status"] for r in json.loads(again.stdout)] == ["failed"]


def test_tasks_in_graph_order_each_run_one_step_and_register_the_model(spec: Path) -> None:
    order = list(step_graph(load_spec(spec)).order)
    assert order == STANDARD
    for position, name in enumerate(order):
        result = keel_here("run", str(spec), "--step", name, "--json")
        assert result.returncode == 0, (name, result.stderr)
        report = json.loads(result.stdout)
        mine = report["step"]
        assert mine["name"] == name and mine["status"] == "ran"
        needed = [s["name"] for s in report["steps"] if s["name"] != name]
        assert set(mine["upstream"]) == set(needed) and set(mine["upstream"].values()) <= {"cached"}
        assert set(needed) <= set(order[:position])
        assert [s["name"] for s in report["steps"] if s["status"] == "ran"] == [name]
    assert report["model"] is not None and report["model"]["version"] == 1  # the register task registered it
    whole = json.loads(keel_here("run", str(spec), "--json").stdout)
    assert {s["status"] for s in whole["steps"]} == {"cached"} and "step" not in whole
    rerun = keel_here("run", str(spec), "--step", "train")  # a task that is retried does no work
    assert rerun.returncode == 0 and "step train: cached" in rerun.stdout and "4 cached, 0 ran" in rerun.stdout


def test_with_upstream_runs_what_is_missing(spec: Path) -> None:
    result = keel_here("run", str(spec), "--step", "split", "--with-upstream", "--json")
    assert result.returncode == 0, result.stderr
    mine = json.loads(result.stdout)["step"]
    assert mine["status"] == "ran" and mine["upstream"] == {"ingest": "ran", "ingest_test": "ran", "validate": "ran"}
    assert keel_here("run", str(spec), "--step", "split").returncode == 0  # now cached for the strict form


def test_with_upstream_without_step_is_an_error(spec: Path) -> None:
    result = keel_here("run", str(spec), "--with-upstream")
    assert result.returncode == 2 and "--with-upstream only applies to a one-step run" in result.stderr


def test_an_unknown_step_lists_the_valid_names(spec: Path) -> None:
    result = keel_here("run", str(spec), "--step", "trian")
    assert result.returncode == 2
    assert "no step named 'trian'" in result.stderr
    assert "one of: " + ", ".join(STANDARD) in result.stderr.replace("\n", " ")
