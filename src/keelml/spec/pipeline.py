"""PipelineSpec, the whole pipeline.yaml, and loading it: every problem becomes one helpful SpecError."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from keelml.errors import KeelError, SpecError
from keelml.names import check_name
from keelml.spec.base import NAME_PATTERN, SpecFile, StrictModel
from keelml.spec.data import ContractSpec, DataSpec, SplitSpec, ValidationSpec
from keelml.spec.evaluate import EvaluateSpec, GateSpec, ModelTestsSpec
from keelml.spec.model import ModelSpec, PreprocessSpec, TuneSpec
from keelml.spec.monitor import MonitorSpec
from keelml.spec.report import ReportSpec
from keelml.spec.security import SecuritySpec
from keelml.spec.serve import ServeSpec
from keelml.spec.store import EXECUTOR_PATTERN, StoreSpec


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
    report: ReportSpec = Field(default_factory=ReportSpec)

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
             "serve", "security", "monitor", "report")


@dataclass(frozen=True)
class LoadedSpec(SpecFile):
    """A parsed spec, the file it came from (its relative paths resolve against its directory) and its digest."""

    spec: PipelineSpec


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
