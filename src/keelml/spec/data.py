"""The data sections of pipeline.yaml: sources, the target, the contract, validation rules and the split."""

from __future__ import annotations

import codecs
from typing import Literal

from pydantic import Field, field_validator, model_validator

from keelml.spec.base import StrictModel, url_has_password


class CsvOptions(StrictModel):
    """How to read a delimited text file."""

    delimiter: str = Field(",", min_length=1, max_length=1)
    has_header: bool = True
    columns: list[str] | None = None
    skip_rows: int = Field(0, ge=0)
    comment_prefix: str | None = None
    null_values: list[str] = Field(default_factory=lambda: ["", "NA", "N/A", "NaN", "null", "NULL"])
    strip_whitespace: bool = True
    encoding: str = Field("utf8", description="utf8, utf8-lossy, or a Python codec (latin-1, cp1252, utf-16)")
    quote_char: str | None = '"'

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        if value in ("utf8", "utf8-lossy"):
            return value
        try:
            info = codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}: use utf8, utf8-lossy or a Python codec name "
                             "such as latin-1, cp1252 or utf-16") from None
        if not getattr(info, "_is_text_encoding", True):
            raise ValueError(f"{value!r} is not a text encoding: use utf8, utf8-lossy, latin-1, cp1252, utf-16 ...")
        return value


class SourceSpec(StrictModel):
    """One data source: a file, a directory or glob of files (local or any fsspec URL), a SQL query,
    or a DataFrame passed to the Python API; and how to read it."""

    path: str | None = Field(None, description="a file, a directory or a glob such as batches/*.csv")
    format: Literal["auto", "csv", "parquet", "jsonl", "sql", "dataframe"] = "auto"
    csv: CsvOptions = Field(default_factory=CsvOptions)
    query: str | None = Field(None, description="format: sql: the query whose result is the data")
    url: str | None = Field(None, description="format: sql: a SQLAlchemy URL without a password")
    url_env: str | None = Field(None, description="format: sql: environment variable holding the URL")
    replace: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="per column, values to rewrite (e.g. '>50K.' -> '>50K')"
    )

    @model_validator(mode="after")
    def _where_the_data_is(self) -> SourceSpec:
        sql_keys = [k for k in ("query", "url", "url_env") if getattr(self, k) is not None]
        if self.format == "sql":
            if not self.query or not self.query.strip():
                raise ValueError("format: sql needs query: (the SELECT whose rows are the data)")
            if (self.url is None) == (self.url_env is None):
                raise ValueError("format: sql needs exactly one of url: (a SQLAlchemy URL) or url_env: "
                                 "(the name of an environment variable holding it)")
            if self.path is not None:
                raise ValueError("path: is not used with format: sql (the data comes from query:)")
            if self.url is not None and url_has_password(self.url):
                raise ValueError("url: holds a password; keep it out of the spec: put the URL in an "
                                 "environment variable and name that variable with url_env:")
        elif sql_keys:
            raise ValueError(f"{', '.join(sql_keys)} only apply to format: sql")
        elif self.path is None and self.format != "dataframe":
            raise ValueError("path: is required (or format: sql with query:, or format: dataframe "
                             "with the frame passed to keelml.pipeline.run(frames=...))")
        return self

    def resolved_format(self) -> Literal["csv", "parquet", "jsonl", "sql", "dataframe"]:
        if self.format != "auto":
            return self.format
        return format_of_name(self.path or "")


def format_of_name(name: str) -> Literal["csv", "parquet", "jsonl"]:
    """The file format `format: auto` picks from a file name's extension."""
    lower = name.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "csv"


class DataSpec(StrictModel):
    """Where the training (and optionally test) data comes from and what to predict."""

    train: SourceSpec
    test: SourceSpec | None = None
    target: str
    drop_columns: list[str] = Field(default_factory=list)
    sensitive_columns: list[str] = Field(default_factory=list)


class ContractSpec(StrictModel):
    """How the data contract is inferred (or which declared contract file to enforce)."""

    path: str | None = None
    max_categories: int = Field(100, ge=2)
    range_quantiles: tuple[float, float] = (0.001, 0.999)
    range_margin: float = Field(0.5, ge=0.0)
    null_fraction_margin: float = Field(0.05, ge=0.0, le=1.0)
    detect_pii: bool = Field(True, description="flag columns that look like emails, phones, national ids, names")
    pii_action: Literal["drop", "hash", "keep"] = Field(
        "drop", description="what happens to a flagged PII column before storage (hash: salted HMAC-SHA256)")
    pii: dict[str, Literal["drop", "hash", "keep"]] = Field(
        default_factory=dict, description="per column: declare it PII (or override the action for a detected one)")

    @field_validator("range_quantiles")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 <= low < high <= 1.0:
            raise ValueError("range_quantiles must be two numbers 0 <= low < high <= 1, e.g. [0.001, 0.999]")
        return value


class ValidationSpec(StrictModel):
    """Dataset-level rules: when validation stops the run instead of only quarantining rows."""

    max_quarantine_fraction: float = Field(
        0.1, ge=0.0, le=1.0, description="stop the run when a larger share of a source's rows is quarantined")
    null_fraction: Literal["error", "warn"] = Field(
        "error", description="a column whose null share exceeds the contract's max_null_fraction")
    extra_columns: Literal["ignore", "warn", "error"] = "warn"
    deduplicate: Literal["none", "exact", "keys"] = Field(
        "none", description="quarantine repeated training rows: whole rows (exact) or by key_columns (keys)")
    key_columns: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _keys_given(self) -> ValidationSpec:
        if self.deduplicate == "keys" and not self.key_columns:
            raise ValueError("deduplicate: keys needs key_columns: [...]")
        return self


class SplitSpec(StrictModel):
    """How the held-out test set is made when no test file is given."""

    test_size: float = Field(0.2, gt=0.0, lt=1.0)
    stratify: bool = True
    seed: int = 42
