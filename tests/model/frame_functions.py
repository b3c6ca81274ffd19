"""User preprocessing functions for the tests (referenced as tests.model.frame_functions:NAME)."""

from __future__ import annotations

import pandas as pd
from pandas import DataFrame as Reexported  # noqa: F401  (a class, not a function)
from pandas import isna  # noqa: F401  (a function defined in another module)

CALLS: list[int] = []  # rows seen by count_rows, to show when a function runs


def clip_x(frame: pd.DataFrame) -> pd.DataFrame:
    """Clip the feature x to [-1, 1] (a pure frame -> frame function)."""
    frame["x"] = frame["x"].clip(-1.0, 1.0)
    return frame


def count_rows(frame: pd.DataFrame) -> pd.DataFrame:
    CALLS.append(len(frame))
    return frame


def returns_list(frame: pd.DataFrame) -> list[int]:
    return [1, 2, 3]


def adds_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(ratio=frame["x"] / 2)


def drops_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.head(1)


def fails(frame: pd.DataFrame) -> pd.DataFrame:
    raise KeyError("no_such_column")


not_a_def = lambda frame: frame  # noqa: E731
