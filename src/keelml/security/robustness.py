"""Robustness of a trained model: how often small, valid changes to an input flip its prediction.

Perturbation stability: Gaussian noise scaled to each numeric column's interquartile range (a
column dominated by one value keeps it; its other values get noise scaled to their own IQR),
rounded for integer columns and clipped inside the contract's [min, max]; and, for a share of
the rows, categorical values swapped to another value of the contract's domain. Every perturbed
row is still a row the contract accepts. The flip rate is reported overall (all columns at once)
and per column (that column alone).

Optionally a black-box HopSkipJump attack (extra `art`: adversarial-robustness-toolbox) on a small
budget searches, for a few rows, the smallest change of the numeric features (in IQR units, L2)
that flips the prediction, with the categorical features held fixed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from keelml.engine.executors import LOCAL, Executor, run_all
from keelml.model.features import split_features, to_xy
from keelml.security.membership import sample_rows

if TYPE_CHECKING:
    import polars as pl

    from keelml.data.contract import Contract

FloatArray = npt.NDArray[np.float64]
REGRESSION_TOLERANCE = 0.1  # a regression prediction "flips" when it moves by > 0.1 std of the predictions
ATTACK_BUDGET = {"max_iter": 10, "max_eval": 200, "init_eval": 20, "init_size": 20}


@dataclass(frozen=True)
class Scale:
    """How much noise a numeric column gets: `spread` (its IQR) and, for a column dominated by one
    value (IQR 0, e.g. capital gains that are mostly 0), that value, which noise leaves alone."""

    spread: float
    dominant: float | None = None


def column_scales(X: pd.DataFrame, numeric: Sequence[str]) -> dict[str, Scale]:
    """Each numeric column's noise scale: its interquartile range; when that is 0, the column's
    dominant value is kept and its other values use their own IQR (or std); 0 for a constant column."""
    scales: dict[str, Scale] = {}
    for name in numeric:
        values = X[name].to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[np.isfinite(values)]
        if values.size == 0:
            scales[name] = Scale(0.0)
            continue
        spread = _iqr(values)
        if spread > 0:
            scales[name] = Scale(spread)
            continue
        dominant = float(np.median(values))
        rest = values[values != dominant]
        tail = _iqr(rest) if rest.size else 0.0
        scales[name] = Scale(tail if tail > 0 else float(rest.std()) if rest.size else 0.0, dominant)
    return scales


def _iqr(values: FloatArray) -> float:
    q1, q3 = np.quantile(values, [0.25, 0.75])
    return float(q3 - q1)


def _domains(contract: Contract, X: pd.DataFrame) -> dict[str, list[Any]]:
    """Categorical feature -> the values a swap may write (the contract's domain, in X's own types)."""
    _, known, _ = split_features(contract)
    out: dict[str, list[Any]] = {}
    for name in known:
        column = contract.column(name)
        if column.type == "boolean":
            present = X[name].dropna()
            as_text = len(present) > 0 and all(isinstance(v, str) for v in present.iloc[:5])
            out[name] = ["false", "true"] if as_text else [False, True]
        else:
            out[name] = [str(c) for c in column.categories or []]
    return {k: v for k, v in out.items() if len(v) >= 2}


def perturb(X: pd.DataFrame, contract: Contract, rng: np.random.Generator, *, noise_scale: float,
            swap_fraction: float, scales: Mapping[str, Scale], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A copy of X with noise on numeric columns and category swaps, kept inside the contract.

    `columns` limits the perturbation to those features (default: every numeric column in `scales`
    and every categorical feature with a declared domain). Missing values stay missing.
    """
    out = X.copy()
    n = len(X)
    domains = _domains(contract, X)
    chosen = set(columns) if columns is not None else set(scales) | set(domains)
    for name in scales:
        if name not in chosen:
            continue
        column = contract.column(name)
        values = X[name].to_numpy(dtype=np.float64, na_value=np.nan)
        scale = scales[name]
        noise = rng.normal(0.0, 1.0, size=n) * noise_scale * scale.spread
        if scale.dominant is not None:
            noise[values == scale.dominant] = 0.0
        noisy = values + noise
        low = -np.inf if column.min is None else float(column.min)
        high = np.inf if column.max is None else float(column.max)
        if column.type == "integer":
            low, high = math.ceil(low) if np.isfinite(low) else low, math.floor(high) if np.isfinite(high) else high
            noisy = np.round(noisy)
        out[name] = np.clip(noisy, low, high)
    for name, domain in domains.items():
        if name not in chosen:
            continue
        values = X[name].to_numpy(dtype=object)
        present = ~X[name].isna().to_numpy()
        swap = present & (rng.random(n) < swap_fraction)
        lookup = {str(v).lower() if isinstance(v, bool) else str(v): i for i, v in enumerate(domain)}
        current = np.array([lookup.get(str(v).lower() if isinstance(v, bool | np.bool_) else str(v), -1)
                            for v in values])
        shifted = (np.maximum(current, 0) + rng.integers(1, len(domain), size=n)) % len(domain)
        new = values.copy()
        for i in np.flatnonzero(swap):
            new[i] = domain[int(shifted[i])]
        out[name] = new
    return out


