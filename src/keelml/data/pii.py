"""Personal data: recognise columns that hold it, and drop or hash them before anything is stored.

polars is imported inside the functions that read columns: a fully cached run imports this module (for
pii_key) and must not load polars.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from keelml.data.contract import Contract, PiiKind

if TYPE_CHECKING:  # polars loads only when data is touched, so cached runs stay fast
    import polars as pl

SAMPLE_ROWS = 2000
"""Values inspected per column when looking for personal data."""

MATCH_SHARE = 0.8
"""A column is flagged when at least this share of its sampled values match one pattern."""

_PATTERNS: tuple[tuple[PiiKind, str], ...] = (
    ("email", r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$"),
    ("national_id", r"^(\d{3}-\d{2}-\d{4}|[A-CEGHJ-PR-TW-Z]{2}\d{6}[A-D]|\d{2}\.?\d{2}\.?\d{2}[-+ ]?\d{4,5})$"),
    ("card_number", r"^(\d{4}[ -]?){3}\d{1,7}$"),
    # a phone number has a leading + or separators between digit groups; bare numbers are not phones
    ("phone", r"^(\+\d{1,3}[ .-]?)?\(?\d{2,4}\)?[ .-]\d{2,4}([ .-]\d{2,5}){0,3}$|^\+\d{7,15}$"),
)
_NAME_HINT = re.compile(r"(^|_|\b)(name|first_?name|last_?name|surname|full_?name|given_?name|patient|customer)$",
                        re.IGNORECASE)
_PERSON_NAME = r"^[A-Z][a-z'’-]+( [A-Z]\.?)?( [A-Z][a-z'’-]+){1,2}$"
_COLUMN_HINTS: tuple[tuple[PiiKind, re.Pattern[str]], ...] = (
    ("email", re.compile(r"e-?mail", re.IGNORECASE)),
    ("phone", re.compile(r"phone|mobile|tel(ephone)?$", re.IGNORECASE)),
    ("national_id", re.compile(r"ssn|social_?security|national_?id|passport|nino", re.IGNORECASE)),
)


def detect_pii(series: pl.Series) -> PiiKind | None:
    """The kind of personal data a text column holds, judged on a sample of its values, or None."""
    import polars as pl

    if series.dtype != pl.String:
        return None
    if bool(series.drop_nulls().head(SAMPLE_ROWS).str.contains(r"^[+-]?\d+(\.\d+)?$").all()):
        return _hinted(series)  # plain numbers: only a column name can say they are personal data
    values = series.drop_nulls().str.strip_chars()
    values = values.filter(values != "").head(SAMPLE_ROWS)
    if values.len() == 0:
        return None
    for kind, pattern in _PATTERNS:
        share = _share(values.str.contains(pattern))
        if share >= MATCH_SHARE:
            return kind
    distinct_share = values.n_unique() / values.len()
    if distinct_share >= 0.5 and _share(values.str.contains(_PERSON_NAME)) >= MATCH_SHARE:
        return "person_name"
    if _NAME_HINT.search(series.name) and distinct_share >= 0.5:
        return "person_name"
    return _hinted(series)


def _hinted(series: pl.Series) -> PiiKind | None:
    """The PII kind a column's name announces (email, phone, ssn...) when its values are mostly distinct."""
    values = series.drop_nulls().head(SAMPLE_ROWS)
    if values.len() == 0 or values.n_unique() / values.len() < 0.5:
        return None
    for kind, hint in _COLUMN_HINTS:
        if hint.search(series.name):
            return kind
    return None


def _share(flags: pl.Series) -> float:
    """The share of true values."""
    return int(flags.sum()) / flags.len() if flags.len() else 0.0


def pii_key(master_key: bytes) -> bytes:
    """The project's secret salt for hashing personal data, derived from its master key."""
    return hmac.new(master_key, b"keelml/pii-hash/v1", hashlib.sha256).digest()


def protect(df: pl.DataFrame, contract: Contract, key: bytes | None,
            columns: Sequence[str] | None = None) -> pl.DataFrame:
    """``df`` with every PII column dropped or replaced by its salted hash, as the contract says.

    ``columns`` limits the treatment to those names (all of the frame's columns by default).
    Hashing needs ``key``; without one a column marked hash is dropped rather than stored in clear.
    """
    import polars as pl

    names = set(df.columns if columns is None else columns)
    drop: list[str] = []
    hashed: list[pl.Expr] = []
    for col in contract.columns:
        if col.pii is None or col.name not in names or col.name not in df.columns or col.pii_action == "keep":
            continue
        if col.pii_action == "hash" and key is not None:
            hashed.append(pl.col(col.name).cast(pl.String).map_elements(
                functools.partial(hash_value, key=key), return_dtype=pl.String, skip_nulls=True))
        else:
            drop.append(col.name)
    return df.with_columns(hashed).drop(drop)


def hash_value(value: str, key: bytes) -> str:
    """The salted hash of one value (the same as ``protect`` stores)."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
