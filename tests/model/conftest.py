"""Fixtures for the model tests: small synthetic frames and a slice of the real Adult data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from threadpoolctl import threadpool_limits

from keelml.data.contract import ColumnContract, Contract

ADULT = Path(__file__).resolve().parents[2] / "examples" / "adult" / "adult.data"
ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country",
    "income",
]
ADULT_NUMERIC = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]

Synthetic = Callable[..., tuple[pl.DataFrame, Contract]]


@pytest.fixture(autouse=True, scope="session")
def _single_openmp_thread() -> Iterator[None]:
    """HistGradientBoosting's OpenMP threads crawl (seconds per tiny fit) on a busy shared CPU."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def make_synthetic(task: str, n: int = 240, seed: int = 0) -> tuple[pl.DataFrame, Contract]:
    """A learnable frame with every column type, some nulls, an id column and the target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    k = rng.choice(["u", "v", "w"], size=n)
    flag = rng.random(n) < 0.5
    signal = 1.5 * x + (k == "u") - (k == "w") + 0.8 * flag + rng.normal(scale=0.5, size=n)
    if task == "binary":
        classes: list[str] | None = ["no", "yes"]
        y: list[object] = np.where(signal > 0, "yes", "no").tolist()
    elif task == "multiclass":
        classes = ["high", "low", "mid"]
        y = np.where(signal > 0.7, "high", np.where(signal < -0.7, "low", "mid")).tolist()
    else:
        classes = None
        y = (3.0 * signal + 10.0).tolist()
    count = rng.integers(0, 20, size=n).tolist()
    fraction = rng.random(n).tolist()
    k_list: list[str | None] = k.tolist()
    for i in range(0, n, 11):  # a sprinkling of nulls in every feature
        count[i] = None
        fraction[(i + 3) % n] = None
        k_list[(i + 5) % n] = None
    frame = pl.DataFrame({
        "row_id": pl.Series(range(n), dtype=pl.Int64),
        "x": pl.Series(x.tolist(), dtype=pl.Float64),
        "count": pl.Series(count, dtype=pl.Int64),
        "fraction": pl.Series(fraction, dtype=pl.Float64),
        "flag": pl.Series(flag.tolist(), dtype=pl.Boolean),
        "k": pl.Series(k_list, dtype=pl.String),
        "note": pl.Series(rng.choice(["alpha", "beta", "gamma"], size=n).tolist(), dtype=pl.String),
        "target": pl.Series(y, dtype=pl.Float64 if task == "regression" else pl.String),
    })
    contract = Contract(
        target="target",
        task=task,  # type: ignore[arg-type]
        classes=classes,
        columns=[
            ColumnContract(name="row_id", type="integer", role="id", unique=True),
            ColumnContract(name="x", type="float"),
            ColumnContract(name="count", type="integer"),
            ColumnContract(name="fraction", type="float"),
            ColumnContract(name="flag", type="boolean"),
            ColumnContract(name="k", type="category", categories=["u", "v", "w"]),
            ColumnContract(name="note", type="string"),
            ColumnContract(name="target", type="float" if task == "regression" else "category",
                           role="target", categories=classes),
        ],
    )
    return frame, contract


@pytest.fixture
def synthetic() -> Synthetic:
    return make_synthetic


def load_adult(n_rows: int) -> pl.DataFrame:
    raw = pl.read_csv(ADULT, has_header=False, new_columns=ADULT_COLUMNS, infer_schema=False, n_rows=n_rows)
    cleaned = raw.with_columns(pl.col(pl.String).str.strip_chars())
    cleaned = cleaned.with_columns(
        [pl.when(pl.col(c) == "?").then(None).otherwise(pl.col(c)).alias(c) for c in ADULT_COLUMNS]
    )
    return cleaned.with_columns([pl.col(c).cast(pl.Int64) for c in ADULT_NUMERIC])


def adult_contract(frame: pl.DataFrame) -> Contract:
    columns = []
    for name in ADULT_COLUMNS:
        if name in ADULT_NUMERIC:
            columns.append(ColumnContract(name=name, type="integer"))
        else:
            values = sorted(v for v in frame.get_column(name).unique().to_list() if v is not None)
            role = "target" if name == "income" else "feature"
            columns.append(ColumnContract(name=name, type="category", role=role, categories=values))
    return Contract(target="income", task="binary", classes=["<=50K", ">50K"], columns=columns)


@pytest.fixture(scope="session")
def adult() -> tuple[pl.DataFrame, Contract]:
    if not ADULT.is_file():
        pytest.skip(f"{ADULT} is not present")
    frame = load_adult(6000)
    return frame, adult_contract(frame.head(5000))