def predict_rows(shared: tuple[Any, str], X: pd.DataFrame) -> npt.NDArray[Any]:
    """The model's predictions for X (an executor task); `shared` is (model, task)."""
    return _predictions(shared[0], X, shared[1])


def _predictions(model: Any, X: pd.DataFrame, task: str) -> npt.NDArray[Any]:
    if task == "regression":
        return np.asarray(model.predict(X), dtype=np.float64)
    return np.asarray([str(v) for v in model.predict(X)], dtype=object)


def _flips(base: npt.NDArray[Any], other: npt.NDArray[Any], task: str, tolerance: float) -> npt.NDArray[np.bool_]:
    if task == "regression":
        return np.asarray(np.abs(other.astype(np.float64) - base.astype(np.float64)) > tolerance)
    return np.asarray(base != other)


def perturbation_stability(model: Any, train: pl.DataFrame, test: pl.DataFrame, contract: Contract, *,
                           noise_scale: float, swap_fraction: float, sample_size: int, seed: int,
                           max_flip_rate: float | None = None, executor: Executor | None = None) -> dict[str, Any]:
    """Flip rate of the model's predictions under contract-valid perturbations of held-out rows.

    Scales (IQR) come from a sample of the training split; the perturbed rows are a seeded sample
    of the test split. Regression counts a "flip" when a prediction moves by more than
    REGRESSION_TOLERANCE standard deviations of the unperturbed predictions. The predictions run
    on `executor` (default: this process); the perturbations are drawn here, so the figures are the
    same on every executor.
    """
    rows = sample_rows(test, sample_size, seed)
    if rows.height == 0:
        return {"skipped": "no test rows to perturb", "flip_rate": None, "rows": 0, "columns": {},
                "max_flip_rate": max_flip_rate, "passed": None}
    X, _ = to_xy(rows, contract)
    reference, _ = to_xy(sample_rows(train, sample_size, seed), contract)
    numeric, _, _ = split_features(contract)
    scales = column_scales(reference, numeric)
    task = contract.task
    rng = np.random.default_rng(seed)
    names = [*scales, *_domains(contract, X)]
    variants = [perturb(X, contract, rng, noise_scale=noise_scale, swap_fraction=swap_fraction, scales=scales,
                        columns=[name]) for name in names]
    variants.append(perturb(X, contract, rng, noise_scale=noise_scale, swap_fraction=swap_fraction, scales=scales))
    frames = [X, *variants]
    if executor is None or executor.kind == LOCAL:
        # one predict call for the rows and all their variants: the same answers, without a call per column
        answers = list(_predictions(model, pd.concat(frames, ignore_index=True), task).reshape(len(frames), len(X)))
    else:  # on a cluster each variant is a task
        answers = run_all(executor, predict_rows, [(frame,) for frame in frames], shared=(model, task))
    base = answers[0]
    tolerance = REGRESSION_TOLERANCE * float(np.std(base.astype(np.float64))) if task == "regression" else 0.0
    columns: dict[str, Any] = {}
    for i, (name, changed) in enumerate(zip(names, variants, strict=False)):
        moved = ~_same(X[name], changed[name])
        flips = _flips(base, answers[i + 1], task, tolerance)
        columns[name] = {
            "kind": "noise" if name in scales else "swap",
            "scale": scales[name].spread if name in scales else None,
            "dominant_value_kept": scales[name].dominant if name in scales else None,
            "rows_changed": int(moved.sum()),
            "flip_rate": float(flips.mean()),
            "flip_rate_changed": float(flips[moved].mean()) if moved.any() else 0.0,
        }
    overall = float(_flips(base, answers[-1], task, tolerance).mean())
    ranked = sorted(columns, key=lambda c: columns[c]["flip_rate"], reverse=True)
    return {
        "flip_rate": overall,
        "rows": len(X),
        "noise_scale": noise_scale,
        "swap_fraction": swap_fraction,
        "regression_tolerance": tolerance if task == "regression" else None,
        "columns": columns,
        "most_sensitive": ranked[:3],
        "seed": seed,
        "max_flip_rate": max_flip_rate,
        "passed": None if max_flip_rate is None else overall <= max_flip_rate,
    }


def _same(before: pd.Series, after: pd.Series) -> npt.NDArray[np.bool_]:
    a = before.to_numpy(dtype=object)
    b = after.to_numpy(dtype=object)
    both_missing = before.isna().to_numpy() & after.isna().to_numpy()
    equal = np.array([x == y for x, y in zip(a, b, strict=True)], dtype=bool)
    return np.asarray(equal | both_missing)


