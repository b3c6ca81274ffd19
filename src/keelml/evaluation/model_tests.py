"""Model tests declared in the spec (`tests:`), run on every candidate like unit tests for the model.

- golden: an input row and the expected label, or an allowed range of a class probability
  (classification) or of the prediction (regression);
- invariance: changing one column within its contract domain flips at most a share of predictions;
- directional: raising one numeric column never moves the score against the expected direction
  by more than a tolerance.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from keelml.data.contract import close_match_hint
from keelml.errors import SpecError
from keelml.model.features import to_labelled_xy

if TYPE_CHECKING:
    import polars as pl
    from sklearn.pipeline import Pipeline

    from keelml.data.contract import ColumnContract, Contract
    from keelml.spec.evaluate import DirectionalTest, GoldenCase, InvarianceTest, ModelTestsSpec

NUMERIC = ("integer", "float")


def run_model_tests(model: Pipeline, test: pl.DataFrame, contract: Contract, spec: ModelTestsSpec) -> dict[str, Any]:
    """Every declared test's result: kind, name, passed, value, limit and a one-line detail."""
    results = [_golden(model, contract, case, i) for i, case in enumerate(spec.golden)]
    if spec.invariance or spec.directional:
        X, y = to_labelled_xy(test, contract, what="test")
        if len(X) > spec.sample_rows:
            keep = np.sort(np.random.default_rng(spec.seed).choice(len(X), size=spec.sample_rows, replace=False))
            X, y = X.iloc[keep], y[keep]
        X = X.reset_index(drop=True)
        # each test draws from its own stream (seed, column), so adding a test changes no other result
        results += [_invariance(model, contract, X, y, t, _stream(spec.seed, t.column)) for t in spec.invariance]
        results += [_directional(model, contract, X, t) for t in spec.directional]
    return {"results": results, "passed": all(r["passed"] for r in results), "count": len(results)}


def _stream(seed: int, column: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(column.encode())])


def prediction_agreement(candidate: Pipeline, reference: Pipeline, frame: pl.DataFrame, contract: Contract,
                         tolerance: float = 0.0) -> float:
    """Share of rows where two models agree: the same label, or predictions within tolerance."""
    X, _ = to_labelled_xy(frame, contract, what="golden")
    return agreement(_labels(candidate, X, contract), _labels(reference, X, contract), contract.task, tolerance)


def agreement(a: npt.NDArray[Any], b: npt.NDArray[Any], task: str, tolerance: float = 0.0) -> float:
    """Share of rows where two models' answers agree: the same label, or predictions within tolerance."""
    if task == "regression":
        same = np.abs(a.astype(float) - b.astype(float)) <= tolerance
    else:
        same = a.astype(str) == b.astype(str)
    return float(np.mean(same)) if len(a) else 1.0


def _labels(model: Pipeline, X: pd.DataFrame, contract: Contract) -> npt.NDArray[Any]:
    if contract.task == "regression":
        return np.asarray(model.predict(X), dtype=np.float64)
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    labels: npt.NDArray[Any] = np.asarray([str(c) for c in model.classes_], dtype=object)[proba.argmax(axis=1)]
    return labels


def _score(model: Pipeline, X: pd.DataFrame, contract: Contract, proba_of: str | None, where: str) -> npt.NDArray[
        np.float64]:
    """The number a range or direction is about: a class probability, or the regression prediction."""
    if contract.task == "regression":
        return np.asarray(model.predict(X), dtype=np.float64)
    classes = [str(c) for c in model.classes_]
    if proba_of is None:
        if contract.task != "binary":
            raise SpecError(f"{where}: a multiclass model needs proba_of",
                            expected="proba_of: one of " + ", ".join(classes),
                            fix=f"add proba_of to {where}")
        proba_of = classes[1]
    if proba_of not in classes:
        raise SpecError(f"{where}: proba_of {proba_of!r} is not a class of the model",
                        expected="one of: " + ", ".join(classes), fix=close_match_hint(proba_of, classes)
                        + f"fix proba_of in {where}")
    return np.asarray(model.predict_proba(X), dtype=np.float64)[:, classes.index(proba_of)]


def _feature(contract: Contract, name: str, where: str) -> ColumnContract:
    names = [c.name for c in contract.features]
    if name not in names:
        raise SpecError(f"{where}: {name!r} is not a feature column of the contract",
                        expected="one of: " + ", ".join(names), fix=close_match_hint(name, names) + f"fix {where}")
    return contract.column(name)


def _golden(model: Pipeline, contract: Contract, case: GoldenCase, index: int) -> dict[str, Any]:
    where = f"tests.golden[{index}]"
    name = case.name or f"golden[{index}]"
    for key, value in case.input.items():
        column = _feature(contract, key, f"{where}.input")
        if value is not None and column.categories and str(value) not in column.categories:
            raise SpecError(f"{where}.input: {value!r} is not a category of {key!r}",
                            expected="one of: " + ", ".join(column.categories),
                            fix=close_match_hint(str(value), column.categories) + f"fix {where}.input.{key}")
    X = pd.DataFrame({c.name: pd.Series([case.input.get(c.name)], dtype=object) for c in contract.features})
    try:
        expect = case.expect
        if not isinstance(expect, int | float | str | bool):  # an allowed range
            score = float(_score(model, X, contract, case.proba_of, where)[0])
            low = -np.inf if expect.min is None else expect.min
            high = np.inf if expect.max is None else expect.max
            passed = bool(low <= score <= high)
            what = ("prediction" if contract.task == "regression"
                    else f"probability of {case.proba_of or model.classes_[1]}")
            return _result("golden", name, passed, round(score, 6), [expect.min, expect.max],
                           f"{what} {score:.4f}, allowed [{_show(expect.min, '-inf')}, {_show(expect.max, 'inf')}]")
        if contract.task == "regression":
            raise SpecError(f"{where}.expect: a regression model is tested against a range",
                            expected="expect: {min: ..., max: ...}", fix=f"give a range in {where}.expect")
        label = str(expect).lower() if isinstance(expect, bool) else str(expect)
        classes = [str(c) for c in model.classes_]
        if label not in classes:
            raise SpecError(f"{where}.expect: {label!r} is not a class of the model",
                            expected="one of: " + ", ".join(classes),
                            fix=close_match_hint(label, classes) + f"fix {where}.expect")
        predicted = str(_labels(model, X, contract)[0])
        return _result("golden", name, predicted == label, predicted, label,
                       f"predicted {predicted!r}, expected {label!r}")
    except ValueError as exc:  # a value the model's input coercion refuses (text in a numeric column)
        raise SpecError(f"{where}.input cannot be scored: {exc}", expected="values of the contract's types",
                        fix=f"fix {where}.input") from None


