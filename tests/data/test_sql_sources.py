"""SQL sources against a real SQLite file and a real PostgreSQL server (KEEL_TEST_POSTGRES_URL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from keelml.data.inputs import frame_digest
from keelml.data.sources import read_source, read_source_with_rejects
from keelml.data.sql import mask_url, read_sql
from keelml.errors import DataError, SpecError
from keelml.pipeline import run
from keelml.pipeline.inputs import resolve_inputs
from keelml.spec.data import SourceSpec
from keelml.spec.pipeline import parse_spec

LOCAL_POSTGRES = "postgresql+psycopg://keel:keel@127.0.0.1:5432/keel"


def _sql(query: str) -> SourceSpec:
    """A SQL source; the tests pass its URL to the reader directly, as the pipeline does."""
    return SourceSpec.model_validate({"format": "sql", "query": query, "url_env": "KEEL_UNUSED_IN_TESTS"})


@pytest.fixture(scope="module")
def pg_url() -> str:
    url = os.environ.get("KEEL_TEST_POSTGRES_URL") or LOCAL_POSTGRES
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        pytest.skip(f"no PostgreSQL server reachable at {mask_url(url)} ({type(exc).__name__}); "
                    "`.ci/run` starts one, or set KEEL_TEST_POSTGRES_URL")
    return url


@pytest.fixture
def pg_table(pg_url: str) -> Iterator[str]:
    """A fresh table with typed columns (dropped afterwards): id, amount numeric, label, flag, day."""
    name = f"keel_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {name} (id integer, amount numeric(10,2), label text, "
                             "flag boolean, day date)"))
        conn.execute(sa.text(f"INSERT INTO {name} SELECT g, g * 1.25, CASE WHEN g % 3 = 0 THEN 'yes' ELSE 'no' END, "
                             "g % 2 = 0, DATE '2024-01-01' + g FROM generate_series(1, 60) AS g"))
        conn.execute(sa.text(f"UPDATE {name} SET label = NULL WHERE id = 7"))
    yield name
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
    engine.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    path = tmp_path / "data.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE people (id INTEGER, height REAL, city TEXT, label TEXT)"))
        conn.execute(sa.text("INSERT INTO people VALUES (:i, :h, :c, :l)"),
                     [{"i": i, "h": 150 + i / 2, "c": None if i == 3 else f"c{i % 4}", "l": "ab"[i % 2]}
                      for i in range(1, 41)])
    engine.dispose()
    return path


def test_sqlite_query_result_keeps_types_and_has_no_rejects(sqlite_db: Path) -> None:
    url = f"sqlite:///{sqlite_db}"
    raw, rejects = read_source_with_rejects(_sql("SELECT * FROM people WHERE id <= 10 ORDER BY id"), url)
    assert raw.schema == pl.Schema({"id": pl.Int64, "height": pl.Float64, "city": pl.String, "label": pl.String})
    assert raw.height == 10 and raw["city"].null_count() == 1
    assert rejects.height == 0


def test_postgres_query_result_is_typed(pg_url: str, pg_table: str) -> None:
    df = read_sql(_sql(f"SELECT * FROM {pg_table} ORDER BY id"), pg_url)
    assert df.schema == pl.Schema({"id": pl.Int64, "amount": pl.Float64, "label": pl.String,
                                   "flag": pl.Boolean, "day": pl.Date})
    assert df.height == 60
    assert df["amount"][3] == 5.0
    assert df["label"].null_count() == 1


def test_postgres_replace_and_digest_follow_the_data(pg_url: str, pg_table: str) -> None:
    source = SourceSpec.model_validate({"format": "sql", "query": f"SELECT id, label FROM {pg_table} ORDER BY id",
                                        "url_env": "UNUSED", "replace": {"label": {"yes": "y"}}})
    df = read_source(source, pg_url)
    assert set(df["label"].drop_nulls()) == {"y", "no"}
    before = frame_digest(read_sql(source, pg_url))
    assert frame_digest(read_sql(source, pg_url)) == before
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {pg_table} SET label = 'maybe' WHERE id = 1"))
    engine.dispose()
    assert frame_digest(read_sql(source, pg_url)) != before


def _password_url(pg_url: str, password: str) -> str:
    return sa.make_url(pg_url).set(password=password).render_as_string(hide_password=False)


def test_postgres_errors_mask_the_password(pg_url: str, pg_table: str) -> None:
    secret = "Sekr3t-pw-" + uuid.uuid4().hex[:6]
    cases = {
        _password_url(pg_url, secret): "cannot connect to",  # authentication fails
        sa.make_url(_password_url(pg_url, secret)).set(port=1).render_as_string(hide_password=False): "cannot connect",
    }
    for url, start in cases.items():
        with pytest.raises(DataError) as info:
            read_sql(_sql("SELECT 1"), url)
        text = str(info.value)
        assert info.value.what.startswith(start)
        assert secret not in text and "***" in text
    good = _password_url(pg_url, sa.make_url(pg_url).password or "")
    for query, words in [(f"SELECT nope FROM {pg_table}", "nope"), ("SELECT * FROM no_such_table", "no_such_table"),
                         ("SELEKT 1", "SELEKT")]:
        with pytest.raises(DataError) as info:
            read_sql(_sql(query), good)
        assert info.value.what.startswith("the query failed on postgresql+psycopg://")
        assert words in info.value.what
        if sa.make_url(pg_url).password:
            assert f":{sa.make_url(pg_url).password}@" not in str(info.value)


@pytest.mark.parametrize(("url", "query", "message"), [
    ("notadb://x/y", "SELECT 1", r"no database driver for notadb://x/y|not a valid database URL"),
    ("this is not a url", "SELECT 1", "not a valid database URL"),
    ("sqlite:///{db}", "SELECT * FROM missing", "the query failed on sqlite:///.*no such table: missing"),
    ("sqlite:///{db}", "SELEC id FROM people", "the query failed on .*syntax error"),
    ("sqlite:///{db}", "SELECT id, id FROM people", "returns the column name\\(s\\) 'id' more than once"),
    ("sqlite:///{db}", "SELECT * FROM people WHERE id < 0", "the query result has no rows"),
    ("sqlite:///{db}", "CREATE TABLE t2 (a int)", "returns no rows \\(it is not a SELECT\\)"),
    ("sqlite:////nonexistent-dir/x.db", "SELECT 1", "cannot connect to sqlite:////nonexistent-dir/x.db"),
])
def test_sql_errors_are_data_errors(sqlite_db: Path, url: str, query: str, message: str) -> None:
    url = url.format(db=sqlite_db)
    with pytest.raises(DataError, match=message):
        read_source(_sql(query), url)


def test_mask_url_hides_passwords_in_userinfo_and_parameters() -> None:
    assert mask_url("postgresql+psycopg://u:p%40ss@h:5/db") == "postgresql+psycopg://u:***@h:5/db"
    assert mask_url("postgresql://h/db?user=u&password=x&sslmode=require") == \
        "postgresql://h/db?user=u&password=***&sslmode=require"
    assert mask_url("sqlite:///a.db") == "sqlite:///a.db"


@pytest.mark.parametrize(("source", "message"), [
    ({"format": "sql", "url": "sqlite://"}, "needs query"),
    ({"format": "sql", "query": "SELECT 1"}, "exactly one of url"),
    ({"format": "sql", "query": "SELECT 1", "url": "sqlite://", "url_env": "X"}, "exactly one of url"),
    ({"format": "sql", "query": "SELECT 1", "url": "postgresql://u:pw@h/db"}, "holds a password"),
    ({"format": "sql", "query": "SELECT 1", "url": "postgresql://h/db?password=pw"}, "holds a password"),
    ({"format": "sql", "query": "SELECT 1", "url": "sqlite://", "path": "a.csv"}, "path: is not used"),
    ({"path": "a.csv", "query": "SELECT 1"}, "only apply to format: sql"),
    ({"format": "csv"}, "path: is required"),
])
def test_sql_source_spec_validation(source: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SourceSpec.model_validate(source)


def _spec(tmp_path: Path, train: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"name: sql-test\ndata:\n  target: label\n  train:\n{train}\nstore:\n  path: .keel\n")
    return path


def test_url_env_must_be_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from keelml.spec.pipeline import load_spec

    monkeypatch.delenv("KEEL_NO_SUCH_URL", raising=False)
    spec = _spec(tmp_path, "    format: sql\n    query: SELECT 1\n    url_env: KEEL_NO_SUCH_URL")
    with pytest.raises(SpecError, match="KEEL_NO_SUCH_URL, which is not set"):
        resolve_inputs(load_spec(spec))
    assert not (tmp_path / ".keel").exists()


def test_relative_sqlite_paths_resolve_against_the_spec(sqlite_db: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from keelml.spec.pipeline import load_spec

    monkeypatch.chdir("/")
    spec = _spec(tmp_path, "    format: sql\n    query: SELECT * FROM people\n    url: sqlite:///data.db")
    inputs = resolve_inputs(load_spec(spec))
    location, digest = inputs.sources["train"]
    assert location == f"sqlite:///{sqlite_db}"
    assert digest == frame_digest(inputs.bound["train"]["frame"])


def test_a_postgres_source_runs_through_validate_and_caches_by_result(
        pg_url: str, pg_table: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_TEST_SOURCE_URL", pg_url)
    spec = _spec(tmp_path, f"    format: sql\n    query: SELECT id, amount, flag, label FROM {pg_table} "
                           "WHERE label IS NOT NULL ORDER BY id\n    url_env: KEEL_TEST_SOURCE_URL")
    parse_spec(spec.read_text())
    first = run(spec, only="validate")
    assert [(s.name, s.status) for s in first.steps] == [("ingest", "ran"), ("validate", "ran")]
    again = run(spec, only="validate")
    assert {s.status for s in again.steps} == {"cached"}
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {pg_table} SET amount = 99 WHERE id = 2"))
    engine.dispose()
    changed = run(spec, only="validate")
    assert changed.steps[0].status == "ran"
    password = sa.make_url(pg_url).password
    db = (tmp_path / ".keel" / "keel.db").read_bytes()
    assert pg_url.encode() not in db
    if password:
        assert f":{password}@".encode() not in db
