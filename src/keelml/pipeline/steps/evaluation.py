"""Evaluation steps: held-out metrics and analysis, model tests, the comparison with production, the gate.

What a step computes with (polars, scikit-learn, skops, and the keelml modules that load them) is
imported inside the step: a fully cached run decodes no table and fits nothing, so it must not pay for
importing them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from threadpoolctl import threadpool_limits

from keelml.data.contract import Contract
from keelml.evaluation.gate import gate_checks, production_checks, verdict_of
from keelml.security.gate import security_checks
from keelml.spec.evaluate import EvaluateSpec, ModelTestsSpec


def evaluate(*, params: Mapping[str, Any], resources: Mapping[str, int], model: Any, test: Any,
             contract: Mapping[str, Any]) -> dict[str, Any]:
    """Score the held-out data: metrics with bootstrap intervals and curves, the analysis (slices,
    error analysis, fairness) and the predictions."""
    from keelml.evaluation.evaluate import evaluate_all

    with threadpool_limits(limits=resources["threads"]):
        metrics, analysis, predictions = evaluate_all(model, test, Contract.model_validate(contract),
                                                      EvaluateSpec.model_validate(params))
    return {"metrics": metrics, "analysis": analysis, "predictions": predictions}


def model_tests(*, params: Mapping[str, Any], resources: Mapping[str, int], model: Any, test: Any,
                contract: Mapping[str, Any]) -> dict[str, Any]:
    """Run the spec's model tests (golden, invariance, directional) on the candidate."""
    from keelml.evaluation.model_tests import run_model_tests

    with threadpool_limits(limits=resources["threads"]):
        results = run_model_tests(model, test, Contract.model_validate(contract), ModelTestsSpec.model_validate(params))
    return {"results": results}


def compare(*, params: Mapping[str, Any], resources: Mapping[str, int],
            load_reference: Callable[[Mapping[str, Any]], tuple[Any, Mapping[str, Any]]], model: Any, test: Any,
            contract: Mapping[str, Any]) -> dict[str, Any]:
    """The candidate against the production version (params["production"]: name, version, bundle digest)
    on the same held-out rows; `load_reference` verifies that version's bundle before loading its model."""
    reference = params["production"]
    if reference is None:
        return {"comparison": {"reference": None}}

    from keelml.evaluation.compare import compare_models

    production, production_contract = load_reference(reference)
    with threadpool_limits(limits=resources["threads"]):
        result = compare_models(model, production, test, Contract.model_validate(contract),
                                Contract.model_validate(production_contract), metric=params["metric"],
                                bins=params["slice_bins"], min_slice_rows=params["min_slice_rows"],
                                tolerance=params["agreement_tolerance"])
    return {"comparison": {"reference": dict(reference), **result}}


def gate(*, params: Mapping[str, Any], metrics: Mapping[str, Any], analysis: Mapping[str, Any] | None = None,
         tests: Mapping[str, Any] | None = None, privacy: Mapping[str, Any] | None = None,
         robustness: Mapping[str, Any] | None = None, comparison: Mapping[str, Any] | None = None,
         model_id: str | None = None, metrics_id: str | None = None, analysis_id: str | None = None,
         tests_id: str | None = None, privacy_id: str | None = None, robustness_id: str | None = None,
         comparison_id: str | None = None) -> dict[str, Any]:
    """Pass or refuse the model: primary metric, fairness, model tests, security limits and the comparison
    with the production version (each with its reason).

    The verdict names what it judged (`judged`: the SHA-256 of the model and of every input it read, the
    `*_id` refs), so it cannot vouch for another model: registration checks it against the bundle's
    components, and refuses a verdict that names no model or metrics.
    """
    checks = [*gate_checks(params, metrics, analysis, tests), *security_checks(params, privacy, robustness),
              *production_checks(params, comparison)]
    judged = {"model": model_id, "metrics": metrics_id, "analysis": analysis_id, "tests": tests_id,
              "privacy": privacy_id, "robustness": robustness_id, "comparison": comparison_id}
    verdict = verdict_of(checks, min_score_set=params.get("min_score") is not None)
    return {"verdict": {**verdict, "judged": {name: digest for name, digest in judged.items() if digest}}}
