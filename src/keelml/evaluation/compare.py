"""A candidate against the production version on the same held-out rows.

Both models score the candidate's held-out rows, each through its own contract's feature columns:
the primary metric overall and on every slice with at least `min_slice_rows` rows (the slices of
`evaluate`), and the share of rows on which they agree (`model_tests.agreement`). The gate turns
these figures into checks (`evaluation/gate.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keelml.evaluation.evaluate import score_model
from keelml.evaluation.model_tests import agreement
from keelml.evaluation.slices import define_slices, slice_metrics
from keelml.model.metrics import LOWER_IS_BETTER, primary_metric

if TYPE_CHECKING:
    import polars as pl
    from sklearn.pipeline import Pipeline

    from keelml.data.contract import Contract


def incomparable(test: pl.DataFrame, contract: Contract, reference: Contract) -> str | None:
    """Why the reference model cannot score these rows as the candidate does (None when it can)."""
    if reference.task != contract.task or reference.target != contract.target:
        return (f"production predicts {reference.target!r} ({reference.task}), the candidate {contract.target!r} "
                f"({contract.task})")
    if contract.task != "regression" and sorted(map(str, reference.classes or [])) != sorted(
            map(str, contract.classes or [])):
        return "production and the candidate have different classes"
    missing = [c.name for c in reference.features if c.name not in test.columns]
    if missing:
        return "the held-out rows lack production's feature column(s) " + ", ".join(repr(m) for m in missing[:5])
    return None


def compare_models(candidate: Pipeline, reference: Pipeline, test: pl.DataFrame, contract: Contract,
                   reference_contract: Contract, *, metric: str | None, bins: int, min_slice_rows: int,
                   tolerance: float = 0.0) -> dict[str, Any]:
    """Primary metric of both models overall and per slice (>= min_slice_rows rows), and their agreement."""
    problem = incomparable(test, contract, reference_contract)
    if problem is not None:
        return {"comparable": False, "reason": problem}
    name = primary_metric(contract.task, metric)
    mine = score_model(candidate, test, contract)
    theirs = score_model(reference, test, reference_contract)
    big = [s for s in define_slices(test, contract, bins) if int(s.mask.sum()) >= min_slice_rows]
    ours = slice_metrics(big, mine.weighted, [name], min_slice_rows)
    other = slice_metrics(big, theirs.weighted, [name], min_slice_rows)
    slices = [{"column": a["column"], "slice": a["slice"], "n": a["n"], "candidate": a["metrics"][name],
               "production": b["metrics"][name]} for a, b in zip(ours, other, strict=True)]
    return {"comparable": True, "metric": name, "greater_is_better": name not in LOWER_IS_BETTER,
            "rows": len(mine.truth), "candidate": mine.metrics[name], "production": theirs.metrics[name],
            "min_slice_rows": min_slice_rows, "slices": slices,
            "agreement": agreement(mine.prediction, theirs.prediction, contract.task, tolerance),
            "agreement_tolerance": tolerance}
