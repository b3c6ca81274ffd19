"""Shared state: a fresh PostgreSQL schema per test, and a small, fast project spec."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers import ADULT

LOCAL_POSTGRES = "postgresql+psycopg://keel:keel@127.0.0.1:5432/keel"


def postgres_base_url() -> str:
    return os.environ.get("KEEL_TEST_POSTGRES_URL") or LOCAL_POSTGRES


def with_query(url: str, **params: str) -> str:
    """The URL with extra query parameters (values already URL-encoded)."""
    return url + ("&" if "?" in url else "?") + "&".join(f"{k}={v}" for k, v in params.items())


def reachable(url: str) -> str | None:
    """None when a connection opens, else why not (for a skip reason)."""
    pytest.importorskip("psycopg")
    import sqlalchemy as sa

    from keelml.data.sql import mask_url

    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # any failure to connect means: skip, saying why
        return f"no PostgreSQL server reachable at {mask_url(url)} ({type(exc).__name__}); `.ci/run` starts one, " \
               "or set KEEL_TEST_POSTGRES_URL"
    return None


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A SQLAlchemy URL whose tables live in a fresh schema of the test server (dropped afterwards)."""
    import sqlalchemy as sa

    base = postgres_base_url()
    why = reachable(base)
    if why:
        pytest.skip(why)
    name = f"keel_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {name}"))
    try:
        yield with_query(base, options=f"-csearch_path%3D{name}")
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
        engine.dispose()


def small_project(directory: Path, *, store: str, seed: int = 1, name: str = "shared",
                  spec_name: str = "pipeline.yaml", rows: int = 800) -> Path:
    """A fast Adult project (logistic regression, 2 folds, no audits) with the given `store:` body."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "adult.data").exists():
        train = (ADULT / "adult.data").read_text().splitlines()[:rows]
        test = (ADULT / "adult.test").read_text().splitlines()[: rows // 2 + 1]
        (directory / "adult.data").write_text("\n".join(train) + "\n")
        (directory / "adult.test").write_text("\n".join(test) + "\n")
    path = directory / spec_name
    path.write_text(f"""name: {name}
data:
  target: income
  train:
    path: adult.data
    csv: &csv
      has_header: false
      columns: [age, workclass, fnlwgt, education, education-num, marital-status, occupation,
                relationship, race, sex, capital-gain, capital-loss, hours-per-week, native-country, income]
      null_values: ["?"]
      strip_whitespace: true
  test:
    path: adult.test
    csv:
      <<: *csv
      skip_rows: 1
    replace:
      income: {{">50K.": ">50K", "<=50K.": "<=50K"}}
model:
  family: random_forest
  params: {{n_estimators: 5, max_depth: 4}}
  cv_folds: 2
  seed: {seed}
  learning_curve: {{sizes: []}}
evaluate:
  bootstrap_rounds: 10
security:
  privacy: false
  robustness: false
gate:
  min_score: 0.6
store:
{store}""")
    return path
