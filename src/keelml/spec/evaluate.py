"""The evaluation sections of pipeline.yaml: held-out metrics, the gate and the model tests."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from keelml.spec.base import StrictModel


class EvaluateSpec(StrictModel):
    """Held-out evaluation: metrics with bootstrap intervals, slices, error analysis and fairness."""

    metric: str | None = Field(None, description="primary metric; default roc_auc (binary), accuracy, r2")
    bootstrap_rounds: int = Field(200, ge=0, le=10_000)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 42
    min_slice_rows: int = Field(50, ge=1, description="smallest slice (and fairness group) that is scored")
    slice_bins: int = Field(4, ge=2, le=20, description="quantile bins per numeric column for slices")
    worst_slices: int = Field(5, ge=0, le=100, description="slices listed by the error analysis")
    worst_examples: int = Field(10, ge=0, le=1000, description="highest-loss held-out rows listed")


class GateSpec(StrictModel):
    """A model whose primary metric is worse than min_score (or than production, by more than the
    max_*_drop limits) is registered as rejected and can never be promoted.

    "Worse" follows the metric: below the limit for scores (roc_auc, r2), above it for losses
    (log_loss, brier, rmse, mae).
    """

    min_score: float | None = None
    max_fairness_difference: float | None = Field(
        None, ge=0.0, description="largest allowed fairness difference per sensitive column (docs/evaluation.md)")
    # relative to the version the model's `production` alias points to, both scored on the same held-out rows
    max_metric_drop: float | None = Field(
        None, ge=0.0, description="largest allowed drop of the primary metric below production (metric units)")
    max_slice_drop: float | None = Field(
        None, ge=0.0, description="largest allowed drop on any slice of at least min_slice_rows rows")
    min_slice_rows: int = Field(200, ge=1, description="slices smaller than this are not compared with production")
    min_agreement: float | None = Field(
        None, ge=0.0, le=1.0, description="smallest share of held-out rows predicted as production predicts them")
    agreement_tolerance: float = Field(0.0, ge=0.0, description="regression: predictions this close agree")
    promote: Literal["manual", "auto"] = Field(
        "manual", description="a passed candidate is registered as staging (manual) or also promoted to production")


class ExpectRange(StrictModel):
    """An allowed interval: of a class probability (classification) or of the prediction (regression)."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> ExpectRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is larger than max {self.max}")
        return self


class GoldenCase(StrictModel):
    """One input row and what the model must answer for it."""

    name: str | None = None
    input: dict[str, Any]
    expect: ExpectRange | bool | int | float | str
    proba_of: str | None = Field(None, description="class whose probability expect's range bounds")


class InvarianceTest(StrictModel):
    """Changing `column` within its contract domain flips at most max_flip_rate of the predictions."""

    column: str
    max_flip_rate: float = Field(0.0, ge=0.0, le=1.0)
    tolerance: float | None = Field(None, ge=0.0, description="regression: a change above this is a flip")


class DirectionalTest(StrictModel):
    """Raising `column` by delta never moves the score against `direction` by more than tolerance."""

    column: str
    direction: Literal["increasing", "decreasing"] = "increasing"
    tolerance: float = Field(0.0, ge=0.0)
    delta: float | None = Field(None, gt=0.0, description="default: a tenth of the column's range")
    proba_of: str | None = None


class ModelTestsSpec(StrictModel):
    """Tests every candidate model must pass; each failure refuses the model at the gate."""

    golden: list[GoldenCase] = Field(default_factory=list)
    invariance: list[InvarianceTest] = Field(default_factory=list)
    directional: list[DirectionalTest] = Field(default_factory=list)
    sample_rows: int = Field(1000, ge=1, description="held-out rows that invariance and directional tests use")
    seed: int = 42
