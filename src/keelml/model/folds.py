"""The cross-validation folds of the training rows, shared by cross-validation, tuning and learning curves.

Stratified k-fold for classification, k-fold for regression (both shuffled with the seed); group
k-fold when the spec names `model.group_column` (stratified by class for classification); a
time-series split (train on the past, validate on the next block) when it names `model.time_column`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold, TimeSeriesSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from keelml.errors import DataError, SpecError
from keelml.model.features import FrameCoercer, split_features, to_labelled_xy

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

    from keelml.data.contract import Contract
    from keelml.spec.model import ModelSpec

IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Folds:
    """Features, target and the (train indices, validation indices) of each fold."""

    X: pd.DataFrame
    y: npt.NDArray[Any]
    splits: list[tuple[IntArray, IntArray]]
    kind: str  # stratified | kfold | group | stratified_group | time
    classes: list[str] | None
    column: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "column": self.column, "folds": len(self.splits),
                "validation_rows": [len(v) for _, v in self.splits]}


def make_folds(frame: pl.DataFrame, contract: Contract, spec: ModelSpec) -> Folds:
    """Split the training rows into `spec.cv_folds` folds (fewer when the data is too small for that)."""
    if spec.time_column:
        frame = frame.sort(_column(frame, spec.time_column, "time_column"), maintain_order=True)
    X, y = to_labelled_xy(frame, contract, what="training")
    numeric, known, free = split_features(contract)
    # Coercion is idempotent and the same for every fold: done once here, each fold's pipeline
    # (which starts with the same coercer, kept for serving) then finds clean dtypes.
    X = FrameCoercer(numeric=numeric, categorical=[*known, *free]).fit_transform(X)
    task = contract.task
    classes = None if task == "regression" else check_classes(y, contract)
    n = len(y)
    if n < 2:
        raise DataError(f"only {n} training row(s)", expected="at least 2 rows to cross-validate",
                        fix="give more training data")
    splitter: Any
    groups: npt.NDArray[Any] | None = None
    if spec.time_column:
        folds = min(spec.cv_folds, n - 1)
        splitter, kind, column = TimeSeriesSplit(n_splits=folds), "time", spec.time_column
    elif spec.group_column:
        series = frame.get_column(_column(frame, spec.group_column, "group_column"))
        groups = np.asarray(series.cast(str).fill_null("\x00null").to_numpy(), dtype=object)
        n_groups = len(set(groups.tolist()))
        if n_groups < 2:
            raise DataError(f"model.group_column {spec.group_column!r} has only {n_groups} group(s)",
                            expected="at least 2 distinct groups to cross-validate",
                            fix="choose a column with several groups, or remove model.group_column")
        folds = min(spec.cv_folds, n_groups)
        column = spec.group_column
        if classes is None:
            splitter, kind = GroupKFold(n_splits=folds), "group"
        else:
            splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=spec.seed)
            kind = "stratified_group"
    elif classes is None:
        folds = min(spec.cv_folds, n)
        splitter, kind, column = KFold(n_splits=folds, shuffle=True, random_state=spec.seed), "kfold", None
    else:
        folds = min(spec.cv_folds, *(int(np.sum(y == c)) for c in classes))
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=spec.seed)
        kind, column = "stratified", None
    splits = [(np.asarray(a, dtype=np.intp), np.asarray(b, dtype=np.intp))
              for a, b in splitter.split(X, y, groups)]
    return Folds(X, y, splits, kind, classes, column)


def for_folds(pipeline: Pipeline) -> Pipeline:
    """A copy of the pipeline to fit and score on Folds.X: its coercer step is skipped.

    make_folds already coerced X (the coercer is idempotent), so the fold models give exactly the
    predictions the full pipeline would, without repeating the coercion in every fit and predict.
    The model that is kept and served is always the full pipeline.
    """
    features = pipeline.named_steps.get("features")
    if isinstance(features, Pipeline) and isinstance(features.named_steps.get("coerce"), FrameCoercer):
        skipping: Pipeline = clone(pipeline).set_params(features__coerce="passthrough")
        return skipping
    return pipeline


def encode_for_folds(pipeline: Pipeline, folds: Folds) -> tuple[Pipeline, Folds]:
    """The fold pipeline, and folds whose fixed-domain categorical columns are already ordinal codes.

    An ordinal encoder whose categories all come from the contract (no categories learned from the
    rows, no infrequent grouping, unknown values coded, no other stage reading those columns) is
    the same fixed function of each row in every fold: it is applied once to all rows here and
    skipped in the fold pipeline, instead of on every fit, predict and score of every fold. The
    fold models' outputs are exactly those of the full pipeline, which keeps the encoder.
    """
    fold, encoder, cols = skip_fixed_encoder(pipeline, folds)
    return fold, (folds if encoder is None else encode_columns(folds, encoder, cols))


def skip_fixed_encoder(pipeline: Pipeline, folds: Folds) -> tuple[Pipeline, Any, list[str]]:
    """(fold pipeline, the fixed-domain encoder it skips, its columns); (for_folds(pipeline), None, [])
    when the pipeline has no such encoder."""
    fold = for_folds(pipeline)
    features = fold.named_steps.get("features")
    columns = features.named_steps.get("columns") if features is not None and hasattr(features, "named_steps") \
        else None
    if not isinstance(columns, ColumnTransformer):
        return fold, None, []
    for name, encoder, cols in columns.transformers:
        if name != "categorical" or not _fixed_ordinal(encoder):
            continue
        used_elsewhere = {c for other, _, more in columns.transformers if other != name for c in more}
        if used_elsewhere & set(cols) or not set(cols) <= set(folds.X.columns):
            return fold, None, []
        skipping: Pipeline = clone(fold).set_params(features__columns__categorical="passthrough")
        return skipping, encoder, list(cols)
    return fold, None, []


def encode_columns(folds: Folds, encoder: Any, cols: list[str]) -> Folds:
    """Folds whose `cols` hold the (fixed-domain) encoder's codes, computed once for all rows."""
    codes = clone(encoder).fit(folds.X[cols]).transform(folds.X[cols])
    encoded = folds.X.copy()
    for i, col in enumerate(cols):
        encoded[col] = np.asarray(codes[:, i], dtype=np.float64)
    return replace(folds, X=encoded)


