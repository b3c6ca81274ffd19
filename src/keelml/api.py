"""The Python API: `keelml.run`, `keelml.load_spec`, `keelml.open_registry`, `keelml.score` and
`keelml.read_predictions`.

`keelml/__init__.py` loads this module the first time one of those names is used (PEP 562), so
`import keelml` (and `keel --help`) pays for none of it. Everything here is a thin entry over the
packages that own the work: the pipeline runs specs, the registry keeps and verifies versions, the
serving engine builds a verified model and batch scoring validates and predicts.

    import keelml

    outcome = keelml.run("pipeline.yaml")                        # RunOutcome: steps, metrics, registration
    with keelml.open_registry("pipeline.yaml") as project:      # or a store directory such as .keel
        project.registry.versions("adult-income")
    scores = keelml.score("pipeline.yaml", df)                   # the newest accepted version of the spec's model
    scores.predictions, scores.rejects
    log = keelml.read_predictions("pipeline.yaml", window="1d")  # the prediction log, decrypted and verified
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keelml.data.inputs import to_polars
from keelml.errors import DataError, KeelError, NotFoundError
from keelml.monitor.window import log_keys, window_frame
from keelml.pipeline import RunOutcome, run
from keelml.registry.project import Project, open_project, open_store, store_root
from keelml.serve.batch import score_chunk
from keelml.serve.engine import load_registered
from keelml.spec.pipeline import LoadedSpec, load_spec

__all__ = ["Project", "RunOutcome", "Scores", "load_spec", "open_registry", "read_predictions", "run", "score"]

STORE_MARKERS = ("keys", "keel.db", "store")  # what a keelml store directory holds


def open_registry(spec_or_store_dir: str | Path | LoadedSpec) -> Project:
    """Open an existing project's registry; returns the open `Project` (close it, or use it in a `with`).

    ``spec_or_store_dir`` is a pipeline spec (a file, a directory holding pipeline.yaml, or a
    `LoadedSpec`), or a store directory (the spec's `store.path`, e.g. ``.keel``). With a spec, the
    store opens as the spec configures it (`store.metadata_url`, `store.artifacts_url`, encryption)
    and models load under the spec's trust policy; a store directory opens with its local metadata
    and artifacts and keelml's own trust policy (plus what this project's own signed bundles
    declared). Neither creates keys or a store: a missing one is an error.

    The project's ``registry`` (`keelml.registry.Registry`) lists, resolves, verifies, loads,
    promotes and rolls back versions; ``audit`` is the audit log and ``artifacts`` the verified store.
    """
    if isinstance(spec_or_store_dir, LoadedSpec):
        return open_project(spec_or_store_dir, create=False)
    path = Path(spec_or_store_dir)
    if path.is_dir() and not (path / "pipeline.yaml").is_file():
        if not any((path / marker).exists() for marker in STORE_MARKERS):
            raise NotFoundError(f"{path} is neither a pipeline spec nor a keelml store",
                                expected="a pipeline.yaml (or a directory holding one), or a store directory "
                                         "with keys/, keel.db and store/ (the spec's store.path)",
                                fix="pass the spec file, or the store directory a run created (e.g. .keel)")
        return open_store(path)
    return open_project(load_spec(path), create=False)


@dataclass(frozen=True)
class Scores:
    """What `score` returns: a prediction per row that meets the contract, and the rows that do not.

    ``predictions`` has ``_row`` (the row's 0-based position in the input), the contract's id columns,
    ``prediction`` and, for classification, ``proba_<class>`` rounded to `serve.precision` (an empty
    frame with only ``_row`` when every row was rejected). ``rejects`` holds the rows that break the
    contract, as text, with ``_row`` and ``_reason``. Both are pandas DataFrames when the input was
    one, else polars.
    """

    predictions: Any
    rejects: Any
    name: str
    version: int
    engine: str  # "onnx" or "sklearn"

    @property
    def rows_scored(self) -> int:
        return len(self.predictions)

    @property
    def rows_rejected(self) -> int:
        return len(self.rejects)


def score(spec: str | Path | LoadedSpec, frame: Any, model: str | None = None,
          version: int | str | None = None) -> Scores:
    """Score a pandas or polars DataFrame with a registered model, as `keel score` scores a file.

    ``model`` defaults to the spec's `name`; ``version`` is a number, an alias (``"production"``)
    or None for the newest accepted version. The version is verified (bundle signature, component
    digests, the gate's signed verdict) and its model built only as the project's trust policy
    allows; the engine is ONNX when the bundle validated it, else scikit-learn. Rows are validated
    against the model's own contract first: a target column is ignored, and rows that break the
    contract are returned in ``rejects`` with their reasons, never silently dropped.
    """
    loaded = spec if isinstance(spec, LoadedSpec) else load_spec(spec)
    table = _table(frame)
    name = model or loaded.spec.name
    with open_registry(loaded) as project:
        number = project.registry.resolve(name, version)
        served = load_registered(project, name, number)
    predicted, rejects, _ = score_chunk(served, table, 0, loaded.spec.serve.precision)
    if predicted is None:  # every row was rejected
        predicted = rejects.select("_row").head(0)
    if type(frame).__module__.split(".")[0] == "pandas":
        predicted, rejects = predicted.to_pandas(), rejects.to_pandas()
    return Scores(predicted, rejects, name, number, served.engine)


def _table(frame: Any) -> Any:
    """The frame to score as a polars DataFrame (pandas is converted); an empty one is a DataError."""
    try:
        table = to_polars(frame, "score")
    except KeelError as exc:  # to_polars names run()'s `frames[...]`; here it is score()'s frame
        raise type(exc)(exc.what.replace("frames['score']", "the frame to score", 1), expected=exc.expected,
                        fix=exc.fix) from None
    if table.height == 0:
        raise DataError("the frame to score has no rows", expected="at least one row",
                        fix="pass the rows to score")
    return table


def read_predictions(spec: str | Path | LoadedSpec, model: str | None = None, *, window: str | int | None = None,
                     log: str | Path | None = None) -> Any:
    """The served model's prediction log over a window, as `keel monitor` reads it (a polars DataFrame).

    ``window`` is a duration (``"1d"``, ``"6h"``) or the newest N rows (default: `monitor.window`);
    ``log`` a directory or file (default: `monitor.log_path`, else `serve.log_path`, else
    ``<store>/predictions/<model>``). Files the server sealed are decrypted with the project's keys
    after their signatures and digests are checked (an altered or foreign file is an IntegrityError);
    in the server's own encrypted log a plaintext file is refused too. Feedback labels are joined as
    ``label``; PII columns hold the hashes the server logged.
    """
    loaded = spec if isinstance(spec, LoadedSpec) else load_spec(spec)
    name = model or loaded.spec.name
    with open_registry(loaded) as project:
        keys = log_keys(project.keys, encrypted=loaded.spec.store.encryption and log is None)
    configured = loaded.spec.monitor.log_path or loaded.spec.serve.log_path
    directory = Path(log) if log is not None else (
        Path(loaded.resolve(configured)) if configured else store_root(loaded) / "predictions" / name)
    return window_frame(directory, loaded.spec.monitor.window if window is None else window, keys=keys)
