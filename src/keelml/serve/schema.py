"""Request models generated from the data contract: types, category enums, ranges, nullability.

Every feature column is a required field (a missing field is an error; a nullable column takes
JSON null); unknown fields are errors; numbers must be finite; integers must be JSON integers;
categories must be one of the contract's values. A request that training never saw the shape of
is a 422 with one error per offending field, never a silent wrong prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, create_model

from keelml.data.contract import ColumnContract, Contract

MAX_TEXT = 1000  # longest free-text value accepted in a string column


def _field_type(col: ColumnContract) -> Any:
    bounds: dict[str, Any] = {}
    if col.type in ("integer", "float"):
        if col.min is not None:
            bounds["ge"] = int(col.min) if col.type == "integer" and float(col.min).is_integer() else col.min
        if col.max is not None:
            bounds["le"] = int(col.max) if col.type == "integer" and float(col.max).is_integer() else col.max
    kind: Any
    if col.type == "integer":
        kind = Annotated[int, Strict(), Field(**bounds)]
    elif col.type == "float":
        kind = Annotated[float, Strict(), Field(allow_inf_nan=False, **bounds)]
    elif col.type == "boolean":
        kind = Annotated[bool, Strict()]
    elif col.categories is not None:
        kind = Literal[tuple(col.categories)]
    else:
        kind = Annotated[str, Strict(), Field(max_length=MAX_TEXT)]
    return kind | None if col.nullable else kind


@dataclass(frozen=True)
class RequestModels:
    """The pydantic models of one contract, and the attribute name of each feature column."""

    record: type[BaseModel]
    predict: type[BaseModel]
    feedback: type[BaseModel]
    columns: list[str]
    attributes: list[str]


def request_models(contract: Contract, *, max_rows: int, title: str) -> RequestModels:
    """Record, PredictRequest and FeedbackRequest models for a contract."""
    features = contract.features
    attributes = [f"f{i}" for i in range(len(features))]
    fields: dict[str, Any] = {
        attr: (_field_type(col), Field(..., alias=col.name, description=_describe(col)))
        for attr, col in zip(attributes, features, strict=True)
    }
    config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)
    record = create_model(f"{_safe(title)}Record", __config__=config, **fields)
    predict = create_model(
        "PredictRequest", __config__=ConfigDict(extra="forbid"),
        records=(list[record], Field(..., min_length=1, max_length=max_rows,
                                     description=f"one to {max_rows} rows")),
    )
    label: Any
    if contract.task == "regression":
        label = Annotated[float, Strict(), Field(allow_inf_nan=False)]
    else:
        label = Literal[tuple(contract.classes or ())]
    feedback = create_model(
        "FeedbackRequest", __config__=ConfigDict(extra="forbid"),
        request_id=(str, Field(..., pattern=r"^[0-9a-f]{32}$", description="the request_id of a prediction")),
        row=(int, Field(0, ge=0, le=max_rows - 1, description="the row within that request")),
        label=(label, Field(..., description="the true outcome")),
    )
    return RequestModels(record, predict, feedback, [c.name for c in features], attributes)


def _describe(col: ColumnContract) -> str:
    parts: list[str] = [col.type]
    if col.min is not None or col.max is not None:
        parts.append(f"range [{col.min}, {col.max}]")
    parts.append("nullable" if col.nullable else "required value")
    return ", ".join(parts)


def _safe(title: str) -> str:
    return "".join(ch for ch in title.title() if ch.isalnum()) or "Model"


class InferInput(BaseModel):
    """One named input tensor of the Open Inference Protocol (KServe V2): one per feature column."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., max_length=200)
    shape: list[Annotated[int, Field(ge=0)]] = Field(..., min_length=1, max_length=2)
    datatype: Literal["BOOL", "INT32", "INT64", "FP32", "FP64", "BYTES"]
    data: list[Any]
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """A V2 inference request."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, max_length=200)
    inputs: list[InferInput] = Field(..., min_length=1, max_length=10_000)
    parameters: dict[str, Any] | None = None
    outputs: list[dict[str, Any]] | None = None
