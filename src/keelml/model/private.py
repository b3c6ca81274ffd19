"""Differentially private training with diffprivlib (extra `dp`): families dp_logistic_regression, dp_random_forest.

A differential-privacy guarantee holds only if nothing but the private estimator looks at the
training data. So these families get a data-independent preprocessing built from the contract
alone: each numeric feature is scaled to [0, 1] by the contract's [min, max] and clipped (missing
-> 0.5), each categorical feature is one-hot encoded over the contract's categories (missing or
unknown -> all zeros). Every row then has an L2 norm of at most sqrt(numeric + categorical
features), which is the `data_norm` the logistic regression is given, and lies in [0, 1]^d, the
`bounds` the random forest and the linear regression are given. The estimator's privacy budget
is `model.params.epsilon`.

diffprivlib's PrivacyLeakWarning (a fit that would read bounds from the data) is an error here.
diffprivlib is imported inside the functions of the dp_* families only: it is an optional extra.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import sklearn
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from keelml.errors import SpecError
from keelml.model.features import FrameCoercer, domain, split_features

if TYPE_CHECKING:
    from keelml.data.contract import Contract

PRIVATE_FAMILIES = ("dp_logistic_regression", "dp_random_forest")
# Set by keelml from the contract; a user value could silently break the guarantee.
MANAGED_PARAMS = ("data_norm", "bounds", "bounds_X", "bounds_y", "classes", "accountant")
_FIX_INSTALL = "pip install 'keelml[dp]' (diffprivlib 0.6.6 needs scikit-learn < 1.8)"


def is_private(family: str) -> bool:
    return family in PRIVATE_FAMILIES


class BoundedScaler(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Scale each column to [0, 1] by fixed bounds and clip; missing values become 0.5. Learns nothing."""

    def __init__(self, lows: list[float], highs: list[float]) -> None:
        self.lows = lows
        self.highs = highs

    def fit(self, X: Any, y: Any = None) -> BoundedScaler:
        self.n_features_in_ = len(self.lows)
        return self

    def transform(self, X: Any) -> np.ndarray:
        values = np.asarray(X, dtype=np.float64)
        low = np.asarray(self.lows, dtype=np.float64)
        span = np.asarray(self.highs, dtype=np.float64) - low
        scaled = np.divide(values - low, span, out=np.zeros_like(values), where=span > 0)
        return np.asarray(np.nan_to_num(np.clip(scaled, 0.0, 1.0), nan=0.5), dtype=np.float64)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        names = input_features if input_features is not None else [f"x{i}" for i in range(len(self.lows))]
        return np.asarray(list(names), dtype=object)


def _diffprivlib() -> Any:
    """The diffprivlib.models module, or a SpecError saying how to get a working one."""
    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    if (major, minor) >= (1, 8):
        raise SpecError(
            f"differentially private families need scikit-learn < 1.8; this environment has {sklearn.__version__}",
            expected="diffprivlib 0.6.6 (its latest release) with scikit-learn 1.5 to 1.7",
            fix=_FIX_INSTALL + ", in its own virtual environment, or choose a non-dp model.family",
        )
    try:
        import diffprivlib.models as models
    except ImportError as exc:
        raise SpecError(f"model.family dp_* needs diffprivlib, which cannot be imported ({exc})",
                        expected="the optional extra `dp` installed", fix=_FIX_INSTALL) from None
    return models


def _refuse(what: str, expected: str, fix: str) -> SpecError:
    return SpecError(what, expected=expected, fix=fix)


def build_private_preprocessor(contract: Contract) -> tuple[Pipeline, int, int]:
    """The data-independent preprocessing; returns (pipeline, output width, L2 norm bound squared)."""
    numeric, known, free = split_features(contract)
    if free:
        raise _refuse(
            f"differentially private training needs declared categories; column(s) without them: {', '.join(free)}",
            expected="categories: [...] in the contract for every categorical feature",
            fix="declare the categories in the contract (contract.path), or set those columns' role to ignore")
    unbounded = [n for n in numeric if contract.column(n).min is None or contract.column(n).max is None]
    if unbounded:
        raise _refuse(
            f"differentially private training needs a [min, max] for every numeric feature; missing for: "
            f"{', '.join(unbounded)}",
            expected="min and max in the contract for each numeric feature (bounds read from the data leak privacy)",
            fix="set min/max for those columns in the contract (contract.path); declare them from domain knowledge")
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        lows = [float(contract.column(n).min) for n in numeric]  # type: ignore[arg-type]
        highs = [float(contract.column(n).max) for n in numeric]  # type: ignore[arg-type]
        transformers.append(("numeric", BoundedScaler(lows, highs), numeric))
    domains = [domain(contract.column(n)) for n in known]
    if known:
        transformers.append(("categorical", OneHotEncoder(categories=domains, handle_unknown="ignore",
                                                          sparse_output=False), known))
    if not transformers:
        raise _refuse("the contract has no feature columns", expected="at least one column with role: feature",
                      fix="set role: feature on the columns the model should use")
    pipeline = Pipeline([
        ("coerce", FrameCoercer(numeric=numeric, categorical=known)),
        ("columns", ColumnTransformer(transformers, remainder="drop")),
    ])
    width = len(numeric) + sum(len(d) for d in domains)
    return pipeline, width, len(numeric) + len(known)


