"""The model's view of the data: feature frames with stable dtypes (FrameCoercer), X and y from a table.

The preprocessing built on top of them lives in model/preprocess.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from keelml.errors import DataError

if TYPE_CHECKING:
    import polars as pl

    from keelml.data.contract import ColumnContract, Contract

BOOLEAN_CATEGORIES = ["false", "true"]
MAX_FREE_CATEGORIES = 50  # encoder width cap for categorical columns the contract gives no domain for


class FrameCoercer(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Select the contract's feature columns and give them stable dtypes and one missing marker.

    Numeric columns become float64 and categorical columns object dtype holding str values
    (booleans as "true"/"false"); every missing marker (None, pd.NA, NaN, NaT) becomes np.nan,
    so that a JSON null is imputed exactly like a NaN.
    """

    def __init__(self, numeric: list[str], categorical: list[str]) -> None:
        self.numeric = numeric
        self.categorical = categorical

    def fit(self, X: Any, y: Any = None) -> FrameCoercer:
        frame = _as_pandas(X)
        self._check_columns(frame)
        self.feature_names_out_ = [*self.numeric, *self.categorical]
        self.n_features_in_ = len(frame.columns)
        return self

    def transform(self, X: Any) -> pd.DataFrame:
        frame = _as_pandas(X)
        self._check_columns(frame)
        data: dict[str, Any] = {}
        for name in self.numeric:
            data[name] = pd.Series(_numeric(frame[name], name), index=frame.index, dtype=np.float64)
        for name in self.categorical:
            data[name] = pd.Series(_categorical(frame[name]), index=frame.index, dtype=object)
        # explicit object dtype: pandas >= 3 would otherwise infer its "str" dtype
        return pd.DataFrame(data, index=frame.index, columns=[*self.numeric, *self.categorical])

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([*self.numeric, *self.categorical], dtype=object)

    def _check_columns(self, frame: pd.DataFrame) -> None:
        present = set(map(str, frame.columns))
        missing = [c for c in [*self.numeric, *self.categorical] if c not in present]
        if missing:
            raise ValueError(
                f"missing required feature column(s): {', '.join(map(repr, missing))}; "
                f"got columns: {', '.join(map(repr, frame.columns))}"
            )


def _as_pandas(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    if type(X).__module__.split(".")[0] == "polars":
        frame: pd.DataFrame = X.to_pandas()
        return frame
    raise TypeError(f"expected a pandas or polars DataFrame, got {type(X).__name__}")


def _numeric(series: pd.Series, name: str) -> np.ndarray:
    values = series.to_numpy(dtype=object, na_value=np.nan)
    missing = pd.isna(values)
    out = np.full(len(values), np.nan, dtype=np.float64)
    try:
        out[~missing] = np.asarray(values[~missing], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"column {name!r} must be numeric: {exc}") from None
    return out


def _categorical(series: pd.Series) -> np.ndarray:
    values = series.to_numpy(dtype=object, na_value=np.nan)
    missing = pd.isna(values)
    out = np.empty(len(values), dtype=object)
    out[missing] = np.nan
    present = values[~missing]
    kind = pd.api.types.infer_dtype(present, skipna=False)
    if kind == "string":  # the common case, without a Python-level loop
        out[~missing] = present
        return out
    if kind == "boolean":
        out[~missing] = np.where(present.astype(bool), "true", "false").astype(object)
        return out
    for i in np.flatnonzero(~missing):
        value = values[i]
        out[i] = str(bool(value)).lower() if isinstance(value, bool | np.bool_) else str(value)
    return out


def split_features(contract: Contract) -> tuple[list[str], list[str], list[str]]:
    """The feature names as (numeric, categorical with a known domain, categorical without one)."""
    numeric: list[str] = []
    known: list[str] = []
    free: list[str] = []
    for col in contract.features:
        if col.type in ("integer", "float"):
            numeric.append(col.name)
        elif col.type == "boolean" or col.categories is not None:
            known.append(col.name)
        else:
            free.append(col.name)
    return numeric, known, free


def domain(col: ColumnContract) -> list[str]:
    """A categorical column's categories from the contract (booleans: false, true)."""
    if col.type == "boolean":
        return list(BOOLEAN_CATEGORIES)
    return [str(c) for c in col.categories or []]


def to_xy(df: pl.DataFrame, contract: Contract) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The feature columns as pandas and the target as numpy (str or float), None if absent."""
    import polars as pl  # servers load this module (FrameCoercer) without polars

    names = [c.name for c in contract.features]
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise DataError(
            f"the data lacks feature column(s) {', '.join(map(repr, missing))}",
            expected="every feature column of the contract: " + ", ".join(names),
            fix="supply those columns, or set their role to ignore in the contract",
        )
    X = df.select(names).to_pandas()
    if contract.target not in df.columns:
        return X, None
    target = df.get_column(contract.target)
    if target.null_count():
        raise DataError(
            f"the target {contract.target!r} has {target.null_count()} missing value(s)",
            expected="a value in every row of the target column",
            fix="drop the rows without a target before training or evaluating",
        )
    if contract.task == "regression":
        y = target.cast(float).to_numpy().astype(np.float64)
    elif target.dtype == pl.Boolean:
        y = np.where(target.to_numpy(), "true", "false")  # the contract's classes for booleans
    else:
        y = target.cast(pl.String).to_numpy().astype(str)
    return X, y


def to_labelled_xy(df: pl.DataFrame, contract: Contract, *, what: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Like to_xy, but the target must be present (`what` names the data in the error)."""
    X, y = to_xy(df, contract)
    if y is None:
        raise DataError(
            f"the {what} data has no target column {contract.target!r}",
            expected="the target column next to the feature columns",
            fix=f"include the target column in the {what} data",
        )
    return X, y
