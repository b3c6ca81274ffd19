"""Security audit steps: membership and attribute inference, and robustness to perturbations.

What a step computes with (polars, scikit-learn, skops, and the keelml modules that load them) is
imported inside the step: a fully cached run decodes no table and fits nothing, so it must not pay for
importing them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from threadpoolctl import threadpool_limits

from keelml.data.contract import Contract
from keelml.engine.executors import Backend
from keelml.pipeline.steps.training import executor_for


def privacy(*, params: Mapping[str, Any], resources: Mapping[str, int], model: Any, train: Any, test: Any,
            contract: Mapping[str, Any], backend: Backend | None = None) -> dict[str, Any]:
    """Membership-inference audit (members vs held-out rows) and attribute inference per sensitive column."""
    from keelml.security.membership import privacy_audit

    with threadpool_limits(limits=resources["threads"]):
        report = privacy_audit(model, train, test, Contract.model_validate(contract),
                               sample_size=params["sample_rows"], seed=params["seed"],
                               max_auc=params["max_membership_auc"],
                               flag_advantage=params["attribute_advantage_flag"],
                               executor=executor_for(backend, 1, resources["threads"]))
    return {"report": report}


def robustness(*, params: Mapping[str, Any], resources: Mapping[str, int], model: Any, train: Any, test: Any,
               contract: Mapping[str, Any], backend: Backend | None = None) -> dict[str, Any]:
    """Prediction flip rate under contract-valid perturbations; optionally a black-box attack."""
    from keelml.security.robustness import robustness_audit

    with threadpool_limits(limits=resources["threads"]):
        report = robustness_audit(model, train, test, Contract.model_validate(contract),
                                  noise_scale=params["noise_scale"], swap_fraction=params["swap_fraction"],
                                  sample_size=params["sample_rows"], seed=params["seed"],
                                  max_flip_rate=params["max_flip_rate"], attack=params["attack"],
                                  attack_rows=params["attack_rows"],
                                  executor=executor_for(backend, 1, resources["threads"]))
    return {"report": report}
