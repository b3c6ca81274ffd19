"""The preprocessing stage of the model: the spec's `preprocess:` choices, resolved for a model family,
built from the data contract into one ColumnTransformer (fitted on training rows only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)

from keelml.errors import DataError
from keelml.model.features import MAX_FREE_CATEGORIES, FrameCoercer, domain, split_features
from keelml.model.functions import function_steps
from keelml.spec.model import PreprocessSpec

if TYPE_CHECKING:
    from keelml.data.contract import Contract

NATIVE_MISSING_FAMILIES = frozenset({"hist_gradient_boosting", "lightgbm"})
"""Families whose estimator routes NaN itself and splits natively on categorical codes: "auto"
means no imputation, no scaling and ordinal codes for them; median / most-frequent imputation,
standard scaling and one-hot for the others. (Random forests keep standard scaling, as before
preprocess: existed: dropping it moves a few split thresholds by rounding.)"""
UNKNOWN_CODE = -1  # ordinal code of unknown values for estimators without native missing support

SCALERS: dict[str, type[Any]] = {"standard": StandardScaler, "robust": RobustScaler, "minmax": MinMaxScaler}


@dataclass(frozen=True)
class Preprocessing:
    """Concrete preprocessing choices: every "auto" of PreprocessSpec resolved.

    An imputation of None leaves NaN in place (for estimators that handle missing values);
    scaling None means no scaling; native_categorical marks the ordinal codes as categorical
    features of the estimator, with unknown and missing values encoded as NaN.
    """

    numeric_impute: str | None = "median"
    numeric_fill_value: float = 0.0
    categorical_impute: str | None = "most_frequent"
    categorical_fill_value: str = "missing"
    add_indicator: bool = False
    scaling: str | None = "standard"
    encoding: str = "onehot"
    native_categorical: bool = False
    min_frequency: int | float | None = None
    max_categories: int | None = None
    functions: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """JSON-ready fields (recorded in the training report)."""
        return {**asdict(self), "functions": list(self.functions)}


def resolve_preprocessing(spec: PreprocessSpec | None, family: str,
                          params: Mapping[str, Any] | None = None) -> Preprocessing:
    """Resolve the spec's "auto" values for a model family (None: every default).

    Histogram gradient boosting keeps missing values as NaN and gets ordinal codes with native
    categorical splits (unless model.params sets categorical_features); the other families get
    median / most-frequent imputation, one-hot encoding and standard scaling (boosting: none).
    """
    spec = spec or PreprocessSpec()
    # boosting given its own categorical_features keeps the imputed, scaled one-hot columns it had before
    native = family in NATIVE_MISSING_FAMILIES and "categorical_features" not in (params or {})
    impute = spec.impute
    encoding = ("ordinal" if native else "onehot") if spec.encoding == "auto" else spec.encoding
    if spec.scaling == "auto":
        scaling: str | None = None if native else "standard"
    else:
        scaling = None if spec.scaling == "none" else spec.scaling
    return Preprocessing(
        numeric_impute=(None if native else "median") if impute.numeric == "auto" else impute.numeric,
        numeric_fill_value=impute.numeric_fill_value,
        categorical_impute=(None if native else "most_frequent")
        if impute.categorical == "auto" else impute.categorical,
        categorical_fill_value=impute.categorical_fill_value,
        add_indicator=impute.add_indicator,
        scaling=scaling,
        encoding=encoding,
        native_categorical=native and encoding == "ordinal",
        min_frequency=spec.min_frequency,
        max_categories=spec.max_categories,
        functions=tuple(spec.functions),
    )


def preprocessor_for(contract: Contract, family: str, params: Mapping[str, Any],
                     spec: PreprocessSpec | None = None) -> tuple[Pipeline, list[bool]]:
    """The preprocessing stage for a family: (pipeline, categorical mask of its output columns)."""
    return build_features(contract, resolve_preprocessing(spec, family, params))


def build_preprocessor(contract: Contract, choices: Preprocessing | None = None) -> Pipeline:
    """The preprocessing pipeline alone (default choices: impute, standardise, one-hot)."""
    return build_features(contract, choices or Preprocessing())[0]


def _imputer(strategy: str | None, fill_value: float | str) -> list[tuple[str, Any]]:
    if strategy is None:
        return []
    extra = {"fill_value": fill_value} if strategy == "constant" else {}
    return [("impute", SimpleImputer(strategy=strategy, keep_empty_features=True, **extra))]


def _stage(steps: list[tuple[str, Any]]) -> Any:
    """No step: passthrough; one encoder alone stays bare; otherwise a Pipeline."""
    if not steps:
        return "passthrough"
    if len(steps) == 1 and steps[0][0] in ("onehot", "ordinal"):
        return steps[0][1]
    return Pipeline(steps)


def _encoder(choices: Preprocessing, domains: list[list[str]] | None) -> tuple[str, Any]:
    """The categorical encoder; domains None means categories learned from the training rows."""
    limits: dict[str, Any] = {}
    if choices.min_frequency is not None:
        limits["min_frequency"] = choices.min_frequency
    if choices.max_categories is not None or domains is None:
        limits["max_categories"] = choices.max_categories or MAX_FREE_CATEGORIES
    known = {"categories": domains} if domains is not None else {}
    if choices.encoding == "onehot":
        unknown = "ignore" if domains is not None else "infrequent_if_exist"
        return "onehot", OneHotEncoder(**known, handle_unknown=unknown, sparse_output=False, **limits)
    code = np.nan if choices.native_categorical or choices.categorical_impute is None else UNKNOWN_CODE
    return "ordinal", OrdinalEncoder(**known, handle_unknown="use_encoded_value", unknown_value=code,
                                     encoded_missing_value=code, **limits)


def build_features(contract: Contract, choices: Preprocessing) -> tuple[Pipeline, list[bool]]:
    """The user functions, FrameCoercer, then one ColumnTransformer over the contract's features.

    Output columns: numeric (imputed, scaled), categorical with a contract domain, categorical
    without one (categories learned in training, at most max_categories or 50), then missing-value
    indicators for the nullable features. Returns the pipeline and the mask of output columns the
    estimator should treat as categorical (non-empty only with native_categorical).
    """
    numeric, known, free = split_features(contract)
    if not (numeric or known or free):
        raise DataError(
            "the contract has no feature columns",
            expected="at least one column with role: feature",
            fix="set role: feature on the columns the model should use",
        )
    transformers: list[tuple[str, Any, list[str]]] = []
    mask: list[bool] = []
    if numeric:
        scale = [("scale", SCALERS[choices.scaling]())] if choices.scaling else []
        transformers.append(("numeric", _stage(_imputer(choices.numeric_impute, choices.numeric_fill_value) + scale),
                             numeric))
        mask += [False] * len(numeric)
    fill = choices.categorical_fill_value
    if known:
        domains = [domain(contract.column(name)) for name in known]
        if choices.categorical_impute == "constant":  # the fill value is a category of its own
            domains = [d if fill in d else [*d, fill] for d in domains]
        stage = [*_imputer(choices.categorical_impute, fill), _encoder(choices, domains)]
        transformers.append(("categorical", _stage(stage), known))
    if free:
        stage = [*_imputer(choices.categorical_impute, fill), _encoder(choices, None)]
        transformers.append(("free_categorical", _stage(stage), free))
    mask += [choices.native_categorical] * (len(known) + len(free))
    nullable = [c.name for c in contract.features if c.nullable]
    if choices.add_indicator and nullable:
        transformers.append(("missing", MissingIndicator(features="all"), nullable))
        mask += [False] * len(nullable)
    pipeline = Pipeline([
        *function_steps(choices.functions),
        ("coerce", FrameCoercer(numeric=numeric, categorical=[*known, *free])),
        ("columns", ColumnTransformer(transformers, remainder="drop")),
    ])
    return pipeline, mask if any(mask) else []
