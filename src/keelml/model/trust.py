"""The trust policy: what a model file may name, decided in one place for every load path.

keelml's allowlist (`TRUSTED_TYPES`: scikit-learn, numpy and keelml types found in its own models)
plus what the project's own spec declares: the user functions of preprocess.functions and the
estimator class of a `model.family: module:Class`. The runner's model codec, the registry, the
server, batch scoring and the Python API all load through it. A policy is recorded in each signed
bundle so a reader can see what a model needed; trusting another project's signing key never
widens the policy (see keelml.registry).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from keelml.errors import IntegrityError
from keelml.spec.model import FUNCTION_REF_PATTERN, IMPORT_PATH_PATTERN, ModelSpec, PreprocessSpec

# Types skops does not trust by default but that keelml's own pipelines contain (found by dumping
# every family for binary, multiclass and regression and calling skops.io.get_untrusted_types),
# plus the histogram-gradient-boosting internals (binning, losses, links) that other skops
# versions report. Anything else in a model file makes load_model refuse it.
TRUSTED_TYPES: tuple[str, ...] = (
    "keelml.model.features.FrameCoercer",
    "keelml.model.functions.apply_frame_function",  # calls user functions, which load only when declared
    "numpy.dtype",
    "numpy.float64",
    "numpy.int64",
    "numpy.uint64",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.loss.AbsoluteError",
    "sklearn._loss.loss.PinballLoss",
    "sklearn._loss.loss.HalfPoissonLoss",
    "sklearn._loss.loss.HalfGammaLoss",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss._loss.CyAbsoluteError",
    "sklearn._loss._loss.CyPinballLoss",
    "sklearn._loss._loss.CyHalfPoissonLoss",
    "sklearn._loss._loss.CyHalfGammaLoss",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.LogLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.link.Interval",
    # Native categorical support in histogram boosting keeps a validation callable:
    # functools.partial over check_array. The partial's target is audited separately, so only
    # partials of allowlisted functions load.
    "functools.partial",
    "sklearn.utils.validation.check_array",
    # Differentially private families (extra `dp`): exactly the diffprivlib classes keelml builds,
    # the budget accountant each one carries, and keelml's contract-bounded scaler.
    "keelml.model.private.BoundedScaler",
    "diffprivlib.accountant.BudgetAccountant",
    "diffprivlib.models.logistic_regression.LogisticRegression",
    "diffprivlib.models.linear_regression.LinearRegression",
    "diffprivlib.models.forest.RandomForestClassifier",
    "diffprivlib.models.forest.DecisionTreeClassifier",
    # The lightgbm family (the keelml[lightgbm] extra): the booster is rebuilt from its text model.
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
)


_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def skops_name(ref: str) -> str:
    """The name skops records for `package.module:name`: `package.module.name` (a dotted name as is)."""
    module, _, name = ref.partition(":")
    return f"{module}.{name}" if name else ref


@dataclass(frozen=True)
class TrustPolicy:
    """keelml's allowlist plus declared user functions (`module:function`) and estimator classes
    (skops type names, `module.Class`)."""

    functions: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for ref in self.functions:
            if not re.fullmatch(FUNCTION_REF_PATTERN, ref):
                raise IntegrityError(f"trust policy: {ref!r} is not a function reference",
                                     expected="package.module:function", fix="fix preprocess.functions")
        for name in self.classes:
            if not _TYPE_NAME.fullmatch(name):
                raise IntegrityError(f"trust policy: {name!r} is not a class name",
                                     expected="package.module.Class", fix="fix model.family")

    @classmethod
    def from_spec(cls, model: ModelSpec, preprocess: PreprocessSpec) -> TrustPolicy:
        """The policy a project's spec declares: its preprocess.functions and its `module:Class` family."""
        classes: tuple[str, ...] = ()
        if re.fullmatch(IMPORT_PATH_PATTERN, model.family):
            from keelml.model.catalog import trusted_types  # scikit-learn: only for specs that name a class

            classes = trusted_types(model.family)
        return cls(tuple(preprocess.functions), classes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TrustPolicy:
        """A policy recorded in a bundle (`as_dict`); a malformed record is an IntegrityError."""
        if not data:
            return DEFAULT_POLICY
        functions, classes = data.get("functions", []), data.get("classes", [])
        if not (isinstance(functions, list) and isinstance(classes, list)
                and all(isinstance(x, str) for x in [*functions, *classes])):
            raise IntegrityError("the bundle's trust policy is malformed", expected="lists of names",
                                 fix="re-run the pipeline that made the bundle")
        return cls(tuple(functions), tuple(classes))

    def as_dict(self) -> dict[str, list[str]]:
        return {"functions": list(self.functions), "classes": list(self.classes)}

    def allowed(self) -> frozenset[str]:
        """Every type name a model file may hold beyond skops' own defaults."""
        return frozenset((*TRUSTED_TYPES, *(skops_name(f) for f in self.functions), *self.classes))

    def union(self, other: TrustPolicy) -> TrustPolicy:
        return TrustPolicy(_merged(self.functions, other.functions), _merged(self.classes, other.classes))

    def beyond(self, other: TrustPolicy) -> list[str]:
        """What `other` trusts that this policy does not (function refs and class names)."""
        return sorted({*other.functions, *other.classes} - {*self.functions, *self.classes})


def _merged(first: Iterable[str], second: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*first, *second]))


DEFAULT_POLICY = TrustPolicy()
