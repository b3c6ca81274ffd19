"""The whole path through the real `keel` command on (a head of) the real Adult data."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from tests.helpers import keel, small_adult_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    spec = small_adult_project(tmp_path_factory.mktemp("adult"))
    first = keel("run", str(spec), "--json")
    assert first.returncode == 0, first.stderr
    second = keel("run", str(spec), "--json")
    assert second.returncode == 0, second.stderr
    return spec, json.loads(first.stdout), json.loads(second.stdout)


def test_first_run_runs_every_step_and_registers(project: tuple[Path, dict, dict]) -> None:
    _, first, _ = project
    assert [s["name"] for s in first["steps"]] == [
        "ingest", "ingest_test", "validate", "profile", "split", "train", "evaluate", "model_tests", "export",
        "privacy", "robustness", "gate", "bundle", "register"]
    assert {s["status"] for s in first["steps"]} == {"ran"}
    assert first["model"] == {"name": "adult-income", "version": 1, "bundle": first["model"]["bundle"],
                              "new_version": True, "status": "staging", "reasons": []}
    assert first["primary_metric"]["name"] == "roc_auc"
    assert 0.8 < first["primary_metric"]["value"] <= 1.0
    assert first["primary_metric"]["ci_low"] <= first["primary_metric"]["value"] <= first["primary_metric"]["ci_high"]
    assert first["gate"]["passed"] is True


def test_second_run_is_all_cached_and_identical(project: tuple[Path, dict, dict]) -> None:
    _, first, second = project
    assert {s["status"] for s in second["steps"]} == {"cached"}
    assert [s["outputs"] for s in second["steps"]] == [s["outputs"] for s in first["steps"]]
    assert second["model"]["version"] == 1 and second["model"]["new_version"] is False
    assert second["primary_metric"] == first["primary_metric"]


def test_store_layout_and_key_modes(project: tuple[Path, dict, dict]) -> None:
    spec, first, _ = project
    store = spec.parent / ".keel"
    for name in ("master.key", "signing.key"):
        assert stat.S_IMODE((store / "keys" / name).stat().st_mode) == 0o600
    assert (store / "keel.db").is_file()
    report = Path(first["report"])
    assert report.is_file() and report.parent.name == first["run_id"]
    page = report.read_text()
    assert "roc_auc" in page and first["run_id"] in page and "Data contract" in page
    assert "Training data profile" in page
    assert (report.parent / "contract.yaml").is_file()
    key_text = (store / "keys" / "master.key").read_text().strip()
    for path in [*store.rglob("*.html"), *store.rglob("*.yaml"), store / "keel.db"]:
        assert key_text not in path.read_text(errors="ignore")


def test_verify_passes(project: tuple[Path, dict, dict]) -> None:
    spec, _, _ = project
    result = keel("verify", str(spec), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["ok"] and outcome["artifacts_checked"] >= 10 and outcome["bundles_checked"] == 1


def test_runs_and_models_listings(project: tuple[Path, dict, dict]) -> None:
    spec, first, second = project
    runs = json.loads(keel("runs", "list", "-f", str(spec), "--json").stdout)
    assert [r["id"] for r in runs[:2]] == [second["run_id"], first["run_id"]]
    assert {r["status"] for r in runs} == {"succeeded"}
    shown = json.loads(keel("runs", "show", first["run_id"][:17], "-f", str(spec), "--json").stdout)
    writes = {e["artifact_id"] for e in shown["lineage"] if e["direction"] == "out"}
    assert first["model"]["bundle"] in writes
    cached = json.loads(keel("runs", "show", second["run_id"], "-f", str(spec), "--json").stdout)
    assert {s["status"] for s in cached["steps"]} == {"cached"}
    assert writes == {e["artifact_id"] for e in cached["lineage"] if e["direction"] == "out"}
    models = json.loads(keel("models", "list", "-f", str(spec), "--json").stdout)
    assert models[0]["name"] == "adult-income" and models[0]["latest"] == 1
    version = keel("models", "show", "adult-income/1", "-f", str(spec))
    assert version.returncode == 0 and "signature verified" in version.stdout
    bundle = json.loads(keel("models", "show", "adult-income/1", "-f", str(spec), "--json").stdout)["bundle"]
    assert set(bundle["manifest"]["components"]) == {"model", "contract", "metrics", "cv", "verdict", "profile",
                                                     "onnx", "engine", "holdout", "predictions"}


def test_changed_param_reruns_train_and_explains(project: tuple[Path, dict, dict], tmp_path: Path) -> None:
    spec, _, _ = project
    text = spec.read_text()
    changed = spec.parent / "changed.yaml"
    changed.write_text(text.replace("family: hist_gradient_boosting",
                                    "family: hist_gradient_boosting\n  params: {max_iter: 60}"))
    result = keel("run", str(changed), "--json", "--explain")
    assert result.returncode == 0, result.stderr
    steps = {s["name"]: s for s in json.loads(result.stdout)["steps"]}
    for cached in ("ingest", "ingest_test", "validate", "split"):
        assert steps[cached]["status"] == "cached"
    assert steps["train"]["status"] == "ran"
    assert steps["train"]["explain"] == ["parameter params.max_iter added: 60"]
    assert steps["evaluate"]["explain"][0].startswith("input model changed")
    outcome = json.loads(result.stdout)
    assert outcome["model"]["version"] == 2 and outcome["model"]["new_version"] is True


def test_tampered_artifact_fails_verify(project: tuple[Path, dict, dict], tmp_path: Path) -> None:
    import shutil

    spec, first, _ = project
    copy = tmp_path / "copy"
    shutil.copytree(spec.parent, copy)
    metrics_id = next(s for s in first["steps"] if s["name"] == "evaluate")["outputs"]["metrics"]
    target = copy / ".keel" / "store" / "objects" / metrics_id[:2] / metrics_id
    blob = bytearray(target.read_bytes())
    blob[-3] ^= 0x40
    target.write_bytes(bytes(blob))
    result = keel("verify", str(copy / "pipeline.yaml"))
    assert result.returncode == 3
    assert "digest mismatch" in result.stderr and "tampered" in result.stderr
    assert "Traceback" not in result.stderr
    rerun = keel("run", str(copy / "pipeline.yaml"), "--json")
    assert rerun.returncode == 0, rerun.stderr
    steps = {s["name"]: s for s in json.loads(rerun.stdout)["steps"]}
    assert steps["evaluate"]["status"] == "ran"
    assert "failed its integrity check" in steps["evaluate"]["explain"][0]
    assert steps["train"]["status"] == "cached"
    assert keel("verify", str(copy / "pipeline.yaml")).returncode == 0


@pytest.mark.slow
def test_the_real_adult_example_reaches_the_quality_bar(tmp_path: Path) -> None:
    """The README's example on all 48,842 rows: ROC AUC >= 0.90 on adult.test, then a fully cached re-run."""
    import shutil

    from tests.helpers import ADULT, without_tuning

    shutil.copytree(ADULT, tmp_path / "adult", ignore=shutil.ignore_patterns(".keel"))
    spec = tmp_path / "adult" / "pipeline.yaml"
    spec.write_text(without_tuning(spec.read_text()))  # tuning is measured by `make demo`, not in tests
    first = keel("run", str(spec), "--json")
    assert first.returncode == 0, first.stderr
    outcome = json.loads(first.stdout)
    assert outcome["primary_metric"]["name"] == "roc_auc"
    assert outcome["primary_metric"]["value"] >= 0.90
    assert outcome["gate"]["passed"] and outcome["model"]["version"] == 1
    second = json.loads(keel("run", str(spec), "--json").stdout)
    assert {s["status"] for s in second["steps"]} == {"cached"}
