from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from keelml.errors import SpecError
from keelml.spec.pipeline import PipelineSpec, load_spec, parse_spec

MINIMAL = "name: demo\ndata:\n  target: y\n  train: {path: data.csv}\n"


def test_defaults_live_in_the_spec() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.model.family == "hist_gradient_boosting"
    assert spec.model.cv_folds == 5
    assert spec.store.encryption is True
    assert spec.split.test_size == 0.2
    assert spec.data.train.resolved_format() == "csv"


def test_unknown_key_names_valid_keys_and_did_you_mean() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(MINIMAL + "modle: {}\n")
    text = str(info.value)
    assert "unknown key 'modle'" in text
    assert "did you mean 'model'?" in text
    assert "contract, data, description, evaluate" in text


def test_nested_unknown_key() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(MINIMAL + "model: {cv_fold: 3}\n")
    assert "unknown key 'cv_fold' in model" in str(info.value)
    assert "did you mean 'cv_folds'?" in str(info.value)


def test_invalid_value_says_where() -> None:
    with pytest.raises(SpecError, match=r"model\.cv_folds.*greater than or equal to 2"):
        parse_spec(MINIMAL + "model: {cv_folds: 1}\n")
    with pytest.raises(SpecError, match="split.test_size"):
        parse_spec(MINIMAL + "split: {test_size: 1.5}\n")


def test_missing_required_key() -> None:
    with pytest.raises(SpecError, match="required key 'data.target' is missing"):
        parse_spec("name: demo\ndata:\n  train: {path: x.csv}\n")


def test_yaml_syntax_error_has_a_line_number() -> None:
    with pytest.raises(SpecError, match="line [23]"):
        parse_spec("name: demo\ndata: [unclosed, x\nother: 1\n")


def test_encryption_off_is_yaml_false() -> None:
    assert parse_spec(MINIMAL + "store: {encryption: off}\n").store.encryption is False


def test_relative_paths_resolve_against_the_spec(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "pipeline.yaml").write_text(MINIMAL)
    loaded = load_spec(tmp_path / "p")
    assert loaded.resolve("data.csv") == str((tmp_path / "p" / "data.csv").resolve())
    assert loaded.resolve("s3://bucket/x.csv") == "s3://bucket/x.csv"
    assert len(loaded.digest) == 64


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="keel init"):
        load_spec(tmp_path / "nope.yaml")


def test_starter_template_is_a_valid_spec() -> None:
    text = resources.files("keelml").joinpath("templates/pipeline.yaml").read_text()
    spec = parse_spec(text)
    assert isinstance(spec, PipelineSpec)
    assert spec.name == "my-model"


def test_target_cannot_be_dropped() -> None:
    with pytest.raises(SpecError, match="also listed in data.drop_columns"):
        parse_spec(MINIMAL.replace("target: y", "target: y\n  drop_columns: [y]"))


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(SpecError, match="duplicate key 'model'"):
        parse_spec(MINIMAL + "model: {cv_folds: 3}\nmodel: {cv_folds: 4}\n")


def test_yaml_merge_keys_still_work() -> None:
    spec = parse_spec(MINIMAL.replace("train: {path: data.csv}",
                                      "train: {path: a.csv, csv: &o {delimiter: ';'}}\n"
                                      "  test: {path: b.csv, csv: {<<: *o, skip_rows: 1}}"))
    assert spec.data.test is not None and spec.data.test.csv.delimiter == ";"


def test_typo_in_a_required_key_gets_a_did_you_mean() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec("name: demo\ndata:\n  target: y\n  trian: {path: data.csv}\n")
    assert "unknown key 'trian'" in str(info.value) and "did you mean 'train'?" in str(info.value)


def test_model_tests_section() -> None:
    spec = parse_spec(MINIMAL + """
tests:
  golden:
    - {input: {x: 1}, expect: "yes"}
    - {input: {x: 2}, expect: {min: 0.2, max: 0.8}, proba_of: "yes"}
    - {input: {x: 3}, expect: true}
  invariance: [{column: sex, max_flip_rate: 0.02}]
  directional: [{column: age}]
gate: {max_fairness_difference: 0.1}
""")
    golden = spec.tests.golden
    assert golden[0].expect == "yes" and golden[2].expect is True
    assert (golden[1].expect.min, golden[1].expect.max) == (0.2, 0.8)  # type: ignore[union-attr]
    assert spec.tests.directional[0].direction == "increasing" and spec.tests.directional[0].tolerance == 0.0
    assert spec.gate.max_fairness_difference == 0.1 and spec.evaluate.min_slice_rows == 50
    assert parse_spec(MINIMAL + "tests:\n").tests.golden == []


@pytest.mark.parametrize(("extra", "message"), [
    ("tests: {golden: [{input: {x: 1}, expct: 'a'}]}", "unknown key 'expct' in tests.golden.0"),
    ("tests: {golden: [{input: {x: 1}, expect: {}}]}", "give min, max or both"),
    ("tests: {golden: [{input: {x: 1}, expect: {min: 0.9, max: 0.1}}]}", "min 0.9 is larger than max 0.1"),
    ("tests: {invariance: [{column: a, max_flip_rate: 2}]}", "less than or equal to 1"),
    ("tests: {directional: [{column: a, direction: up}]}", "'increasing' or 'decreasing'"),
    ("gate: {max_fairness_difference: -1}", "greater than or equal to 0"),
])
def test_model_tests_mistakes(extra: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(MINIMAL + extra + "\n")


def test_tune_and_model_training_keys() -> None:
    base = "name: x\ndata: {train: {path: a.csv}, target: y}\n"
    assert parse_spec(base).tune is None  # no section: no tuning
    assert parse_spec(base + "tune:\n").tune.trials == 30  # a bare section: the defaults
    spec = parse_spec(base + "model: {family: 'sklearn.svm:SVC', group_column: user}\n"
                      "tune: {trials: 5, space: {C: {low: 1, high: 100, log: true}, k: {choices: [a, 2]},"
                      " r: {low: 0.1, high: 0.9}}}\n")
    assert spec.model.family == "sklearn.svm:SVC" and spec.model.group_column == "user"
    space = spec.tune.space
    assert space["C"].integer is True and space["r"].integer is False and space["k"].choices == ["a", 2]
    bad = {
        "model: {family: randomforest}": "did you mean 'random_forest'?",
        "model: {group_column: a, time_column: b}": "not both",
        "model: {learning_curve: {sizes: [0, 0.5]}}": "fractions",
        "tune: {space: {C: {low: 10, high: 1}}}": "must not exceed",
        "tune: {space: {C: {low: 0, high: 1, log: true}}}": "log: true needs low > 0",
        "tune: {space: {C: {choices: [[1, 2]]}}}": "choices must be numbers",
        "tune: {pruner: hyperband}": "tune.pruner",
    }
    for extra, message in bad.items():
        with pytest.raises(SpecError) as info:
            parse_spec(base + extra)
        assert message in info.value.what
    with pytest.raises(SpecError) as typo:
        parse_spec(base + "tune: {space: {C: {lw: 1}}}")
    assert "'lw' in tune.space.C" in typo.value.what and "did you mean 'low'?" in (typo.value.fix or "")
