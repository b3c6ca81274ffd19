"""The estimator catalog: model family + task + hyperparameters -> a seeded scikit-learn estimator."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from keelml.errors import DataError
from keelml.model.preprocess import preprocessor_for

if TYPE_CHECKING:
    from keelml.data.contract import Contract
    from keelml.spec import PreprocessSpec

FAMILIES = ("hist_gradient_boosting", "logistic_regression", "random_forest")
TASKS = ("binary", "multiclass", "regression")


def _base_estimator(family: str, task: str) -> Any:
    classification = task != "regression"
    if family == "hist_gradient_boosting":
        return HistGradientBoostingClassifier() if classification else HistGradientBoostingRegressor()
    if family == "logistic_regression":
        return LogisticRegression(max_iter=1000) if classification else Ridge()
    if family == "random_forest":
        return RandomForestClassifier(n_jobs=1) if classification else RandomForestRegressor(n_jobs=1)
    close = difflib.get_close_matches(family, FAMILIES, n=1, cutoff=0.5)
    raise DataError(
        f"unknown model family {family!r}",
        expected="one of: " + ", ".join(FAMILIES),
        fix=(f"did you mean {close[0]!r}? " if close else "") + "set model.family to a supported family",
    )


def make_estimator(family: str, task: str, params: Mapping[str, Any], seed: int) -> BaseEstimator:
    """A fresh estimator for the family and task with random_state=seed and the given params.

    Unknown parameter names and invalid values raise DataError (with a did-you-mean hint).
    """
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}", expected="one of: " + ", ".join(TASKS),
                        fix="fix the task in the data contract")
    estimator = _base_estimator(family, task)
    valid = sorted(estimator.get_params(deep=False))
    if "random_state" in valid:
        estimator.set_params(random_state=seed)
    for name in params:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DataError(
                f"unknown hyperparameter {name!r} for {family} ({type(estimator).__name__})",
                expected="one of: " + ", ".join(valid),
                fix=f"{hint}rename or remove {name!r} in model.params",
            )
    if family == "hist_gradient_boosting" and params.get("scoring", "loss") != "loss":
        raise DataError(
            f"model.params.scoring={params['scoring']!r} is not supported for hist_gradient_boosting",
            expected="scoring: loss (the default), which early-stops on the validation loss",
            fix="remove `scoring` from model.params: a scorer stored on the model cannot be saved safely",
        )
    estimator.set_params(**dict(params))
    validate = getattr(estimator, "_validate_params", None)
    if callable(validate):
        try:
            validate()
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"invalid hyperparameter value for {family} ({type(estimator).__name__}): {exc}",
                expected="values of the type and range scikit-learn documents for this estimator",
                fix="change the offending value in model.params",
            ) from None
    result: BaseEstimator = estimator
    return result


def make_pipeline_for(contract: Contract, family: str, params: Mapping[str, Any], seed: int,
                      preprocess: PreprocessSpec | None = None) -> Pipeline:
    """The full model: the contract's preprocessing (spec `preprocess:`, None = defaults), then the estimator.

    Histogram gradient boosting gets native categorical splits on ordinal codes (unless the spec
    sets `categorical_features` itself or another encoding); see model/preprocess.py.
    """
    if family.startswith("dp_"):  # differentially private (extra `dp`): contract-only preprocessing
        from keelml.model.private import make_private_pipeline

        return make_private_pipeline(contract, family, params, seed)
    estimator = make_estimator(family, contract.task, params, seed)
    features, mask = preprocessor_for(contract, family, params, preprocess)
    if mask:
        estimator.set_params(categorical_features=mask)
    return Pipeline([("features", features), ("model", estimator)])
