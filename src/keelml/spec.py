"""PipelineSpec: the pydantic model of pipeline.yaml. Every default lives here."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from keelml.errors import SpecError

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
    encoding: Literal["utf8", "utf8-lossy"] = "utf8"
    quote_char: str | None = '"'


class SourceSpec(StrictModel):
    """One data source: a file (local or any fsspec URL) and how to read it."""

    path: str
    format: Literal["auto", "csv", "parquet", "jsonl"] = "auto"
    csv: CsvOptions = Field(default_factory=CsvOptions)
    replace: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="per column, values to rewrite (e.g. '>50K.' -> '>50K')"
    )

    def resolved_format(self) -> Literal["csv", "parquet", "jsonl"]:
        if self.format != "auto":
            return self.format
        lower = self.path.lower()
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

    @field_validator("range_quantiles")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 <= low < high <= 1.0:
            raise ValueError("range_quantiles must be two numbers 0 <= low < high <= 1, e.g. [0.001, 0.999]")
        return value


class SplitSpec(StrictModel):
    """How the held-out test set is made when no test file is given."""

    test_size: float = Field(0.2, gt=0.0, lt=1.0)
    stratify: bool = True
    seed: int = 42


MODEL_FAMILIES = ("hist_gradient_boosting", "lightgbm", "linear", "logistic_regression", "random_forest")
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


class EvaluateSpec(StrictModel):
    """Held-out evaluation: the primary metric and its bootstrap confidence interval."""

    metric: str | None = Field(None, description="primary metric; default roc_auc (binary), accuracy, r2")
    bootstrap_rounds: int = Field(200, ge=0, le=10_000)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 42


class GateSpec(StrictModel):
    """A model whose primary metric is worse than min_score is not registered.

    "Worse" follows the metric: below the limit for scores (roc_auc, r2), above it for losses
    (log_loss, brier, rmse, mae).
    """

    min_score: float | None = None


class StoreSpec(StrictModel):
    """Where artifacts and metadata live; paths are relative to the spec file."""

    path: str = ".keel"
    metadata_url: str | None = None
    encryption: bool = True


class PipelineSpec(StrictModel):
    """The whole pipeline.yaml."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    store: StoreSpec = Field(default_factory=StoreSpec)
    data: DataSpec
    contract: ContractSpec = Field(default_factory=ContractSpec)
    split: SplitSpec = Field(default_factory=SplitSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)
    tune: TuneSpec | None = Field(None, description="hyperparameter tuning; absent means no tuning")
    gate: GateSpec = Field(default_factory=GateSpec)

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

    @model_validator(mode="after")
    def _target_not_dropped(self) -> PipelineSpec:
        if self.data.target in self.data.drop_columns:
            raise ValueError(f"the target {self.data.target!r} is also listed in data.drop_columns")
        return self


_SECTIONS = ("store", "contract", "split", "model", "evaluate", "gate")


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
