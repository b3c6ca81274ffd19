"""Read a SQL query's result through SQLAlchemy (any URL: sqlite, postgresql+psycopg, ...) into polars.

The URL comes from the spec (``url:``, which may not hold a password) or from the environment variable
named by ``url_env:``. Every error message shows the URL with its password masked, and any text a
driver returns has the password scrubbed out. The query runs in a transaction that is rolled back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from keelml.errors import DataError, SpecError
from keelml.spec.data import SourceSpec

FETCH_ROWS = 65_536
MASK = "***"


def source_url(source: SourceSpec, role: str, environ: Mapping[str, str] | None = None) -> str:
    """The database URL of a ``format: sql`` source: ``url:`` itself or the value of ``url_env:``."""
    if source.url is not None:
        return source.url
    env = os.environ if environ is None else environ
    name = source.url_env or ""
    value = env.get(name, "").strip()
    if not value:
        raise SpecError(
            f"data.{role}.url_env names the environment variable {name}, which is not set",
            expected=f"{name} to hold a SQLAlchemy URL such as postgresql+psycopg://user:password@host/db",
            fix=f"export {name}=... before running keel, or fix data.{role}.url_env",
        )
    return value


def mask_url(url: str) -> str:
    """``url`` with its password (user:password@ or a password= parameter) replaced by ***."""
    masked = re.sub(r"(://[^:/@?#]*:)[^@/?#]*@", rf"\g<1>{MASK}@", url)
    return re.sub(r"((?:password|passwd|pwd)=)[^&]*", rf"\g<1>{MASK}", masked, flags=re.IGNORECASE)


def read_sql(source: SourceSpec, url: str) -> pl.DataFrame:
    """Run ``source.query`` against ``url`` and return every row; failures are DataErrors (URL masked)."""
    from sqlalchemy import create_engine, exc, text  # sqlalchemy: only when a SQL source is read

    shown = mask_url(url)
    try:
        engine = create_engine(url)
    except (exc.ArgumentError, ValueError) as error:
        raise DataError(
            f"not a valid database URL: {shown} ({_clean(error, url)})",
            expected="a SQLAlchemy URL such as sqlite:///data.db or postgresql+psycopg://user@host/db",
            fix="fix data.*.url, or the URL in the environment variable data.*.url_env names",
        ) from None
    except (ModuleNotFoundError, exc.NoSuchModuleError) as error:
        raise DataError(
            f"no database driver for {shown}: {_clean(error, url)}",
            expected="the driver package for that database installed",
            fix="install it, e.g. `pip install keelml[postgres]` for postgresql+psycopg:// URLs",
        ) from None
    stage = "connect"
    try:
        with engine.connect() as connection:
            stage = "query"
            result = connection.execute(text(source.query or ""))
            if not result.returns_rows:
                raise DataError(
                    f"the query on {shown} returns no rows (it is not a SELECT)",
                    expected="a query that returns rows, e.g. SELECT * FROM customers",
                    fix="change data.*.query",
                )
            columns = list(result.keys())
            _check_columns(columns, shown)
            parts = [_rows_to_frame(rows, columns) for rows in result.partitions(FETCH_ROWS)]
    except exc.SQLAlchemyError as error:
        if stage == "connect":
            raise DataError(
                f"cannot connect to {shown}: {_clean(error, url)}",
                expected="a reachable database server and valid credentials",
                fix="check the server is running, and the URL's host, port, database, user and password",
            ) from None
        raise DataError(
            f"the query failed on {shown}: {_clean(error, url)}",
            expected="a valid query naming existing tables and columns",
            fix="check data.*.query (run it in the database's own client to see the full error)",
        ) from None
    finally:
        engine.dispose()
    if not parts:
        return pl.DataFrame(schema=dict.fromkeys(columns, pl.String))
    return _plain_types(pl.concat(parts, how="vertical_relaxed"))


def _rows_to_frame(rows: Sequence[Sequence[Any]], columns: list[str]) -> pl.DataFrame:
    return pl.DataFrame([tuple(row) for row in rows], schema=columns, orient="row", infer_schema_length=None)


def _plain_types(frame: pl.DataFrame) -> pl.DataFrame:
    """Decimals become floats (the contract knows integer, float, boolean and text)."""
    decimals = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.Decimal)]
    return frame.with_columns(pl.col(decimals).cast(pl.Float64)) if decimals else frame


def _check_columns(columns: list[str], shown: str) -> None:
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(
            f"the query on {shown} returns the column name(s) {', '.join(map(repr, repeated))} more than once",
            expected="distinct column names",
            fix="give each selected column a distinct name (SELECT a.id AS a_id, b.id AS b_id ...)",
        )


def _clean(error: BaseException, url: str) -> str:
    """The first line of a driver's message, with the URL and its password scrubbed out."""
    inner = getattr(error, "orig", None) or error
    lines = str(inner).strip().splitlines()
    message = lines[0] if lines else type(inner).__name__
    password = _password(url)
    message = message.replace(url, mask_url(url))
    if password:
        message = message.replace(password, MASK)
    return message


def _password(url: str) -> str | None:
    match = re.search(r"://[^:/@?#]*:([^@/?#]*)@", url)
    if match and match.group(1):
        return match.group(1)
    match = re.search(r"(?:password|passwd|pwd)=([^&]*)", url, flags=re.IGNORECASE)
    return match.group(1) if match and match.group(1) else None
