"""Model tests from the spec: golden examples, invariance and directional expectations."""

from __future__ import annotations

import pytest

from keelml.errors import SpecError
from keelml.evaluation.model_tests import prediction_agreement, run_model_tests
from keelml.model.catalog import make_pipeline_for
from keelml.model.features import to_xy
from keelml.spec.evaluate import ModelTestsSpec


@pytest.fixture(scope="module")
def binary_model():
    from tests.model.conftest import make_synthetic

    frame, contract = make_synthetic("binary", n=600, seed=4)
    X, y = to_xy(frame, contract)
    return make_pipeline_for(contract, "logistic_regression", {}, seed=0).fit(X, y), frame, contract


def _run(model_frame_contract, **tests):
    model, frame, contract = model_frame_contract
    return run_model_tests(model, frame, contract, ModelTestsSpec.model_validate(tests))


def test_golden_labels_and_ranges(binary_model) -> None:
    strong = {"x": 3.0, "k": "u", "flag": True, "count": 5, "fraction": 0.5, "note": "alpha"}
    result = _run(binary_model, golden=[
        {"name": "clearly yes", "input": strong, "expect": "yes"},
        {"input": strong, "expect": "no"},
        {"input": {"x": -3.0, "k": "w"}, "expect": {"max": 0.2}},  # missing features are null
        {"input": strong, "expect": {"min": 0.2, "max": 0.8}, "proba_of": "yes"},
    ])
    passed = [r["passed"] for r in result["results"]]
    assert passed == [True, False, True, False] and result["passed"] is False and result["count"] == 4
    first, second = result["results"][:2]
    assert first["name"] == "clearly yes" and first["detail"] == "predicted 'yes', expected 'yes'"
    assert second["name"] == "golden[1]" and second["value"] == "yes" and second["limit"] == "no"
    assert "allowed [0.2, 0.8]" in result["results"][3]["detail"]


@pytest.mark.parametrize(("case", "message", "hint"), [
    ({"input": {"xx": 1.0}, "expect": "yes"}, "'xx' is not a feature column", "did you mean 'x'?"),
    ({"input": {"row_id": 1}, "expect": "yes"}, "'row_id' is not a feature column", "fix tests.golden[0]"),
    ({"input": {"x": 1.0}, "expect": "yess"}, "'yess' is not a class of the model", "did you mean 'yes'?"),
    ({"input": {"k": "uu"}, "expect": "yes"}, "'uu' is not a category of 'k'", "did you mean 'u'?"),
    ({"input": {"x": "abc"}, "expect": "yes"}, "cannot be scored", "fix tests.golden[0].input"),
    ({"input": {"x": 1.0}, "expect": {"min": 0.1}, "proba_of": "maybe"}, "proba_of 'maybe'", "proba_of"),
])
def test_golden_mistakes_are_spec_errors(binary_model, case, message, hint) -> None:
    with pytest.raises(SpecError, match=message) as info:
        _run(binary_model, golden=[case])
    assert hint in (info.value.fix or "")


def test_invariance_flags_a_column_the_model_relies_on(binary_model) -> None:
    result = _run(binary_model, invariance=[{"column": "note", "max_flip_rate": 0.1},
                                            {"column": "x", "max_flip_rate": 0.1},
                                            {"column": "flag", "max_flip_rate": 1.0}], sample_rows=200)
    note, x, flag = result["results"]
    assert note["passed"] and note["value"] <= 0.1
    assert not x["passed"] and x["value"] > 0.2
    assert "of 200 predicted labels flipped when x was set to uniform in" in x["detail"]
    assert flag["passed"] and "another of its 2 values" in flag["detail"]
    again = _run(binary_model, invariance=[{"column": "x", "max_flip_rate": 0.1}], sample_rows=200)
    assert again["results"][0]["value"] == x["value"]  # seeded


def test_directional_expectations(binary_model) -> None:
    result = _run(binary_model, directional=[{"column": "x", "direction": "increasing"},
                                             {"column": "x", "direction": "decreasing", "tolerance": 0.01}])
    up, down = result["results"]
    assert up["passed"] and up["value"] == 0.0 and up["name"] == "x increasing"
    assert not down["passed"] and down["value"] > 0.01
    with pytest.raises(SpecError, match="'k' is category, not numeric"):
        _run(binary_model, directional=[{"column": "k"}])


def test_regression_and_multiclass(synthetic) -> None:
    frame, contract = synthetic("regression", n=300, seed=5)
    X, y = to_xy(frame, contract)
    model = make_pipeline_for(contract, "logistic_regression", {}, seed=0).fit(X, y)  # Ridge for regression
    result = run_model_tests(model, frame, contract, ModelTestsSpec.model_validate({
        "golden": [{"input": {"x": 2.0, "k": "u"}, "expect": {"min": 10.0}}],
        "invariance": [{"column": "x", "max_flip_rate": 0.0, "tolerance": 1e9}],
        "directional": [{"column": "x"}]}))
    assert [r["passed"] for r in result["results"]] == [True, True, True]
    assert "moved by more than 1e+09" in result["results"][1]["detail"]
    with pytest.raises(SpecError, match="a regression model is tested against a range"):
        run_model_tests(model, frame, contract, ModelTestsSpec.model_validate(
            {"golden": [{"input": {"x": 1.0}, "expect": 12.5}]}))
    frame, contract = synthetic("multiclass", n=300, seed=5)
    X, y = to_xy(frame, contract)
    model = make_pipeline_for(contract, "logistic_regression", {}, seed=0).fit(X, y)
    with pytest.raises(SpecError, match="a multiclass model needs proba_of"):
        run_model_tests(model, frame, contract, ModelTestsSpec.model_validate({"directional": [{"column": "x"}]}))
    result = run_model_tests(model, frame, contract, ModelTestsSpec.model_validate(
        {"directional": [{"column": "x", "proba_of": "high"}]}))
    assert result["results"][0]["passed"]


def test_prediction_agreement(binary_model) -> None:
    model, frame, contract = binary_model
    assert prediction_agreement(model, model, frame, contract) == 1.0
    X, y = to_xy(frame, contract)
    other = make_pipeline_for(contract, "logistic_regression", {"C": 1e-4}, seed=0).fit(X, y)
    assert 0.0 < prediction_agreement(model, other, frame, contract) < 1.0
