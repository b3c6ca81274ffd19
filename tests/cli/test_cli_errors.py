"""Bad input: exit code 2, one message saying what was wrong, what was expected and how to fix it."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.helpers import ADULT, keel

SPEC = """name: errs
data:
  target: {target}
  train:
    path: {path}
    csv: {{has_header: true}}
"""


def _project(tmp_path: Path, *, target: str = "label", rows: str = "a,b,label\n1,x,yes\n2,y,no\n3,x,yes\n4,y,no\n",
             extra: str = "") -> Path:
    (tmp_path / "data.csv").write_text(rows)
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(SPEC.format(target=target, path="data.csv") + extra)
    return spec


def _assert_user_error(result: object, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)  # type: ignore[attr-defined]
    err = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in err
    assert "expected:" in err and "fix:" in err
    for fragment in fragments:
        assert fragment in err, err


def test_spec_typo(tmp_path: Path) -> None:
    spec = _project(tmp_path, extra="modle: {family: random_forest}\n")
    _assert_user_error(keel("run", str(spec)), "unknown key 'modle'", "did you mean 'model'?")


def test_missing_data_file(tmp_path: Path) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(SPEC.format(target="label", path="nowhere.csv"))
    _assert_user_error(keel("run", str(spec)), "file not found", "nowhere.csv", "data.train.path")
    assert not (tmp_path / ".keel").exists()  # bad input leaves nothing behind


def test_missing_spec(tmp_path: Path) -> None:
    _assert_user_error(keel("run", str(tmp_path / "absent.yaml")), "spec file not found", "keel init")


def test_target_column_does_not_exist(tmp_path: Path) -> None:
    spec = _project(tmp_path, target="lable")
    _assert_user_error(keel("run", str(spec)), "lable", "label")


def test_target_with_one_class(tmp_path: Path) -> None:
    spec = _project(tmp_path, rows="a,b,label\n1,x,yes\n2,y,yes\n3,x,yes\n4,y,yes\n")
    _assert_user_error(keel("run", str(spec)), "one class")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    spec = _project(tmp_path, target="lable")
    result = keel("--debug", "run", str(spec))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_failed_run_is_recorded_as_failed(tmp_path: Path) -> None:
    spec = _project(tmp_path, rows="a,b,label\n1,x,yes\n2,y,yes\n3,x,yes\n4,y,yes\n")
    keel("run", str(spec))
    listing = keel("runs", "list", "-f", str(spec))
    assert "failed" in listing.stdout


def test_reading_commands_do_not_invent_a_store(tmp_path: Path) -> None:
    spec = _project(tmp_path)
    _assert_user_error(keel("models", "list", "-f", str(spec)), "keys are missing")
    assert not (tmp_path / ".keel" / "keys").exists()


def test_unknown_model(tmp_path: Path) -> None:
    spec = _project(tmp_path)
    keel("init", str(tmp_path))
    _assert_user_error(keel("models", "show", "ghost", "-f", str(spec)), "no model named 'ghost'")


def test_init_writes_a_runnable_starter_and_private_keys(tmp_path: Path) -> None:
    result = keel("init", str(tmp_path / "proj"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "proj" / "pipeline.yaml").is_file()
    for name in ("master.key", "signing.key"):
        assert stat.S_IMODE((tmp_path / "proj" / ".keel" / "keys" / name).stat().st_mode) == 0o600
    assert ".keel/" in (tmp_path / "proj" / ".gitignore").read_text()
    again = keel("init", str(tmp_path / "proj"))
    assert again.returncode == 0 and "kept existing keys" in again.stdout
    # the starter spec names data.csv, which does not exist yet: a clear error, not a crash
    _assert_user_error(keel("run", str(tmp_path / "proj" / "pipeline.yaml")), "data.csv")


def test_help_is_fast_to_import() -> None:
    import subprocess
    import sys

    code = ("import sys, keelml.cli.main; heavy = {'sklearn', 'polars', 'pandas', 'sqlalchemy', 'pyarrow', "
            "'skops', 'numpy'}; print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert ADULT.is_dir()


def test_brackets_in_messages_survive(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,label\n1,x\n")
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(SPEC.replace("name: errs", "name: Bad Name!").format(target="label", path="data.csv"))
    _assert_user_error(keel("run", str(spec)), "name", "[a-z0-9]")


def test_gate_refusal_fails_the_command_and_registers_a_rejected_version(tmp_path: Path) -> None:
    import json

    from tests.helpers import small_adult_project

    spec = small_adult_project(tmp_path, train_rows=1500, test_rows=600, cv_folds=2, bootstrap_rounds=0)
    spec.write_text(spec.read_text().replace("min_score: 0.80", "min_score: 0.999"))
    result = keel("run", str(spec))
    assert result.returncode == 4, result.stderr
    assert "gate refused the model" in result.stderr and "no bootstrap interval" in result.stdout
    assert "registered as adult-income v1 with status rejected" in result.stderr
    as_json = keel("run", str(spec), "--json")
    model = json.loads(as_json.stdout)["model"]
    assert as_json.returncode == 4 and model["status"] == "rejected" and model["new_version"] is False
    assert model["reasons"] and "< required 0.9990" in model["reasons"][0]
    listing = json.loads(keel("models", "list", "-f", str(spec), "--json").stdout)
    assert [(e["version"], e["status"]) for e in listing[0]["entries"]] == [(1, "rejected")]
    _assert_user_error(keel("models", "verify", "adult-income", "-f", str(spec)), "no accepted version")
    _assert_user_error(keel("models", "promote", "adult-income", "1", "--reason", "anyway", "-f", str(spec)),
                       "adult-income v1 was rejected by the gate", "cannot be promoted to production")


def test_store_path_that_is_a_file(tmp_path: Path) -> None:
    spec = _project(tmp_path, extra="store: {path: data.csv}\n")
    _assert_user_error(keel("run", str(spec)), "is a file", "directory")


def test_malformed_metadata_url(tmp_path: Path) -> None:
    spec = _project(tmp_path, extra="store: {metadata_url: notaurl}\n")
    _assert_user_error(keel("run", str(spec)), "store.metadata_url is not a valid database URL")


def test_hyperparameters_that_fail_at_fit_time(tmp_path: Path) -> None:
    rows = "a,b,label\n" + "".join(f"{i},{'xy'[i % 2]},{'yes' if i % 3 else 'no'}\n" for i in range(60))
    spec = _project(tmp_path, rows=rows,
                    extra="model: {family: logistic_regression, params: {penalty: l1, solver: lbfgs}, cv_folds: 2}\n")
    _assert_user_error(keel("run", str(spec)), "training logistic_regression failed", "model.params")


def test_a_boolean_target_trains(tmp_path: Path) -> None:
    import json

    rows = "x,c,label\n" + "".join(f"{i % 7},{'abc'[i % 3]},{'true' if i % 7 > 3 else 'false'}\n" for i in range(90))
    spec = _project(tmp_path, rows=rows, extra="model: {cv_folds: 2}\n")
    result = keel("run", str(spec), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"]["version"] == 1
