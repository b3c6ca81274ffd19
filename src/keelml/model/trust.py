"""The trust policy: what a model file may name, decided in one place for every load path.

keelml's allowlist (`TRUSTED_TYPES`: scikit-learn, numpy and keelml types found in its own models)
plus what the project's own spec declares: the user functions of preprocess.functions and the
estimator class of a `model.family: module:Class`. The runner's model codec, the registry, the
server, batch scoring and the Python API all load through it. A policy is recorded in each signed
bundle so a reader can see what a model needed; trusting another project's signing key never
widens the policy (see keelml.registry). The one other way in is `types`: extra type names an
operator allowed, one by one, when importing a bundle (`keel models import --allow-type`), recorded
in that bundle only; names in modules that run code or reach the system (NEVER_TRUSTED) are never
allowed that way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from keelml.errors import InputError, IntegrityError
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


# Modules (and a few functions) whose names run code, load other code or reach the file system, the
# network or the process: `--allow-type` refuses them whatever the operator says. A backstop, not the
# defence: the defence is that nothing beyond the policy loads unless someone names it.
NEVER_TRUSTED: tuple[str, ...] = (
    "builtins", "os", "posix", "nt", "posixpath", "ntpath", "sys", "subprocess", "importlib", "runpy", "pkgutil",
    "zipimport", "pickle", "_pickle", "copyreg", "marshal", "shelve", "dill", "cloudpickle", "joblib", "shutil",
    "tempfile", "glob", "pathlib", "io", "_io", "socket", "ssl", "http", "urllib", "ftplib", "smtplib", "asyncio",
    "ctypes", "code", "codeop", "pty", "signal", "gc", "inspect", "types", "operator", "functools", "threading",
    "_thread", "multiprocessing", "concurrent", "webbrowser", "sqlite3", "keelml", "numpy.load", "numpy.save",
    "numpy.fromfile", "numpy.memmap", "numpy.lib.npyio",
)
_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def never_trusted(name: str) -> bool:
    """True for a type name inside NEVER_TRUSTED (`os.system`, `builtins.eval`, `keelml.store.keys.x`...)."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in NEVER_TRUSTED)


def extra_type(name: str) -> str:
    """A type name given to `--allow-type`, checked: InputError for a malformed or never-trusted one."""
    if not isinstance(name, str) or not _TYPE_NAME.fullmatch(name):
        raise InputError(f"--allow-type {str(name)[:80]!r} is not a type name",
                         expected="the dotted name skops records, e.g. mypkg.models.MyEstimator or mypkg.prep.scale",
                         fix="copy the names from the refused import's message")
    if never_trusted(name):
        raise InputError(f"--allow-type {name}: keelml never allows this type (it can run code or reach the system)",
                         expected="a model class or function outside " + ", ".join(NEVER_TRUSTED[:6]) + ", ...",
                         fix="do not import a model that needs it")
    return name


def skops_name(ref: str) -> str:
    """The name skops records for `package.module:name`: `package.module.name` (a dotted name as is)."""
    module, _, name = ref.partition(":")
    return f"{module}.{name}" if name else ref


@dataclass(frozen=True)
class TrustPolicy:
    """keelml's allowlist plus declared user functions (`module:function`) and estimator classes
    (skops type names, `module.Class`), and the extra `types` an import was allowed (skops names)."""

    functions: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for ref in self.functions:
            if not re.fullmatch(FUNCTION_REF_PATTERN, ref):
                raise IntegrityError(f"trust policy: {ref!r} is not a function reference",
                                     expected="package.module:function", fix="fix preprocess.functions")
        for name in self.classes:
            if not _TYPE_NAME.fullmatch(name):
                raise IntegrityError(f"trust policy: {name!r} is not a class name",
                                     expected="package.module.Class", fix="fix model.family")
        for name in self.types:
            if not _TYPE_NAME.fullmatch(name) or never_trusted(name):
                raise IntegrityError(f"trust policy: {name!r} may not be allowed by an import",
                                     expected="a dotted type name outside NEVER_TRUSTED",
                                     fix="treat this bundle as tampered with; import the archive again")

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
        functions, classes, types = data.get("functions", []), data.get("classes", []), data.get("types", [])
        if not (isinstance(functions, list) and isinstance(classes, list) and isinstance(types, list)
                and all(isinstance(x, str) for x in [*functions, *classes, *types])):
            raise IntegrityError("the bundle's trust policy is malformed", expected="lists of names",
                                 fix="re-run the pipeline that made the bundle")
        return cls(tuple(functions), tuple(classes), tuple(types))

    def as_dict(self) -> dict[str, list[str]]:
        """The recorded form; `types` only when an import allowed some (so other bundles keep their digests)."""
        recorded = {"functions": list(self.functions), "classes": list(self.classes)}
        return {**recorded, "types": list(self.types)} if self.types else recorded

    def allowed(self) -> frozenset[str]:
        """Every type name a model file may hold beyond skops' own defaults."""
        return frozenset((*TRUSTED_TYPES, *(skops_name(f) for f in self.functions), *self.classes, *self.types))

    def union(self, other: TrustPolicy) -> TrustPolicy:
        return TrustPolicy(_merged(self.functions, other.functions), _merged(self.classes, other.classes),
                           _merged(self.types, other.types))

    def beyond(self, other: TrustPolicy) -> list[str]:
        """What `other` trusts that this policy does not (function refs, class and type names)."""
        return sorted({*other.functions, *other.classes, *other.types} - {*self.functions, *self.classes, *self.types})


def _merged(first: Iterable[str], second: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*first, *second]))


DEFAULT_POLICY = TrustPolicy()
