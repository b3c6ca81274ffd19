"""Small synthetic data for the security tests: a contract with ranges and domains, and fitted models."""

from __future__ import annotations

import numpy as np
import polars as pl

from keelml.data.contract import ColumnContract, Contract


def make_data(n: int = 1000, *, seed: int = 0, label_noise: float = 0.0, task: str = "binary",
              group_effect: float = 0.0) -> tuple[pl.DataFrame, Contract]:
    """Features x (float), count (integer), flag (boolean), k (category), group (category, sensitive),
    an independent sensitive column `indep` (not a feature), and the target.

    group_effect > 0 makes the target depend on `group`, so the model's score reveals it.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    count = rng.integers(0, 21, size=n)
    flag = rng.random(n) < 0.5
    k = rng.choice(["u", "v", "w"], size=n)
    group = rng.choice(["a", "b"], size=n)
    indep = rng.choice(["p", "q"], size=n)
    signal = 1.5 * x + (k == "u") - (k == "w") + 0.8 * flag + 0.05 * (count - 10) + group_effect * (group == "a")
    signal = signal - group_effect / 2 + rng.normal(scale=0.3, size=n)
    if task == "regression":
        target: list[object] = (3.0 * signal + 10.0).tolist()
        classes = None
    else:
        labels = signal > 0
        flip = rng.random(n) < label_noise
        target = np.where(labels ^ flip, "yes", "no").tolist()
        classes = ["no", "yes"]
    frame = pl.DataFrame({
        "x": pl.Series(np.clip(x, -4, 4).tolist(), dtype=pl.Float64),
        "count": pl.Series(count.tolist(), dtype=pl.Int64),
        "flag": pl.Series(flag.tolist(), dtype=pl.Boolean),
        "k": pl.Series(k.tolist(), dtype=pl.String),
        "group": pl.Series(group.tolist(), dtype=pl.String),
        "indep": pl.Series(indep.tolist(), dtype=pl.String),
        "target": pl.Series(target, dtype=pl.Float64 if task == "regression" else pl.String),
    })
    contract = Contract(
        target="target", task=task, classes=classes,  # type: ignore[arg-type]
        columns=[
            ColumnContract(name="x", type="float", min=-4.0, max=4.0),
            ColumnContract(name="count", type="integer", min=0, max=20),
            ColumnContract(name="flag", type="boolean"),
            ColumnContract(name="k", type="category", categories=["u", "v", "w"]),
            ColumnContract(name="group", type="category", categories=["a", "b"], sensitive=True),
            ColumnContract(name="indep", type="category", categories=["p", "q"], role="ignore", sensitive=True),
            ColumnContract(name="target", type="float" if task == "regression" else "category", role="target",
                           categories=classes, min=-30.0 if task == "regression" else None,
                           max=50.0 if task == "regression" else None),
        ],
    )
    return frame, contract


def halves(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The first half as training rows (members), the second as held-out rows."""
    middle = frame.height // 2
    return frame.head(middle), frame.tail(frame.height - middle)


def fit(frame: pl.DataFrame, contract: Contract, family: str, params: dict | None = None) -> object:
    """keelml's own model pipeline for the family, fitted on the frame (no cross-validation)."""
    from keelml.model.catalog import make_pipeline_for
    from keelml.model.features import to_labelled_xy

    X, y = to_labelled_xy(frame, contract, what="training")
    return make_pipeline_for(contract, family, params or {}, seed=0).fit(X, y)
