"""The model sections of pipeline.yaml: the estimator family, cross-validation, tuning and preprocessing."""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal

from pydantic import Field, StrictFloat, StrictInt, field_validator, model_validator

from keelml.spec.base import StrictModel

MODEL_FAMILIES = ("hist_gradient_boosting", "lightgbm", "linear", "logistic_regression", "random_forest",
                  "dp_logistic_regression", "dp_random_forest")  # dp_*: differentially private (extra `dp`)
IMPORT_PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"


class LearningCurveSpec(StrictModel):
    """Learning curves over the CV folds and the over/under-fitting flags (skill units, see training.md)."""

    sizes: list[float] = Field(
        default_factory=lambda: [0.1, 0.25, 0.5, 0.75, 1.0],
        description="fractions of each fold's training rows; [] skips the curve (flags still computed)",
    )
    overfit_gap: float = Field(0.1, gt=0.0, le=1.0, description="flag when train skill - validation skill exceeds it")
    underfit_skill: float = Field(0.2, gt=0.0, le=1.0, description="flag when train and validation skill are below it")

    @field_validator("sizes")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0.0 < v <= 1.0 for v in value):
            raise ValueError("learning_curve.sizes are fractions 0 < size <= 1, e.g. [0.1, 0.25, 0.5, 0.75, 1.0]")
        return sorted(set(value))


class ModelSpec(StrictModel):
    """The estimator, its hyperparameters and the cross-validation used to check it."""

    family: str = Field(
        "hist_gradient_boosting",
        description="one of MODEL_FAMILIES, or a scikit-learn-compatible estimator as module:Class",
    )
    params: dict[str, Any] = Field(default_factory=dict)
    cv_folds: int = Field(5, ge=2, le=20)
    seed: int = 42
    group_column: str | None = Field(None, description="group k-fold on this column (rows of a group stay together)")
    time_column: str | None = Field(None, description="time-series split in the order of this column")
    learning_curve: LearningCurveSpec = Field(default_factory=LearningCurveSpec)
    n_jobs: int = Field(1, ge=1, le=64, description="processes for cross-validation folds")
    threads: int = Field(
        1, ge=1, le=64,
        description="OpenMP/BLAS threads per process; 1 avoids oversubscription on shared machines",
    )

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        if value in MODEL_FAMILIES or re.match(IMPORT_PATH_PATTERN, value):
            return value
        close = difflib.get_close_matches(value, MODEL_FAMILIES, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown model family {value!r}{hint}: use one of {', '.join(MODEL_FAMILIES)} "
            "or an estimator's import path such as sklearn.svm:SVC"
        )

    @model_validator(mode="after")
    def _one_split_column(self) -> ModelSpec:
        if self.group_column and self.time_column:
            raise ValueError("set model.group_column or model.time_column, not both")
        return self


class ParamRange(StrictModel):
    """One tuned hyperparameter: a numeric range (int when low and high are ints) or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    integer: bool | None = Field(None, description="default: true when low and high are written as integers")

    @model_validator(mode="before")
    @classmethod
    def _remember_int(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("integer") is None and "low" in data and "high" in data:
            ints = all(isinstance(data[k], int) and not isinstance(data[k], bool) for k in ("low", "high"))
            return {**data, "integer": ints}
        return data

    @model_validator(mode="after")
    def _range_or_choices(self) -> ParamRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ValueError("give either non-empty choices: [...] or low: and high:, not both")
            if not all(c is None or isinstance(c, bool | int | float | str) for c in self.choices):
                raise ValueError("choices must be numbers, strings, booleans or null (not lists or mappings)")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a tuned parameter needs low: and high: (or choices: [...])")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        return self


class TuneSpec(StrictModel):
    """Hyperparameter search with Optuna; the study lives in the metadata database and resumes."""

    trials: int = Field(30, ge=1, le=100_000, description="finished trials the study should reach")
    timeout_s: float | None = Field(None, gt=0, description="stop starting new trials after this many seconds")
    metric: str | None = Field(None, description="the CV metric to optimise; default the evaluation metric")
    pruner: Literal["median", "none"] = "median"
    seed: int | None = Field(None, description="sampler seed; default model.seed")
    n_jobs: int = Field(1, ge=1, le=64, description="trials evaluated in parallel, one process each")
    cv_folds: int | None = Field(None, ge=2, le=20, description="folds of the tuning objective; default model.cv_folds")
    space: dict[str, ParamRange] = Field(
        default_factory=dict, description="per parameter, a range or choices; overrides the family's default space"
    )


FUNCTION_REF_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
"""A user function reference: `package.module:function`."""


class ImputeSpec(StrictModel):
    """How missing feature values are filled ("auto": by model family, see docs/training.md)."""

    numeric: Literal["auto", "median", "mean", "constant"] = "auto"
    numeric_fill_value: float = 0.0
    categorical: Literal["auto", "most_frequent", "constant"] = "auto"
    categorical_fill_value: str = "missing"
    add_indicator: bool = False


class PreprocessSpec(StrictModel):
    """Feature preprocessing, fitted inside the model pipeline on training rows only."""

    functions: list[str] = Field(
        default_factory=list, description="package.module:function, each a pandas frame -> frame function"
    )
    impute: ImputeSpec = Field(default_factory=ImputeSpec)
    scaling: Literal["auto", "none", "standard", "robust", "minmax"] = "auto"
    encoding: Literal["auto", "onehot", "ordinal"] = "auto"
    min_frequency: StrictInt | StrictFloat | None = None
    max_categories: int | None = Field(None, ge=2)

    @field_validator("functions")
    @classmethod
    def _function_refs(cls, value: list[str]) -> list[str]:
        for ref in value:
            if not re.fullmatch(FUNCTION_REF_PATTERN, ref):
                raise ValueError(f"{ref!r} is not a function reference: write package.module:function")
        if len(set(value)) != len(value):
            raise ValueError("a function is listed twice")
        return value

    @field_validator("min_frequency")
    @classmethod
    def _frequency(cls, value: int | float | None) -> int | float | None:
        if value is None or (isinstance(value, int) and value >= 1) or (isinstance(value, float) and 0 < value < 1):
            return value
        if isinstance(value, float) and value >= 1 and value.is_integer():
            return int(value)
        raise ValueError("min_frequency must be a count >= 1 or a fraction between 0 and 1")
