"""The estimator catalog: model family + task + hyperparameters -> a seeded scikit-learn estimator."""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sklearn.base import BaseEstimator, is_classifier, is_regressor
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from keelml.errors import DataError, SpecError
from keelml.model.preprocess import preprocessor_for
from keelml.model.private import make_private_pipeline
from keelml.spec.model import IMPORT_PATH_PATTERN, MODEL_FAMILIES

if TYPE_CHECKING:
    from keelml.data.contract import Contract
    from keelml.spec.model import PreprocessSpec

FAMILIES = MODEL_FAMILIES
TASKS = ("binary", "multiclass", "regression")
NATIVE_CATEGORICAL = ("hist_gradient_boosting", "lightgbm")  # families fed ordinal codes, NaN kept


def is_import_path(family: str) -> bool:
    """True for a `module:Class` family (an estimator named by the spec rather than the catalog)."""
    return re.match(IMPORT_PATH_PATTERN, family) is not None


def estimator_class(path: str) -> type:
    """The class a `module:Class` family names; SpecError if it cannot be imported or is no estimator."""
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"model.family {path!r}: cannot import module {module_name!r} ({exc})",
                        expected="an installed module and a class in it, as module:Class (e.g. sklearn.svm:SVC)",
                        fix="install the package that provides it, or fix the import path") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise SpecError(f"model.family {path!r}: module {module_name!r} has no class {class_name!r}",
                        expected="module:Class naming a scikit-learn-compatible estimator class",
                        fix="fix the class name (it is case-sensitive)")
    if not all(callable(getattr(cls, m, None)) for m in ("fit", "get_params", "set_params")):
        raise SpecError(f"model.family {path!r} is not a scikit-learn-compatible estimator",
                        expected="a class with fit, get_params and set_params (e.g. derived from BaseEstimator)",
                        fix="name an estimator class, or wrap your model in one")
    return cls


def trusted_types(family: str) -> tuple[str, ...]:
    """Types a model of this family may hold beyond trust.TRUSTED_TYPES: exactly the declared class."""
    if not is_import_path(family):
        return ()
    cls = estimator_class(family)
    return (f"{cls.__module__}.{cls.__qualname__}",)


def _lightgbm(classification: bool) -> Any:
    try:
        import lightgbm  # optional extra, only for model.family lightgbm
    except ImportError:
        raise SpecError("model.family lightgbm needs the LightGBM package, which is not installed",
                        expected="lightgbm importable in the environment that runs keel",
                        fix='pip install "keelml[lightgbm]" (or choose hist_gradient_boosting, '
                            "which needs nothing extra)") from None
    cls = lightgbm.LGBMClassifier if classification else lightgbm.LGBMRegressor
    return cls(n_jobs=1, verbose=-1)


def _imported(path: str, task: str) -> Any:
    cls = estimator_class(path)
    try:
        estimator = cls()
    except TypeError as exc:
        raise SpecError(f"model.family {path!r} cannot be created without arguments: {exc}",
                        expected="an estimator whose constructor arguments all have defaults",
                        fix="wrap it in a class with defaults, and set values in model.params") from None
    if task == "regression" and is_classifier(estimator):
        raise SpecError(f"model.family {path!r} is a classifier but the task is regression",
                        expected="a regressor for a numeric target", fix="name a regressor class")
    if task != "regression" and is_regressor(estimator):
        raise SpecError(f"model.family {path!r} is a regressor but the task is {task} classification",
                        expected="a classifier for a categorical target", fix="name a classifier class")
    return estimator


def _base_estimator(family: str, task: str) -> Any:
    classification = task != "regression"
    if family == "hist_gradient_boosting":
        return HistGradientBoostingClassifier() if classification else HistGradientBoostingRegressor()
    if family in ("logistic_regression", "linear"):
        return LogisticRegression(max_iter=1000) if classification else Ridge()
    if family == "random_forest":
        return RandomForestClassifier(n_jobs=1) if classification else RandomForestRegressor(n_jobs=1)
    if family == "lightgbm":
        return _lightgbm(classification)
    if is_import_path(family):
        return _imported(family, task)
    close = difflib.get_close_matches(family, FAMILIES, n=1, cutoff=0.5)
    raise DataError(
        f"unknown model family {family!r}",
        expected="one of: " + ", ".join(FAMILIES) + ", or an estimator's import path module:Class",
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
    if callable(validate) and hasattr(estimator, "_parameter_constraints"):
        try:
            validate()
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"invalid hyperparameter value for {family} ({type(estimator).__name__}): {exc}",
                expected="values of the type and range scikit-learn documents for this estimator",
                fix="change the offending value in model.params",
            ) from None
    if task != "regression" and not hasattr(estimator, "predict_proba"):
        raise SpecError(
            f"model.family {family!r} ({type(estimator).__name__}) gives no class probabilities (predict_proba)",
            expected="a classifier with predict_proba: evaluation needs probabilities",
            fix="set the parameter that enables them (e.g. probability: true for SVC) in model.params, "
                "or choose another estimator",
        )
    result: BaseEstimator = estimator
    return result


def make_pipeline_for(contract: Contract, family: str, params: Mapping[str, Any], seed: int,
                      preprocess: PreprocessSpec | None = None) -> Pipeline:
    """The full model: the contract's preprocessing (spec `preprocess:`, None = defaults), then the estimator.

    Histogram gradient boosting gets native categorical splits on ordinal codes (unless the spec
    sets `categorical_features` itself or another encoding) and LightGBM ordinal codes with NaN kept;
    the other families (and estimators named by import path) get imputation, scaling and one-hot;
    see model/preprocess.py.
    """
    if family.startswith("dp_"):  # differentially private (extra `dp`): contract-only preprocessing

        return make_private_pipeline(contract, family, params, seed)
    estimator = make_estimator(family, contract.task, params, seed)
    features, mask = preprocessor_for(contract, family, params, preprocess)
    if mask and family == "hist_gradient_boosting":
        estimator.set_params(categorical_features=mask)
    return Pipeline([("features", features), ("model", estimator)])
