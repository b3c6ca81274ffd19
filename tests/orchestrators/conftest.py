"""A small two-file project (train and test CSVs) whose whole pipeline runs in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_csv(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    label = np.where(x + rng.normal(scale=0.5, size=n) > 0, "yes", "no")
    rows = [f"{a:.5f},{int(k)},{c},{y}" for a, k, c, y in zip(x, rng.integers(0, 5, size=n), colour, label,
                                                               strict=True)]
    path.write_text("x,k,colour,label\n" + "\n".join(rows) + "\n")


def small_spec(directory: Path, *, test: bool = True, tune: bool = False, security: bool = True) -> Path:
    """pipeline.yaml for a logistic regression on a few hundred synthetic rows."""
    directory.mkdir(parents=True, exist_ok=True)
    write_csv(directory / "train.csv", 300, 1)
    data = "  train:\n    path: train.csv\n"
    if test:
        write_csv(directory / "test.csv", 150, 2)
        data += "  test:\n    path: test.csv\n"
    text = (f"name: orch-test\ndata:\n  target: label\n{data}"
            "model:\n  family: logistic_regression\n  cv_folds: 2\n  learning_curve:\n    sizes: []\n"
            "evaluate:\n  bootstrap_rounds: 10\ngate:\n  min_score: 0.6\n"
            f"security:\n  sample_rows: 50\n  privacy: {str(security).lower()}\n"
            f"  robustness: {str(security).lower()}\n")
    if tune:
        text += "tune:\n  trials: 2\n  cv_folds: 2\n"
    path = directory / "pipeline.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    return small_spec(tmp_path / "project")