def _show(value: float | None, unbounded: str) -> str:
    return unbounded if value is None else f"{value:g}"


def _result(kind: str, name: str, passed: bool, value: Any, limit: Any, detail: str) -> dict[str, Any]:
    return {"kind": kind, "name": name, "passed": bool(passed), "value": value, "limit": limit, "detail": detail}


def _bounds(column: ColumnContract, values: pd.Series) -> tuple[float, float]:
    """The column's contract range, or the observed one where the contract leaves it open."""
    observed = pd.to_numeric(values, errors="coerce").astype(float)
    low = column.min if column.min is not None else float(np.nanmin(observed)) if observed.notna().any() else 0.0
    high = column.max if column.max is not None else float(np.nanmax(observed)) if observed.notna().any() else 0.0
    return float(low), float(high)


def _invariance(model: Pipeline, contract: Contract, X: pd.DataFrame, y: npt.NDArray[Any], test: InvarianceTest,
                rng: np.random.Generator) -> dict[str, Any]:
    where = f"tests.invariance ({test.column})"
    column = _feature(contract, test.column, where)
    changed = X.copy()
    if column.type in NUMERIC:
        low, high = _bounds(column, X[column.name])
        new = rng.uniform(low, high, size=len(X))
        changed[column.name] = np.round(new) if column.type == "integer" else new
        domain = f"uniform in [{low:g}, {high:g}]"
    else:
        categories = (["false", "true"] if column.type == "boolean" else column.categories
                      or sorted({str(v) for v in X[column.name].dropna()}))
        current = X[column.name].map(lambda v: str(v).lower() if isinstance(v, bool) else str(v))
        index = np.asarray([categories.index(v) if v in categories else -1 for v in current])
        if len(categories) < 2:
            return _result("invariance", f"invariance of {column.name}", True, 0.0, test.max_flip_rate,
                           f"{column.name} has fewer than 2 values: nothing to change")
        draw = rng.integers(0, len(categories) - 1, size=len(X))
        draw = np.where((index >= 0) & (draw >= index), draw + 1, draw)  # another value than the row's own
        changed[column.name] = pd.Series(np.asarray(categories, dtype=object)[draw], dtype=object)
        domain = f"another of its {len(categories)} values"
    before, after = _labels(model, X, contract), _labels(model, changed, contract)
    if contract.task == "regression":
        tolerance = test.tolerance if test.tolerance is not None else 0.1 * float(np.std(y.astype(float)))
        flips = np.abs(after.astype(float) - before.astype(float)) > tolerance
        unit = f"predictions moved by more than {tolerance:.4g}"
    else:
        flips = before != after
        unit = "predicted labels flipped"
    rate = float(np.mean(flips)) if len(X) else 0.0
    return _result("invariance", f"invariance of {column.name}", rate <= test.max_flip_rate, round(rate, 6),
                   test.max_flip_rate, f"{int(flips.sum())} of {len(X)} {unit} when {column.name} was set to "
                   f"{domain} (allowed share {test.max_flip_rate:g})")


def _directional(model: Pipeline, contract: Contract, X: pd.DataFrame, test: DirectionalTest) -> dict[str, Any]:
    where = f"tests.directional ({test.column})"
    column = _feature(contract, test.column, where)
    if column.type not in NUMERIC:
        raise SpecError(f"{where}: {column.name!r} is {column.type}, not numeric",
                        expected="a numeric (integer or float) feature column",
                        fix=f"use invariance for categorical columns, or fix {where}")
    values = pd.to_numeric(X[column.name], errors="coerce").astype(float)
    rows = X[values.notna()].reset_index(drop=True)
    low, high = _bounds(column, values)
    delta = test.delta if test.delta is not None else (high - low) / 10 or 1.0
    raised = rows.copy()
    raised[column.name] = np.minimum(values.dropna().to_numpy() + delta, max(high, values.max()))
    name = f"{column.name} {test.direction}"
    if rows.empty:
        return _result("directional", name, True, 0.0, test.tolerance, f"no rows with a value of {column.name}")
    change = _score(model, raised, contract, test.proba_of, where) - _score(model, rows, contract, test.proba_of,
                                                                           where)
    against = -change if test.direction == "increasing" else change
    bad = against > test.tolerance
    worst = float(max(against.max(), 0.0))
    return _result("directional", name, not bad.any(), round(worst, 6), test.tolerance,
                   f"raising {column.name} by {delta:.4g} moved the score against {test.direction} in "
                   f"{int(bad.sum())} of {len(rows)} rows by more than {test.tolerance:g} (worst {worst:.4f})")
