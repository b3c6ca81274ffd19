"""PipelineSpec: the pydantic model of pipeline.yaml. Every default lives here."""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from keelml.errors import SpecError
from keelml.spec_monitor import MonitorSpec

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class StrictModel(BaseModel):
    """A spec section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
        import codecs

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
            if self.url is not None and _url_has_password(self.url):
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


def _url_has_password(url: str) -> bool:
    """True when a database URL carries a password (user:password@ or a password query parameter)."""
    from urllib.parse import parse_qsl, urlsplit

    try:
        parts = urlsplit(url)
        secret_in_query = any(key.lower() in ("password", "passwd", "pwd") for key, _ in parse_qsl(parts.query))
        return bool(parts.password) or secret_in_query
    except ValueError:
        return "@" in url and ":" in url.split("@", 1)[0].split("://", 1)[-1]


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


MODEL_FAMILIES = ("hist_gradient_boosting", "lightgbm", "linear", "logistic_regression", "random_forest",
                  "dp_logistic_regression", "dp_random_forest")  # dp_*: differentially private (extra `dp`)
IMPORT_PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"


class LearningCurveSpec(StrictModel):
    """Learning curves over the CV folds and the over/under-fitting flags (skill units, see training.md)."""

    sizes: list[float] = Field(
        default_factory=lambda: [0.1, 0.25, 0.5, 0.75, 1.0],
        description="fractions of each fold's training rows; [] skips the curve (flags still computed)",
    )
    overfit_gap: float = Field(0.1, gt=0.0, le=1.0, description="flag when train skill - validation skill exceeds it")
    underfit_skill: float = Field(0.2, gt=0.0, le=1.0, description="flag when train and validation skill are below it")

    @field_validator("sizes")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0.0 < v <= 1.0 for v in value):
            raise ValueError("learning_curve.sizes are fractions 0 < size <= 1, e.g. [0.1, 0.25, 0.5, 0.75, 1.0]")
        return sorted(set(value))


class ModelSpec(StrictModel):
    """The estimator, its hyperparameters and the cross-validation used to check it."""

    family: str = Field(
        "hist_gradient_boosting",
        description="one of MODEL_FAMILIES, or a scikit-learn-compatible estimator as module:Class",
    )
    params: dict[str, Any] = Field(default_factory=dict)
    cv_folds: int = Field(5, ge=2, le=20)
    seed: int = 42
    group_column: str | None = Field(None, description="group k-fold on this column (rows of a group stay together)")
    time_column: str | None = Field(None, description="time-series split in the order of this column")
    learning_curve: LearningCurveSpec = Field(default_factory=LearningCurveSpec)
    n_jobs: int = Field(1, ge=1, le=64, description="processes for cross-validation folds")
    threads: int = Field(
        1, ge=1, le=64,
        description="OpenMP/BLAS threads per process; 1 avoids oversubscription on shared machines",
    )

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        import re

        if value in MODEL_FAMILIES or re.match(IMPORT_PATH_PATTERN, value):
            return value
        close = difflib.get_close_matches(value, MODEL_FAMILIES, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown model family {value!r}{hint}: use one of {', '.join(MODEL_FAMILIES)} "
            "or an estimator's import path such as sklearn.svm:SVC"
        )

    @model_validator(mode="after")
    def _one_split_column(self) -> ModelSpec:
        if self.group_column and self.time_column:
            raise ValueError("set model.group_column or model.time_column, not both")
        return self


class ParamRange(StrictModel):
    """One tuned hyperparameter: a numeric range (int when low and high are ints) or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    integer: bool | None = Field(None, description="default: true when low and high are written as integers")

    @model_validator(mode="before")
    @classmethod
    def _remember_int(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("integer") is None and "low" in data and "high" in data:
            ints = all(isinstance(data[k], int) and not isinstance(data[k], bool) for k in ("low", "high"))
            return {**data, "integer": ints}
        return data

    @model_validator(mode="after")
    def _range_or_choices(self) -> ParamRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ValueError("give either non-empty choices: [...] or low: and high:, not both")
            if not all(c is None or isinstance(c, bool | int | float | str) for c in self.choices):
                raise ValueError("choices must be numbers, strings, booleans or null (not lists or mappings)")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a tuned parameter needs low: and high: (or choices: [...])")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        return self


class TuneSpec(StrictModel):
    """Hyperparameter search with Optuna; the study lives in the metadata database and resumes."""

    trials: int = Field(30, ge=1, le=100_000, description="finished trials the study should reach")
    timeout_s: float | None = Field(None, gt=0, description="stop starting new trials after this many seconds")
    metric: str | None = Field(None, description="the CV metric to optimise; default the evaluation metric")
    pruner: Literal["median", "none"] = "median"
    seed: int | None = Field(None, description="sampler seed; default model.seed")
    n_jobs: int = Field(1, ge=1, le=64, description="trials evaluated in parallel, one process each")
    cv_folds: int | None = Field(None, ge=2, le=20, description="folds of the tuning objective; default model.cv_folds")
    space: dict[str, ParamRange] = Field(
        default_factory=dict, description="per parameter, a range or choices; overrides the family's default space"
    )


FUNCTION_REF_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
"""A user function reference: `package.module:function`."""


class ImputeSpec(StrictModel):
    """How missing feature values are filled ("auto": by model family, see docs/training.md)."""

    numeric: Literal["auto", "median", "mean", "constant"] = "auto"
    numeric_fill_value: float = 0.0
    categorical: Literal["auto", "most_frequent", "constant"] = "auto"
    categorical_fill_value: str = "missing"
    add_indicator: bool = False


class PreprocessSpec(StrictModel):
    """Feature preprocessing, fitted inside the model pipeline on training rows only."""

    functions: list[str] = Field(
        default_factory=list, description="package.module:function, each a pandas frame -> frame function"
    )
    impute: ImputeSpec = Field(default_factory=ImputeSpec)
    scaling: Literal["auto", "none", "standard", "robust", "minmax"] = "auto"
    encoding: Literal["auto", "onehot", "ordinal"] = "auto"
    min_frequency: StrictInt | StrictFloat | None = None
    max_categories: int | None = Field(None, ge=2)

    @field_validator("functions")
    @classmethod
    def _function_refs(cls, value: list[str]) -> list[str]:
        for ref in value:
            if not re.fullmatch(FUNCTION_REF_PATTERN, ref):
                raise ValueError(f"{ref!r} is not a function reference: write package.module:function")
        if len(set(value)) != len(value):
            raise ValueError("a function is listed twice")
        return value

    @field_validator("min_frequency")
    @classmethod
    def _frequency(cls, value: int | float | None) -> int | float | None:
        if value is None or (isinstance(value, int) and value >= 1) or (isinstance(value, float) and 0 < value < 1):
            return value
        if isinstance(value, float) and value >= 1 and value.is_integer():
            return int(value)
        raise ValueError("min_frequency must be a count >= 1 or a fraction between 0 and 1")


class EvaluateSpec(StrictModel):
    """Held-out evaluation: metrics with bootstrap intervals, slices, error analysis and fairness."""

    metric: str | None = Field(None, description="primary metric; default roc_auc (binary), accuracy, r2")
    bootstrap_rounds: int = Field(200, ge=0, le=10_000)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 42
    min_slice_rows: int = Field(50, ge=1, description="smallest slice (and fairness group) that is scored")
    slice_bins: int = Field(4, ge=2, le=20, description="quantile bins per numeric column for slices")
    worst_slices: int = Field(5, ge=0, le=100, description="slices listed by the error analysis")
    worst_examples: int = Field(10, ge=0, le=1000, description="highest-loss held-out rows listed")


class GateSpec(StrictModel):
    """A model whose primary metric is worse than min_score (or than production, by more than the
    max_*_drop limits) is registered as rejected and can never be promoted.

    "Worse" follows the metric: below the limit for scores (roc_auc, r2), above it for losses
    (log_loss, brier, rmse, mae).
    """

    min_score: float | None = None
    max_fairness_difference: float | None = Field(
        None, ge=0.0, description="largest allowed fairness difference per sensitive column (docs/evaluation.md)")
    # relative to the version the model's `production` alias points to, both scored on the same held-out rows
    max_metric_drop: float | None = Field(
        None, ge=0.0, description="largest allowed drop of the primary metric below production (metric units)")
    max_slice_drop: float | None = Field(
        None, ge=0.0, description="largest allowed drop on any slice of at least min_slice_rows rows")
    min_slice_rows: int = Field(200, ge=1, description="slices smaller than this are not compared with production")
    min_agreement: float | None = Field(
        None, ge=0.0, le=1.0, description="smallest share of held-out rows predicted as production predicts them")
    agreement_tolerance: float = Field(0.0, ge=0.0, description="regression: predictions this close agree")
    promote: Literal["manual", "auto"] = Field(
        "manual", description="a passed candidate is registered as staging (manual) or also promoted to production")


class ExpectRange(StrictModel):
    """An allowed interval: of a class probability (classification) or of the prediction (regression)."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> ExpectRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is larger than max {self.max}")
        return self


class GoldenCase(StrictModel):
    """One input row and what the model must answer for it."""

    name: str | None = None
    input: dict[str, Any]
    expect: ExpectRange | bool | int | float | str
    proba_of: str | None = Field(None, description="class whose probability expect's range bounds")


class InvarianceTest(StrictModel):
    """Changing `column` within its contract domain flips at most max_flip_rate of the predictions."""

    column: str
    max_flip_rate: float = Field(0.0, ge=0.0, le=1.0)
    tolerance: float | None = Field(None, ge=0.0, description="regression: a change above this is a flip")


class DirectionalTest(StrictModel):
    """Raising `column` by delta never moves the score against `direction` by more than tolerance."""

    column: str
    direction: Literal["increasing", "decreasing"] = "increasing"
    tolerance: float = Field(0.0, ge=0.0)
    delta: float | None = Field(None, gt=0.0, description="default: a tenth of the column's range")
    proba_of: str | None = None


class ModelTestsSpec(StrictModel):
    """Tests every candidate model must pass; each failure refuses the model at the gate."""

    golden: list[GoldenCase] = Field(default_factory=list)
    invariance: list[InvarianceTest] = Field(default_factory=list)
    directional: list[DirectionalTest] = Field(default_factory=list)
    sample_rows: int = Field(1000, ge=1, description="held-out rows that invariance and directional tests use")
    seed: int = 42


class ServeSpec(StrictModel):
    """How `keel serve` answers: response precision, request limits, model following, prediction log."""

    precision: int = Field(3, ge=0, le=6, description="decimals of returned probabilities")
    top_k: int = Field(1, ge=1, le=1000, description="most probable classes returned per row")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest accepted request body")
    max_rows: int = Field(1000, ge=1, le=100_000, description="rows per request")
    rate_limit: float = Field(1000.0, gt=0, description="requests per second per API key (token bucket)")
    rate_burst: int = Field(2000, ge=1, description="requests a key may send at once before the rate applies")
    poll_seconds: float = Field(1.0, gt=0, le=3600, description="how often the server checks which version is live")
    log_predictions: bool = True
    log_path: str | None = Field(None, description="prediction log directory; default <store>/predictions")
    log_roll_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    log_roll_seconds: float = Field(3600.0, gt=0)
    hash_columns: list[str] = Field(default_factory=list, description="PII columns logged as keyed hashes")
    query_quota_rows: int | None = Field(None, ge=1, description="rows one API key may ask for before an alert")
    extraction_min_rows: int = Field(200, ge=10, description="rows a key sends before its sweep statistics count")
    extraction_margin: float = Field(0.05, gt=0, le=0.5, description="probability distance to the threshold "
                                     "that counts as near the decision boundary")
    extraction_share: float = Field(0.5, gt=0, le=1.0, description="share of near-boundary rows or one-column "
                                    "variations that marks a key as sweeping the input space")
    block_suspected_extraction: bool = Field(False, description="refuse (403) keys suspected of model extraction")


class SecuritySpec(StrictModel):
    """Privacy and robustness audits of the trained model, and the limits the gate applies to them."""

    privacy: bool = Field(True, description="membership- and attribute-inference audit after evaluate")
    robustness: bool = Field(True, description="perturbation stability (prediction flip rate) after evaluate")
    sample_rows: int = Field(2000, ge=50, le=1_000_000, description="rows drawn from each split per audit")
    seed: int = 42
    max_membership_auc: float | None = Field(
        None, ge=0.5, le=1.0, description="gate: refuse a model whose membership-attack ROC AUC is higher")
    max_flip_rate: float | None = Field(
        None, ge=0.0, le=1.0, description="gate: refuse a model whose prediction flip rate under noise is higher")
    attribute_advantage_flag: float = Field(
        0.05, ge=0.0, le=1.0,
        description="flag a sensitive column whose inference advantage over the baseline exceeds this")
    noise_scale: float = Field(0.1, ge=0.0, le=10.0, description="numeric noise std as a share of the column's IQR")
    swap_fraction: float = Field(0.1, ge=0.0, le=1.0, description="share of rows whose categories are swapped")
    attack: Literal["none", "hopskipjump"] = Field(
        "none", description="optional black-box attack (extra `art`: adversarial-robustness-toolbox)")
    attack_rows: int = Field(10, ge=1, le=1000,
                             description="rows attacked by the black-box attack (~100 predict calls each)")

    @model_validator(mode="after")
    def _limits_need_audits(self) -> SecuritySpec:
        if self.max_membership_auc is not None and not self.privacy:
            raise ValueError("security.max_membership_auc needs security.privacy: true")
        if self.max_flip_rate is not None and not self.robustness:
            raise ValueError("security.max_flip_rate needs security.robustness: true")
        return self

    def gate_limits(self) -> dict[str, float | None]:
        """The limits the gate step applies (part of its parameters)."""
        return {"max_membership_auc": self.max_membership_auc, "max_flip_rate": self.max_flip_rate}


_SECRET_OPTION = re.compile(r"secret|password|passwd|token|credential|private|connection_string|(^|_)sas($|_)|"
                            r"(^|_)key($|_)", re.IGNORECASE)
EXECUTOR_PATTERN = r"^(local|dask://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5})$"
"""`executor:`: keelml.engine.executors.DASK_URL accepts the same addresses."""


class StoreSpec(StrictModel):
    """Where artifacts and metadata live; paths are relative to the spec file."""

    path: str = Field(".keel", description="local directory: keys, the default SQLite metadata and artifacts")
    metadata_url: str | None = Field(None, description="any SQLAlchemy URL; default: SQLite in `path`")
    artifacts_url: str | None = Field(
        None, description="artifacts on a shared directory or any fsspec URL (s3://, gs://...); default: `path`/store")
    artifacts_options: dict[str, StrictInt | StrictFloat | bool | str] = Field(
        default_factory=dict, description="fsspec storage options (endpoint_url, region...); never credentials")
    encryption: bool = True

    @model_validator(mode="after")
    def _no_password_in_url(self) -> StoreSpec:  # after the fields: the message must not echo the URL
        if self.artifacts_url is not None and _url_has_password(self.artifacts_url):
            raise ValueError("store.artifacts_url holds a password; keep credentials out of the spec: drop "
                             "user:password@ from the URL and set them in the environment (e.g. AWS_ACCESS_KEY_ID "
                             "and AWS_SECRET_ACCESS_KEY for s3://)")
        return self

    @field_validator("artifacts_options")
    @classmethod
    def _no_credentials(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if _SECRET_OPTION.search(key):
                raise ValueError(f"store.artifacts_options must not hold credentials ({key!r}); set them in the "
                                 "environment instead (e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for s3://)")
        return value


class PipelineSpec(StrictModel):
    """The whole pipeline.yaml."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    executor: str = Field(
        "local", pattern=EXECUTOR_PATTERN,
        description="where folds, trials, audits run: local, or dask://HOST:PORT (a Dask scheduler); "
                    "never part of a cache key",
    )
    store: StoreSpec = Field(default_factory=StoreSpec)
    data: DataSpec
    contract: ContractSpec = Field(default_factory=ContractSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    split: SplitSpec = Field(default_factory=SplitSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    preprocess: PreprocessSpec = Field(default_factory=PreprocessSpec)
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)
    tune: TuneSpec | None = Field(None, description="hyperparameter tuning; absent means no tuning")
    gate: GateSpec = Field(default_factory=GateSpec)
    tests: ModelTestsSpec = Field(default_factory=ModelTestsSpec)
    serve: ServeSpec = Field(default_factory=ServeSpec)
    security: SecuritySpec = Field(default_factory=SecuritySpec)
    monitor: MonitorSpec = Field(default_factory=MonitorSpec)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections_default(cls, data: Any) -> Any:
        """A section with every key commented out (`gate:`) means its defaults."""
        if isinstance(data, dict):
            cleaned = {k: v for k, v in data.items() if not (v is None and k in _SECTIONS)}
            if "tune" in cleaned and cleaned["tune"] is None:
                cleaned["tune"] = {}  # `tune:` alone means: tune with the defaults
            return cleaned
        return data

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        from keelml.errors import KeelError
        from keelml.names import check_name

        try:
            return check_name(value, what="pipeline name")
        except KeelError as exc:
            raise ValueError(exc.what) from None

    @model_validator(mode="after")
    def _target_not_dropped(self) -> PipelineSpec:
        if self.data.target in self.data.drop_columns:
            raise ValueError(f"the target {self.data.target!r} is also listed in data.drop_columns")
        return self


_SECTIONS = ("store", "contract", "validation", "split", "model", "preprocess", "evaluate", "gate", "tests",
             "serve", "security", "monitor")


@dataclass(frozen=True)
class LoadedSpec:
    """A parsed spec, the directory its relative paths resolve against, and its digest."""

    spec: PipelineSpec
    path: Path
    digest: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, path: str) -> str:
        """An absolute path for a spec-relative local path; URLs (s3://...) unchanged."""
        if "://" in path:
            return path
        candidate = Path(path).expanduser()
        return str(candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve())


