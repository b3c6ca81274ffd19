"""Shared fixtures for the data-plane tests: the real Adult files read with their documented options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from keelml.data.sources import read_source
from keelml.spec.data import SourceSpec

ADULT_DIR = Path(__file__).resolve().parents[2] / "examples" / "adult"
ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
    "income",
]
SourceFactory = Callable[..., SourceSpec]


def _adult_source(name: str, **csv: object) -> SourceSpec:
    options: dict[str, object] = {"has_header": False, "columns": ADULT_COLUMNS, "null_values": ["?"], **csv}
    return SourceSpec.model_validate({
        "path": name,
        "csv": options,
        "replace": {"income": {">50K.": ">50K", "<=50K.": "<=50K"}},
    })


@pytest.fixture(scope="session")
def adult_dir() -> Path:
    return ADULT_DIR


@pytest.fixture(scope="session")
def adult_columns() -> list[str]:
    return list(ADULT_COLUMNS)


@pytest.fixture(scope="session")
def adult_source() -> SourceFactory:
    """Build the Adult SourceSpec: ``adult_source("adult.test", skip_rows=1)``."""
    return _adult_source


@pytest.fixture(scope="session")
def adult_train() -> pl.DataFrame:
    return read_source(_adult_source("adult.data"), str(ADULT_DIR / "adult.data"))


@pytest.fixture(scope="session")
def adult_test() -> pl.DataFrame:
    return read_source(_adult_source("adult.test", skip_rows=1), str(ADULT_DIR / "adult.test"))
