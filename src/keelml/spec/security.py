"""The `security:` section of pipeline.yaml: privacy and robustness audits and their gate limits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from keelml.spec.base import StrictModel


class SecuritySpec(StrictModel):
    """Privacy and robustness audits of the trained model, and the limits the gate applies to them."""

    privacy: bool = Field(True, description="membership- and attribute-inference audit after evaluate")
    robustness: bool = Field(True, description="perturbation stability (prediction flip rate) after evaluate")
    sample_rows: int = Field(2000, ge=50, le=1_000_000, description="rows drawn from each split per audit")
    seed: int = 42
    max_membership_auc: float | None = Field(
        None, ge=0.5, le=1.0, description="gate: refuse a model whose membership-attack ROC AUC is higher")
    max_flip_rate: float | None = Field(
        None, ge=0.0, le=1.0, description="gate: refuse a model whose prediction flip rate under noise is higher")
    attribute_advantage_flag: float = Field(
        0.05, ge=0.0, le=1.0,
        description="flag a sensitive column whose inference advantage over the baseline exceeds this")
    noise_scale: float = Field(0.1, ge=0.0, le=10.0, description="numeric noise std as a share of the column's IQR")
    swap_fraction: float = Field(0.1, ge=0.0, le=1.0, description="share of rows whose categories are swapped")
    attack: Literal["none", "hopskipjump"] = Field(
        "none", description="optional black-box attack (extra `art`: adversarial-robustness-toolbox)")
    attack_rows: int = Field(10, ge=1, le=1000,
                             description="rows attacked by the black-box attack (~100 predict calls each)")

    @model_validator(mode="after")
    def _limits_need_audits(self) -> SecuritySpec:
        if self.max_membership_auc is not None and not self.privacy:
            raise ValueError("security.max_membership_auc needs security.privacy: true")
        if self.max_flip_rate is not None and not self.robustness:
            raise ValueError("security.max_flip_rate needs security.robustness: true")
        return self

    def gate_limits(self) -> dict[str, float | None]:
        """The limits the gate step applies (part of its parameters)."""
        return {"max_membership_auc": self.max_membership_auc, "max_flip_rate": self.max_flip_rate}