def make_private_estimator(family: str, contract: Contract, params: Mapping[str, Any], seed: int,
                           width: int, norm_squared: int) -> Any:
    """The diffprivlib estimator with keelml-managed bounds, a fresh budget accountant and the user's params."""
    for name in params:
        if name in MANAGED_PARAMS:
            raise _refuse(f"model.params.{name} is set by keelml for {family}",
                          expected=f"no {name} in model.params: keelml derives it from the contract's ranges",
                          fix=f"remove {name} from model.params; declare min/max or categories in the contract instead")
    models = _diffprivlib()
    from diffprivlib.accountant import BudgetAccountant

    task = contract.task
    ones = (np.zeros(width).tolist(), np.ones(width).tolist())
    managed: dict[str, Any] = {"accountant": BudgetAccountant(), "random_state": seed}
    if family == "dp_logistic_regression" and task != "regression":
        estimator = models.LogisticRegression()
        managed["data_norm"] = math.sqrt(max(norm_squared, 1))
    elif family == "dp_logistic_regression":
        target = contract.column(contract.target)
        if target.min is None or target.max is None:
            raise _refuse("differentially private regression needs the target's [min, max] in the contract",
                          expected=f"min and max for the target {contract.target!r}",
                          fix="set them in the contract (contract.path) from domain knowledge")
        estimator = models.LinearRegression()
        managed.update(bounds_X=ones, bounds_y=(float(target.min), float(target.max)))
    elif family == "dp_random_forest" and task != "regression":
        estimator = models.RandomForestClassifier()
        managed.update(bounds=ones, classes=[str(c) for c in contract.classes or []])
    else:
        raise _refuse(f"{family} does not support regression", expected="a classification task for dp_random_forest",
                      fix="use model.family: dp_logistic_regression (a private linear regression for regression)")
    valid = sorted(estimator.get_params(deep=False))
    for name in params:
        if name not in valid:
            raise _refuse(f"unknown hyperparameter {name!r} for {family} ({type(estimator).__name__})",
                          expected="one of: " + ", ".join(v for v in valid if v not in MANAGED_PARAMS),
                          fix=f"rename or remove {name!r} in model.params")
    epsilon = params.get("epsilon", 1.0)
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not 0 < epsilon < math.inf:
        raise _refuse(f"model.params.epsilon must be a positive number, got {epsilon!r}",
                      expected="epsilon > 0 (smaller = more private, noisier; 1.0 is a common choice)",
                      fix="set model.params.epsilon to a positive number")
    estimator.set_params(**{**managed, **dict(params)})
    return estimator


def make_private_pipeline(contract: Contract, family: str, params: Mapping[str, Any], seed: int) -> Pipeline:
    """The full differentially private model: contract-only preprocessing, then the diffprivlib estimator."""
    features, width, norm_squared = build_private_preprocessor(contract)
    estimator = make_private_estimator(family, contract, params, seed, width, norm_squared)
    return Pipeline([("features", features), ("model", estimator)])


@contextmanager
def privacy_leaks_as_errors(family: str) -> Iterator[None]:
    """Inside: diffprivlib's PrivacyLeakWarning is raised as a SpecError explaining how to avoid it."""
    from diffprivlib.utils import PrivacyLeakWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", PrivacyLeakWarning)
        try:
            yield
        except PrivacyLeakWarning as exc:
            raise SpecError(
                f"training {family} would leak privacy: {str(exc).strip().splitlines()[0]}",
                expected="every bound the private estimator needs given up front, not read from the data",
                fix="declare min/max for every numeric feature (and the target, for regression) and the "
                    "categories of every categorical feature in the contract (contract.path)",
            ) from None


def privacy_record(model: Any, family: str, folds: int) -> dict[str, Any]:
    """What the train report (and so the bundle) records about the privacy guarantee."""
    estimator = model.named_steps["model"]
    epsilon = float(estimator.get_params(deep=False)["epsilon"])
    record: dict[str, Any] = {
        "mechanism": f"diffprivlib {type(estimator).__name__}",
        "epsilon": epsilon,
        "delta": 0.0,
        "cv_fits": folds,
        "epsilon_including_cv": epsilon * (folds + 1),
        "note": "epsilon covers the final fit; the published cross-validation scores come from "
                f"{folds} more private fits on the same rows (sequential composition: epsilon_including_cv)",
    }
    for name in ("data_norm",):
        if name in estimator.get_params(deep=False):
            record[name] = float(estimator.get_params(deep=False)[name])
    return record
