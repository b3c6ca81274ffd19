"""The data contract: per-column type, nullability, domain, range and role; inferred, edited, enforced."""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Sequence
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keelml.errors import DataError

ColumnType = Literal["integer", "float", "boolean", "category", "string", "datetime"]
Role = Literal["feature", "target", "id", "timestamp", "ignore"]
Task = Literal["binary", "multiclass", "regression"]
PiiKind = Literal["email", "phone", "national_id", "card_number", "person_name", "declared"]
PiiAction = Literal["drop", "hash", "keep"]


class ColumnContract(BaseModel):
    """What one column may hold."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: ColumnType
    role: Role = "feature"
    nullable: bool = True
    max_null_fraction: float = Field(1.0, ge=0.0, le=1.0)
    categories: list[str] | None = None
    min: float | None = None
    max: float | None = None
    unique: bool = False
    sensitive: bool = False
    format: str | None = Field(None, description="strptime format of a datetime column read from text")
    pii: PiiKind | None = Field(None, description="what personal data the column holds, if any")
    pii_action: PiiAction | None = Field(
        None, description="drop: never stored; hash: salted HMAC-SHA256; keep: stored as is")


class Contract(BaseModel):
    """The whole contract; its version is the digest of its canonical JSON."""

    model_config = ConfigDict(extra="forbid")

    target: str
    task: Task
    classes: list[str] | None = None
    columns: list[ColumnContract]

    def column(self, name: str) -> ColumnContract:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def features(self) -> list[ColumnContract]:
        return [c for c in self.columns if c.role == "feature"]

    def canonical_json(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()

    @property
    def version(self) -> str:
        """Short content hash: the same contract always has the same version."""
        return hashlib.sha256(self.canonical_json()).hexdigest()[:12]


YAML_HEADER = """\
# keelml data contract: what each column may hold.
# It was inferred from the training data; you may edit it (types, categories, min/max,
# nullable, roles) and commit it, then point contract.path in pipeline.yaml at this file.
# Rows that break it are quarantined with a reason, never silently dropped.
# Columns flagged `pii` are dropped, hashed (salted) or kept as `pii_action` says, before anything
# is stored; their values never appear in this file.
"""


def close_match_hint(name: str, choices: Sequence[str]) -> str:
    """``"did you mean 'x'? "`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def contract_to_yaml(contract: Contract) -> str:
    """A readable, commented YAML document of the contract (unset optional fields omitted)."""
    body = yaml.safe_dump(
        contract.model_dump(mode="json", exclude_none=True),
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return YAML_HEADER + body


def contract_from_yaml(text: str, source: str) -> Contract:
    """Parse a contract YAML document; every problem is a DataError naming ``source``."""
    fix = f"edit {source}, or delete it and let keelml infer a fresh contract"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataError(
            f"{source} is not valid YAML: {getattr(exc, 'problem', None) or exc}",
            expected="a YAML mapping with target, task, classes and columns",
            fix=fix,
        ) from None
    if not isinstance(data, dict):
        raise DataError(
            f"{source} must be a YAML mapping, got {type(data).__name__}",
            expected="a YAML mapping with target, task, classes and columns",
            fix=fix,
        )
    try:
        contract = Contract.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        if first["loc"][:1] == ("columns",) and len(first["loc"]) > 1 and isinstance(first["loc"][1], int):
            index = first["loc"][1]
            columns = data.get("columns")
            if isinstance(columns, list) and isinstance(columns[index], dict) and "name" in columns[index]:
                where += f" (column {columns[index]['name']!r})"
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise DataError(
            f"{source}: invalid contract field {where}: {first['msg']}{more}",
            expected=first["msg"],
            fix=fix,
        ) from None
    _check_consistent(contract, source, fix)
    return contract


def _check_consistent(contract: Contract, source: str, fix: str) -> None:
    """Cross-field rules the pydantic model does not express."""
    names = [c.name for c in contract.columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    problem: tuple[str, str] | None = None
    if dupes:
        problem = (f"columns repeated: {', '.join(dupes)}", "each column listed once")
    elif contract.target not in names:
        problem = (f"the target {contract.target!r} is not among the columns", "a column for the target")
    elif contract.column(contract.target).role != "target":
        problem = (f"the target column {contract.target!r} does not have role: target", "role: target")
    elif [c.name for c in contract.columns if c.role == "target"] != [contract.target]:
        problem = ("more than one column has role: target", "exactly one target column")
    elif contract.task != "regression" and not contract.classes:
        problem = (f"task {contract.task} needs a list of classes", "classes: [...] for classification")
    elif contract.task == "binary" and len(contract.classes or []) != 2:
        problem = ("task binary needs exactly two classes", "classes: [negative, positive]")
    elif not contract.features:
        problem = ("no column has role: feature", "at least one feature column")
    else:
        problem = _column_problem(contract)
    if problem:
        raise DataError(f"{source}: {problem[0]}", expected=problem[1], fix=fix)


def _column_problem(contract: Contract) -> tuple[str, str] | None:
    """The first per-column inconsistency, as (what, expected)."""
    for col in contract.columns:
        if col.min is not None and col.max is not None and col.min > col.max:
            return f"column {col.name!r} has min {col.min} > max {col.max}", "min <= max"
        if col.type == "datetime" and col.role in ("feature", "target"):
            return (f"column {col.name!r} is a datetime with role {col.role}",
                    "role timestamp, id or ignore for datetime columns (derive features with preprocess functions)")
        if col.pii is not None and col.role in ("feature", "target") and col.pii_action != "keep":
            return (f"column {col.name!r} holds personal data ({col.pii}) but has role {col.role} "
                    f"and pii_action {col.pii_action}",
                    "pii_action: keep for a PII column used as a feature or target, or role id / ignore")
        if col.pii is not None and col.categories:
            return (f"column {col.name!r} holds personal data ({col.pii}) but lists its categories",
                    "no categories for PII columns (the contract file must not hold personal data)")
    return None
