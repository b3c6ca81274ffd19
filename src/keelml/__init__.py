"""keelml: a robust, secure, end-to-end machine-learning pipeline for tabular data.

The Python API, loaded on first use (PEP 562) so that `import keelml` and `keel --help` stay fast:

    keelml.run(spec, *, frames=None, only=None, executor=None, ...)  -> RunOutcome  (keelml.pipeline.run)
    keelml.load_spec(path)                                            -> LoadedSpec
    keelml.open_registry(spec_or_store_dir)                           -> Project (close() or `with`; .registry)
    keelml.score(spec, frame, model=None, version=None)               -> Scores (predictions, rejects)
    keelml.read_predictions(spec, model=None, *, window=None)          -> the prediction log (decrypted)

They live in `keelml.api`; see docs/DESIGN.md for the packages behind them.
"""

from __future__ import annotations

__version__ = "0.1.0"

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers treat it the same)
if TYPE_CHECKING:
    from typing import Any

    from keelml.api import load_spec, open_registry, read_predictions, run, score

__all__ = ["__version__", "load_spec", "open_registry", "read_predictions", "run", "score"]
_API = frozenset({"load_spec", "open_registry", "read_predictions", "run", "score"})


def __getattr__(name: str) -> Any:
    """Load the API (and the libraries behind it) the first time one of its names is used."""
    if name in _API:
        from keelml import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keelml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