def _fixed_ordinal(encoder: Any) -> bool:
    """An ordinal encoder that is a fixed function of each value: explicit categories, no grouping."""
    if type(encoder) is not OrdinalEncoder:
        return False
    return (isinstance(encoder.categories, list) and encoder.handle_unknown == "use_encoded_value"
            and encoder.min_frequency is None and encoder.max_categories is None)


def _column(frame: pl.DataFrame, name: str, key: str) -> str:
    if name not in frame.columns:
        raise SpecError(
            f"model.{key} {name!r} is not a column of the training data",
            expected="one of: " + ", ".join(frame.columns),
            fix=f"fix model.{key}, or keep that column (remove it from data.drop_columns)",
        )
    if frame.get_column(name).null_count() and key == "time_column":
        raise DataError(f"model.time_column {name!r} has missing values",
                        expected="a time value in every training row", fix="fill or drop those rows")
    return name


def check_classes(y: npt.NDArray[Any], contract: Contract) -> list[str]:
    """The contract's classes, after checking the target fits them and each has >= 2 rows."""
    seen = sorted({str(v) for v in y.tolist()})
    classes = [str(c) for c in contract.classes] if contract.classes else seen
    unknown = [c for c in seen if c not in classes]
    if unknown:
        raise DataError(
            f"the target has value(s) not in the contract's classes: {', '.join(map(repr, unknown))}",
            expected="target values among: " + ", ".join(classes),
            fix="fix the target values, or re-infer the contract",
        )
    if classes != sorted(classes):
        raise DataError(  # sklearn orders labels by sorting; the positive class is classes[1]
            f"the contract's classes {classes} are not in sorted order",
            expected=f"classes: {sorted(classes)}",
            fix="sort the classes list in the contract (or re-infer the contract)",
        )
    if contract.task == "binary" and len(classes) != 2:
        raise DataError(
            f"a binary task needs exactly 2 classes, the contract lists {len(classes)}: {classes}",
            expected="two target classes",
            fix="set task: multiclass, or fix the target column",
        )
    if len(classes) < 2:
        raise DataError(f"only one class ({classes}) to learn", expected="at least 2 target classes",
                        fix="check the target column")
    rare = {c: int(np.sum(y == c)) for c in classes if np.sum(y == c) < 2}
    if rare:
        shown = ", ".join(f"{c!r} ({n} row(s))" for c, n in rare.items())
        raise DataError(
            f"too few training rows for class(es) {shown} to cross-validate",
            expected="at least 2 training rows of every class",
            fix="collect more rows of those classes, or merge/drop them before training",
        )
    return classes
