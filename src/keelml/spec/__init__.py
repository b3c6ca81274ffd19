"""pipeline.yaml as pydantic models, one module per area; every default lives in these modules.

`keelml.spec.pipeline` holds the whole spec and its loader; each package reads only its own section
(data: `keelml.spec.data`, model: `keelml.spec.model`, ...). This module re-exports them all.
"""

from keelml.spec.base import NAME_PATTERN, StrictModel, url_has_password
from keelml.spec.data import ContractSpec, CsvOptions, DataSpec, SourceSpec, SplitSpec, ValidationSpec, format_of_name
from keelml.spec.evaluate import (
    DirectionalTest,
    EvaluateSpec,
    ExpectRange,
    GateSpec,
    GoldenCase,
    InvarianceTest,
    ModelTestsSpec,
)
from keelml.spec.model import (
    FUNCTION_REF_PATTERN,
    IMPORT_PATH_PATTERN,
    MODEL_FAMILIES,
    ImputeSpec,
    LearningCurveSpec,
    ModelSpec,
    ParamRange,
    PreprocessSpec,
    TuneSpec,
)
from keelml.spec.monitor import (
    DEFAULT_DECIDE_ON,
    DISTRIBUTION_STATISTICS,
    SHARE_STATISTICS,
    ActionSpec,
    DriftSpec,
    DriftThresholds,
    MonitorSpec,
    PerformanceSpec,
    RuleKind,
    RuleSpec,
    Statistic,
    parse_window,
)
from keelml.spec.pipeline import LoadedSpec, PipelineSpec, load_spec, parse_spec
from keelml.spec.security import SecuritySpec
from keelml.spec.serve import ServeSpec
from keelml.spec.store import EXECUTOR_PATTERN, StoreSpec

__all__ = [
    "DEFAULT_DECIDE_ON",
    "DISTRIBUTION_STATISTICS",
    "EXECUTOR_PATTERN",
    "FUNCTION_REF_PATTERN",
    "IMPORT_PATH_PATTERN",
    "MODEL_FAMILIES",
    "NAME_PATTERN",
    "SHARE_STATISTICS",
    "ActionSpec",
    "ContractSpec",
    "CsvOptions",
    "DataSpec",
    "DirectionalTest",
    "DriftSpec",
    "DriftThresholds",
    "EvaluateSpec",
    "ExpectRange",
    "GateSpec",
    "GoldenCase",
    "ImputeSpec",
    "InvarianceTest",
    "LearningCurveSpec",
    "LoadedSpec",
    "ModelSpec",
    "ModelTestsSpec",
    "MonitorSpec",
    "ParamRange",
    "PerformanceSpec",
    "PipelineSpec",
    "PreprocessSpec",
    "RuleKind",
    "RuleSpec",
    "SecuritySpec",
    "ServeSpec",
    "SourceSpec",
    "SplitSpec",
    "Statistic",
    "StoreSpec",
    "StrictModel",
    "TuneSpec",
    "ValidationSpec",
    "format_of_name",
    "load_spec",
    "parse_spec",
    "parse_window",
    "url_has_password",
]
