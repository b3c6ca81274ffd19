"""User preprocessing functions: `package.module:function` references, resolved, checked and wrapped.

Each declared function takes the feature frame (pandas) and returns it transformed; it runs first
in the model pipeline, inside a scikit-learn FunctionTransformer. skops stores it by name, so a
saved model loads only where the spec declares the same function (see persist.load_model).

The pipeline graph imports this module (`sources_digest`), so a fully cached run does too: pandas and
scikit-learn (and keelml.model.features) are imported inside the functions that wrap or run a user
function.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from keelml.errors import DataError, SpecError
from keelml.spec.model import FUNCTION_REF_PATTERN

FrameFunction = Callable[[Any], Any]


def parse_ref(ref: str) -> tuple[str, str]:
    """(module, function) of a `package.module:function` reference; SpecError if malformed."""
    if not isinstance(ref, str) or not re.fullmatch(FUNCTION_REF_PATTERN, ref):
        raise SpecError(
            f"preprocess.functions: {ref!r} is not a function reference",
            expected="package.module:function, e.g. myproject.features:add_ratios",
            fix="write the module's dotted path, a colon, then the function's name",
        )
    module, _, name = ref.partition(":")
    return module, name


def resolve_function(ref: str) -> FrameFunction:
    """Import the referenced module-level function; every problem is a SpecError naming the module."""
    module_name, name = parse_ref(ref)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(
            f"preprocess.functions: cannot import module {module_name!r} (for {ref!r}): {exc}",
            expected=f"an importable module {module_name!r} that defines {name}(frame)",
            fix=f"install the package providing {module_name!r} in the environment keel runs in "
                "(e.g. `pip install -e .` in your project) or add its directory to PYTHONPATH; "
                "or correct the module path in preprocess.functions",
        ) from None
    except Exception as exc:
        raise SpecError(
            f"preprocess.functions: importing module {module_name!r} (for {ref!r}) raised "
            f"{type(exc).__name__}: {exc}",
            expected=f"a module {module_name!r} that imports without errors",
            fix=f"fix the error in {module_name!r}",
        ) from None
    function = getattr(module, name, None)
    if function is None:
        defined = [n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_")]
        close = difflib.get_close_matches(name, defined, n=1, cutoff=0.6)
        raise SpecError(
            f"preprocess.functions: module {module_name!r} has no function {name!r}",
            expected="one of its functions: " + (", ".join(sorted(defined)) or "(none defined)"),
            fix=(f"did you mean {module_name}:{close[0]}? " if close else "") + "fix the name in preprocess.functions",
        )
    if not inspect.isfunction(function) or function.__qualname__ != name or function.__module__ != module_name:
        where = (f"defined as {function.__module__}:{function.__qualname__}"
                 if inspect.isfunction(function) else f"a {type(function).__name__}, not a function")
        real = f"{getattr(function, '__module__', '')}:{getattr(function, '__qualname__', '')}"
        fix = (f"declare it as {real!r}" if inspect.isfunction(function) and re.fullmatch(FUNCTION_REF_PATTERN, real)
               else f"define {name} with `def` at the top level of {module_name!r}")
        raise SpecError(
            f"preprocess.functions: {ref!r} is {where}",
            expected="a function defined with `def` at the top level of the module named in the reference "
                     "(saved models refer to it by that name)",
            fix=fix,
        )
    resolved: FrameFunction = function
    return resolved


def apply_frame_function(X: Any, function: FrameFunction, name: str) -> Any:
    """Call a user function on a copy of the frame (pandas) and check what it returns."""
    import pandas as pd

    from keelml.model.features import _as_pandas

    frame = _as_pandas(X).copy()
    try:
        out = function(frame)
    except Exception as exc:
        raise DataError(
            f"preprocess function {name} failed: {type(exc).__name__}: {exc}",
            expected="a function that takes and returns a pandas DataFrame of the feature columns",
            fix=f"fix {name}, or the rows it fails on",
        ) from exc
    if not isinstance(out, pd.DataFrame):
        raise DataError(
            f"preprocess function {name} returned a {type(out).__name__}, not a pandas DataFrame",
            expected="a pandas DataFrame with one row per input row",
            fix=f"make {name} return the transformed frame",
        )
    if len(out) != len(frame):
        raise DataError(
            f"preprocess function {name} returned {len(out)} row(s) for {len(frame)}",
            expected="one output row per input row (a function may change values, not drop or add rows)",
            fix="filter rows before the data reaches keelml, not in a preprocess function",
        )
    added = [str(c) for c in out.columns if c not in frame.columns]
    if added:
        raise DataError(
            f"preprocess function {name} added column(s) {', '.join(map(repr, added))}, "
            "which the data contract does not have",
            expected="only the contract's feature columns: the model uses those and no others",
            fix=f"transform existing feature columns in {name}, or add derived columns to the data before ingestion",
        )
    return out


def function_steps(refs: Sequence[str]) -> list[tuple[str, Any]]:
    """Pipeline steps (name, FunctionTransformer) calling each referenced function in order."""
    from sklearn.preprocessing import FunctionTransformer

    return [
        (f"function_{i}", FunctionTransformer(func=apply_frame_function,
                                              kw_args={"function": resolve_function(ref), "name": ref}))
        for i, ref in enumerate(refs)
    ]


def sources_digest(refs: Sequence[str]) -> str:
    """SHA-256 over each reference and its module's source file: editing a function changes it.

    Only the module file itself counts, not what it imports. An unimportable module digests as
    unresolved (training then reports why). Finding a module imports its parent packages.
    """
    digest = hashlib.sha256()
    for ref in refs:
        module, _ = parse_ref(ref)
        try:
            found = importlib.util.find_spec(module)
        except Exception:
            found = None
        origin = Path(found.origin) if found is not None and found.origin else None
        digest.update(ref.encode() + b"\0")
        digest.update(origin.read_bytes() if origin is not None and origin.is_file() else b"unresolved")
        digest.update(b"\0")
    return digest.hexdigest()