@contextmanager
def _seeded_global_numpy(seed: int) -> Iterator[None]:
    """ART draws from numpy's global generator: seed it for the attack, then restore its state."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def hopskipjump_audit(model: Any, train: pl.DataFrame, test: pl.DataFrame, contract: Contract, *,
                      rows: int, seed: int, budget: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Median minimal L2 perturbation (numeric features, IQR units) that flips a prediction.

    `budget` overrides ATTACK_BUDGET (HopSkipJump's max_iter, max_eval, init_eval, init_size); each
    attacked row costs roughly max_iter x (binary-search steps + 1) calls of model.predict.

    Skipped, with a note, when adversarial-robustness-toolbox is not installed, for regression,
    or when the model has no numeric features.
    """
    if contract.task == "regression":
        return {"skipped": "HopSkipJump needs a classifier; regression is not attacked"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ART warns about optional deep-learning frameworks
            from art.attacks.evasion import HopSkipJump  # optional extra `art`, only for this attack
            from art.estimators.classification import BlackBoxClassifier
    except ImportError:
        return {"skipped": "adversarial-robustness-toolbox is not installed (pip install 'keelml[art]')"}
    numeric, _, _ = split_features(contract)
    reference, _ = to_xy(sample_rows(train, 2000, seed), contract)
    scales = {k: v.spread for k, v in column_scales(reference, numeric).items() if v.spread > 0}
    names = list(scales)
    if not names:
        return {"skipped": "the model has no numeric feature with a spread to perturb"}
    X, _ = to_xy(sample_rows(test, max(rows * 5, rows), seed), contract)
    X = X[X[names].notna().all(axis=1)].head(rows).reset_index(drop=True)
    center = np.array([float(reference[n].median()) for n in names])
    scale = np.array([scales[n] for n in names])
    low = np.array([_bound(contract.column(n).min, reference[n].min()) for n in names])
    high = np.array([_bound(contract.column(n).max, reference[n].max()) for n in names])
    classes = [str(c) for c in model.classes_]
    settings = {**ATTACK_BUDGET, **(budget or {})}
    distances: list[float] = []
    with _seeded_global_numpy(seed), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(len(X)):
            row = X.iloc[[i]]

            def predict(z: FloatArray, row: pd.DataFrame = row) -> FloatArray:
                frame = row.loc[row.index.repeat(len(z))].reset_index(drop=True)
                frame[names] = z * scale + center
                labels = [str(v) for v in model.predict(frame)]
                return np.eye(len(classes))[[classes.index(v) for v in labels]]

            z0 = ((row[names].to_numpy(dtype=np.float64) - center) / scale).astype(np.float32)
            box = BlackBoxClassifier(predict, input_shape=(len(names),), nb_classes=len(classes),
                                     clip_values=((low - center) / scale, (high - center) / scale))
            attack = HopSkipJump(box, targeted=False, norm=2, batch_size=1024, verbose=False, **settings)
            adversarial = attack.generate(x=z0)
            flipped = predict(adversarial.astype(np.float64)).argmax() != predict(z0.astype(np.float64)).argmax()
            distances.append(float(np.linalg.norm(adversarial - z0)) if flipped else math.inf)
    found = [d for d in distances if math.isfinite(d)]
    median = float(np.median(distances)) if distances else math.inf
    return {
        "attack": "HopSkipJump (black box, L2, numeric features in IQR units, categoricals fixed)",
        "rows": len(distances),
        "success_rate": len(found) / len(distances) if distances else 0.0,
        "median_l2": median if math.isfinite(median) else None,
        "median_l2_successful": float(np.median(found)) if found else None,
        "budget": settings,
        "features": names,
    }


def _bound(declared: float | None, observed: Any) -> float:
    return float(declared) if declared is not None else float(observed)


def robustness_audit(model: Any, train: pl.DataFrame, test: pl.DataFrame, contract: Contract, *,
                     noise_scale: float, swap_fraction: float, sample_size: int, seed: int,
                     max_flip_rate: float | None = None, attack: str = "none",
                     attack_rows: int = 20, executor: Executor | None = None) -> dict[str, Any]:
    """The robustness step's report: perturbation stability and, if asked for, the black-box attack.

    Stability's predictions run on `executor`; the attack (one seeded sequence) runs here.
    """
    report: dict[str, Any] = {
        "stability": perturbation_stability(model, train, test, contract, noise_scale=noise_scale,
                                            swap_fraction=swap_fraction, sample_size=sample_size, seed=seed,
                                            max_flip_rate=max_flip_rate, executor=executor),
    }
    if attack == "hopskipjump":
        report["attack"] = hopskipjump_audit(model, train, test, contract, rows=attack_rows, seed=seed)
    return report
