"""Search spaces: each family's default ranges, merged with the spec's, and sampling from them with Optuna."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keelml.errors import SpecError
from keelml.spec.model import ParamRange


def _r(low: float, high: float, *, log: bool = False, integer: bool = False) -> ParamRange:
    return ParamRange(low=low, high=high, log=log, integer=integer)


# Ranges that contain the scikit-learn / LightGBM defaults and the values that usually win on tabular data.
_BOOSTING = {
    "learning_rate": _r(0.02, 0.3, log=True),
    "max_leaf_nodes": _r(8, 128, log=True, integer=True),
    "min_samples_leaf": _r(5, 200, log=True, integer=True),
    "l2_regularization": _r(1e-6, 10.0, log=True),
    "max_iter": _r(50, 500, log=True, integer=True),
}
_LIGHTGBM = {
    "learning_rate": _r(0.02, 0.3, log=True),
    "num_leaves": _r(8, 128, log=True, integer=True),
    "min_child_samples": _r(5, 200, log=True, integer=True),
    "reg_lambda": _r(1e-6, 10.0, log=True),
    "n_estimators": _r(50, 500, log=True, integer=True),
    "colsample_bytree": _r(0.5, 1.0),
}
_FOREST = {
    "n_estimators": _r(50, 200, log=True, integer=True),
    "min_samples_leaf": _r(1, 20, log=True, integer=True),
    "max_features": _r(0.2, 1.0),
}
DEFAULT_SPACES: dict[tuple[str, str], dict[str, ParamRange]] = {
    ("hist_gradient_boosting", "classification"): _BOOSTING,
    ("hist_gradient_boosting", "regression"): _BOOSTING,
    ("lightgbm", "classification"): _LIGHTGBM,
    ("lightgbm", "regression"): _LIGHTGBM,
    ("random_forest", "classification"): _FOREST,
    ("random_forest", "regression"): _FOREST,
    ("logistic_regression", "classification"): {"C": _r(1e-4, 100.0, log=True)},
    ("logistic_regression", "regression"): {"alpha": _r(1e-4, 1000.0, log=True)},
    ("linear", "classification"): {"C": _r(1e-4, 100.0, log=True)},
    ("linear", "regression"): {"alpha": _r(1e-4, 1000.0, log=True)},
}


def default_space(family: str, task: str) -> dict[str, ParamRange]:
    """The family's default space ({} for an estimator named by import path)."""
    kind = "regression" if task == "regression" else "classification"
    return dict(DEFAULT_SPACES.get((family, kind), {}))


def resolve_space(family: str, task: str, fixed: Mapping[str, Any],
                  overrides: Mapping[str, ParamRange]) -> dict[str, ParamRange]:
    """The space to search: the default without the parameters model.params fixes, plus tune.space.

    An entry in tune.space always wins (also over model.params).
    """
    space = {k: v for k, v in default_space(family, task).items() if k not in fixed}
    space.update(overrides)
    if not space:
        raise SpecError(
            f"nothing to tune for model.family {family!r}",
            expected="tune.space with at least one parameter range, e.g. tune.space: {C: {low: 0.01, high: 100, "
                     "log: true}} (estimators named by import path have no default space; parameters "
                     "set in model.params are not tuned)",
            fix="add tune.space, or remove the tune section",
        )
    return dict(sorted(space.items()))


def suggest(trial: Any, space: Mapping[str, ParamRange]) -> dict[str, Any]:
    """Sample one value per parameter through an Optuna trial."""
    params: dict[str, Any] = {}
    for name, rng in space.items():
        if rng.choices is not None:
            params[name] = trial.suggest_categorical(name, rng.choices)
        elif rng.integer:
            assert rng.low is not None and rng.high is not None
            step = int(rng.step) if rng.step and not rng.log else 1
            params[name] = trial.suggest_int(name, int(rng.low), int(rng.high), step=step, log=rng.log)
        else:
            assert rng.low is not None and rng.high is not None
            step_f = None if rng.log else rng.step
            params[name] = trial.suggest_float(name, float(rng.low), float(rng.high), step=step_f, log=rng.log)
    return params


def space_as_json(space: Mapping[str, ParamRange]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rng in space.items():
        entry = rng.model_dump(mode="json", exclude_none=True)
        if rng.integer:
            entry.update({k: int(entry[k]) for k in ("low", "high", "step") if k in entry})
        out[name] = entry
    return out
