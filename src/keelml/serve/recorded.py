"""Held-out rows and the predictions recorded for them at evaluation, read from a bundle.

Both the smoke prediction before a hot swap and infra validation before a promotion compare a
served model's answers with these recorded predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from keelml.data.frames import decode_table
from keelml.errors import IntegrityError, NotFoundError

# ONNX within 1e-5 of scikit-learn (the export check), plus 6-decimal rounding of the recorded
# probabilities and, over HTTP, of the served ones
TOLERANCE = 1e-5 + 1.1e-6


@dataclass(frozen=True)
class RecordedSample:
    """Rows (tuples in contract feature order, None for missing) and their recorded outputs."""

    rows: list[tuple[Any, ...]]
    expected: np.ndarray  # probabilities (n, classes) in `labels` order, or values (n,)
    labels: list[str]
    task: str


def recorded_sample(get: Callable[[str], bytes], components: Mapping[str, str], columns: list[str],
                    task: str, n: int | None, seed: int = 0) -> RecordedSample:
    """Up to `n` held-out rows (all when None), chosen by a seeded shuffle, with recorded predictions."""
    if "holdout" not in components or "predictions" not in components:
        raise NotFoundError("the bundle carries no held-out rows with recorded predictions",
                            expected="a model registered by keelml with the export step (this release or later)",
                            fix="re-run the pipeline to register a bundle with recorded predictions")
    holdout = decode_table(get(components["holdout"]))
    predictions = decode_table(get(components["predictions"])).sort("_row")
    if predictions.height != holdout.height:
        raise IntegrityError("the recorded predictions do not match the held-out rows",
                             expected="one recorded prediction per held-out row",
                             fix="treat the bundle as damaged; re-run the pipeline")
    order = np.random.default_rng(seed).permutation(holdout.height)
    chosen = np.sort(order if n is None else order[:n])
    rows = [tuple(r) for r in holdout.select(columns)[chosen].rows()]
    picked = predictions[chosen]
    if task == "regression":
        return RecordedSample(rows, picked.get_column("prediction").to_numpy().astype(np.float64), [], task)
    labels = [c.removeprefix("proba_") for c in predictions.columns if c.startswith("proba_")]
    expected = picked.select([f"proba_{c}" for c in labels]).to_numpy().astype(np.float64)
    return RecordedSample(rows, expected, labels, task)


def compare(sample: RecordedSample, got: np.ndarray, got_labels: list[str]) -> tuple[int, float, list[int]]:
    """(rows differing by more than TOLERANCE, largest difference, first differing row indices)."""
    expected = sample.expected
    if sample.task != "regression":
        if sorted(got_labels) != sorted(sample.labels):
            return len(sample.rows), float("inf"), list(range(min(5, len(sample.rows))))
        got = got[:, [got_labels.index(c) for c in sample.labels]]
        diff = np.abs(got - expected).max(axis=1)
    else:
        diff = np.abs(got.reshape(-1) - expected) / np.maximum(1.0, np.abs(expected))
    bad = np.flatnonzero(~(diff <= TOLERANCE))
    return int(bad.size), float(diff.max()) if diff.size else 0.0, bad[:5].tolist()


def smoke_check(model: Any, sample: RecordedSample) -> None:
    """Raise IntegrityError unless the loaded model reproduces the recorded predictions."""
    got = model.predictor.rows(sample.rows)
    mismatches, worst, _ = compare(sample, np.asarray(got, dtype=np.float64), model.labels)
    if mismatches:
        raise IntegrityError(
            f"smoke prediction failed: {mismatches} of {len(sample.rows)} held-out rows differ from the "
            f"predictions recorded at evaluation (largest difference {worst:.3g})",
            expected=f"differences within {TOLERANCE:.2g}", fix="do not serve this version; investigate the bundle")