def load_spec(path: str | Path) -> LoadedSpec:
    """Read and validate pipeline.yaml; every problem becomes one SpecError."""
    spec_path = Path(path)
    if spec_path.is_dir():
        spec_path = spec_path / "pipeline.yaml"
    if not spec_path.is_file():
        raise SpecError(
            f"spec file not found: {spec_path}",
            expected="a pipeline.yaml file",
            fix="give the path to your pipeline.yaml, or create one with `keel init DIR`",
        )
    try:
        raw = spec_path.read_bytes()
    except PermissionError:
        raise SpecError(f"spec file is not readable (permission denied): {spec_path}",
                        expected="a spec file the user running keel may read",
                        fix="fix the file's permissions, or run keel as its owner") from None
    return LoadedSpec(spec=parse_spec(raw, source=str(spec_path)), path=spec_path.resolve(),
                      digest=hashlib.sha256(raw).hexdigest())


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (each key may appear once)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_spec(raw: bytes | str, *, source: str = "pipeline.yaml") -> PipelineSpec:
    """Parse YAML text into a PipelineSpec, turning errors into helpful SpecErrors."""
    try:
        loader = _UniqueKeyLoader(raw)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(
            f"{source} is not valid YAML{where}: {getattr(exc, 'problem', exc)}",
            expected="a YAML mapping of spec sections (name, data, model, ...)",
            fix="fix the YAML syntax (indentation, colons, quotes) at that place",
        ) from None
    if not isinstance(data, dict):
        raise SpecError(
            f"{source} must be a YAML mapping, got {type(data).__name__}",
            expected="keys such as name:, data:, model:",
            fix="start from the file written by `keel init DIR`",
        )
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc, source) from None


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The spec section class found by following a pydantic error location."""
    model: type[BaseModel] | None = PipelineSpec
    keyed = False  # the previous field was a mapping: this part is one of its keys
    for part in loc:
        if keyed:
            keyed = False
            continue
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return model if isinstance(part, int) else None
        annotation = model.model_fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        keyed = getattr(annotation, "__origin__", None) is dict
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return model


def _spec_error(exc: ValidationError, source: str) -> SpecError:
    # An unknown key explains a "missing" one (a typo such as data.trian), so it is reported first.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = tuple(first["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    extra = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    if first["type"] == "extra_forbidden":
        key = str(loc[-1])
        section = _model_at(loc[:-1])
        valid = sorted(section.model_fields) if section else []
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        parent = ".".join(str(p) for p in loc[:-1]) or "the top level"
        hint = f"did you mean {close[0]!r}? " if close else ""
        return SpecError(
            f"{source}: unknown key {key!r} in {parent}{extra}",
            expected="one of: " + ", ".join(valid),
            fix=f"{hint}rename or remove {key!r}",
        )
    if first["type"] == "missing":
        section = _model_at(loc[:-1])
        return SpecError(
            f"{source}: required key {where!r} is missing{extra}",
            expected=f"{where} to be set" + (f" in the {section.__name__} section" if section else ""),
            fix=f"add {loc[-1]}: ... (see `keel init` for a commented example)",
        )
    given = first.get("input")
    shown = "" if isinstance(given, dict | list) else f" (got {given!r})"
    return SpecError(
        f"{source}: invalid value for {where}{shown}: {first['msg']}{extra}",
        expected=first["msg"],
        fix=f"change {where} in {source}",
    )
