"""Compile a spec into the standard graph and run it: the Python API's entry point.

    ingest -> validate -> profile, split -> [tune] -> train -> evaluate -> model_tests, export, privacy,
           robustness -> gate -> register
"""

from __future__ import annotations

import functools
import secrets
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keelml import __version__, candidates, steps
from keelml.data.pii import pii_key
from keelml.engine.codecs import BUILTIN, Codec
from keelml.engine.executors import Backend, open_backend
from keelml.engine.graph import Graph
from keelml.engine.runner import Events, Runner, StepResult, UpstreamNotCached
from keelml.engine.step import Step
from keelml.errors import NotFoundError, SpecError
from keelml.project import Project, open_project
from keelml.registry import Registration, build_bundle
from keelml.spec import MODEL_FAMILIES, LoadedSpec, PipelineSpec, load_spec

# A step's version is part of its cache key: the package version (any release invalidates caches)
# and a per-step number to bump when a step's behaviour changes between releases.
STEP_VERSIONS = {"ingest": 2, "validate": 3, "split": 1, "tune": 1, "train": 3, "evaluate": 2, "model_tests": 1,
                 "gate": 5, "register": 3, "profile": 1, "export": 1, "privacy": 1, "robustness": 1,
                 "compare": 1}


def _version(step: str) -> str:
    return f"{__version__}/{STEP_VERSIONS[step]}"


def codecs(functions: Sequence[str] = (), family: str | None = None) -> dict[str, Codec]:
    """Built-in codecs plus the data-plane ones; their libraries load only when used.

    ``functions``: the spec's preprocess.functions, the only user functions a model may call;
    ``family``: the spec's model.family: an estimator named by import path is trusted (exactly that
    class) when models are saved and loaded.
    """

    def trusted() -> tuple[str, ...]:
        if family is None or family in MODEL_FAMILIES or family.startswith("dp_"):
            return ()
        from keelml.model.catalog import trusted_types

        return trusted_types(family)

    def enc_table(obj: Any) -> bytes:
        from keelml.data.frames import encode_table

        return encode_table(obj)

    def dec_table(data: bytes) -> Any:
        from keelml.data.frames import decode_table

        return decode_table(data)

    def enc_model(obj: Any) -> bytes:
        from keelml.model.functions import trusted_name
        from keelml.model.persist import check_loadable, dump_model

        data = dump_model(obj)
        check_loadable(data, [*(trusted_name(f) for f in functions), *trusted()])
        return data

    def dec_model(data: bytes) -> Any:
        from keelml.model.persist import load_model

        return load_model(data, extra_trusted=[*functions, *trusted()])

    return {**BUILTIN, "table": Codec("table", enc_table, dec_table),
            "model": Codec("model", enc_model, dec_model)}


@dataclass(frozen=True)
class Inputs:
    """What a run reads from outside the store: data sources (location, SHA-256) and a declared contract.

    ``bound`` holds, per role, what ``ingest`` needs besides the location: the files of a batch, or
    the frame of a SQL source or of a DataFrame passed to ``run(frames=...)``.
    """

    sources: dict[str, tuple[str, str]]
    declared: dict[str, Any]
    bound: dict[str, dict[str, Any]] = field(default_factory=dict)


def resolve_inputs(loaded: LoadedSpec, frames: Mapping[str, Any] | None = None) -> Inputs:
    """Check and digest every input before anything is written (bad input leaves no trace).

    ``frames`` maps a role (train, test) to a pandas or polars DataFrame that replaces the spec's
    source for that role.
    """
    from keelml.data.inputs import resolve_source

    spec = loaded.spec
    if spec.preprocess.functions:  # an unimportable user function is a spec error before anything runs
        from keelml.model.functions import resolve_function

        for ref in spec.preprocess.functions:
            resolve_function(ref)
    roles = {"train": spec.data.train, **({"test": spec.data.test} if spec.data.test is not None else {})}
    frames = dict(frames or {})
    unknown = sorted(set(frames) - set(roles))
    if unknown:
        raise SpecError(f"frames names the role(s) {', '.join(map(repr, unknown))}, which the spec does not have",
                        expected="one of: " + ", ".join(roles),
                        fix="use frames={'train': df} (and 'test' only when the spec has data.test)")
    resolved = {role: resolve_source(loaded, source, role, frames.get(role)) for role, source in roles.items()}
    sources = {role: (r.location, r.digest) for role, r in resolved.items()}
    bound = {role: r.bound for role, r in resolved.items()}
    declared: dict[str, Any] = {}
    if spec.contract.path:
        contract_path = Path(loaded.resolve(spec.contract.path))
        if not contract_path.is_file():
            raise SpecError(f"contract.path: file not found: {contract_path}",
                            expected="a contract YAML file (e.g. one written by a previous run's report)",
                            fix="fix contract.path or remove it to infer the contract from the data")
        try:
            text = contract_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"contract.path: cannot read {contract_path}: {type(exc).__name__}",
                            expected="a readable UTF-8 YAML contract file",
                            fix="fix contract.path, the file's permissions or its encoding") from None
        declared = {"declared_contract": text, "declared_contract_path": str(spec.contract.path)}
    return Inputs(sources, declared, bound)


def compile_graph(loaded: LoadedSpec, project: Project, inputs: Inputs | None = None,
                  run_id: str = "", backend: Backend | None = None) -> Graph:
    """The standard graph for a spec. Reads only file digests, never the data itself.

    `run_id` labels the tuning trials the run records in the metadata store; `backend` is where
    folds, trials and audits run (default: local). Neither is part of any cache key.
    """
    spec = loaded.spec
    data = spec.data
    inputs = inputs or resolve_inputs(loaded)
    train_location, train_digest = inputs.sources["train"]
    ingest_outputs = {"raw": "table", "rejects": "table", "summary": "json"}
    ingest_steps = [Step("ingest", steps.ingest, outputs=ingest_outputs, version=_version("ingest"),
                         params={"source": data.train.model_dump(mode="json"), "digest": train_digest},
                         bound={"location": train_location, **inputs.bound.get("train", {})})]
    digests = {"train": train_digest}
    validate_inputs = {"raw": "ingest.raw", "rejects": "ingest.rejects"}
    validate_outputs = {"contract": "json", "train": "table", "quarantine": "table", "report": "json"}
    split_inputs = {"train": "validate.train"}
    if data.test is not None:
        test_location, test_digest = inputs.sources["test"]
        digests["test"] = test_digest
        ingest_steps.append(Step("ingest_test", steps.ingest, outputs=ingest_outputs, version=_version("ingest"),
                                 params={"source": data.test.model_dump(mode="json"), "digest": test_digest},
                                 bound={"location": test_location, **inputs.bound.get("test", {})}))
        validate_inputs["raw_test"] = "ingest_test.raw"
        validate_inputs["rejects_test"] = "ingest_test.rejects"
        validate_outputs["test"] = "table"
        split_inputs["test"] = "validate.test"
    declared = inputs.declared
    from keelml.model.export import onnx_available

    codec_of = {"model": "model", "contract": "json", "metrics": "json", "cv": "json", "verdict": "json",
                "profile": "json", "onnx": "bytes", "engine": "json", "holdout": "table", "predictions": "table"}
    sign = functools.partial(build_bundle, keys=project.keys)
    # How many processes and threads to use changes speed, not results: kept out of the cache key.
    resources = spec.model.model_dump(include=RESOURCE_KEYS)
    backend = backend or Backend()
    security_steps, gate_inputs = _security_steps(loaded, resources, backend)
    compare_steps, compared = candidates.compare_steps(loaded, project, resources, _version("compare"))
    gate_inputs.update(compared)
    train_inputs = {"train": "split.train", "contract": "validate.contract"}
    tune_steps = []
    if spec.tune is not None:
        tune_steps.append(Step(
            "tune", steps.tune, inputs=dict(train_inputs),
            refs={"train_id": "split.train", "contract_id": "validate.contract"},
            outputs={"tuning": "json"}, version=_version("tune"),
            params={"pipeline": spec.name, "metric": spec.evaluate.metric, "version": _version("tune"),
                    "model": spec.model.model_dump(mode="json", exclude={*RESOURCE_KEYS, "learning_curve"}),
                    "tune": spec.tune.model_dump(mode="json", exclude={"n_jobs"})},
            bound={"resources": {"n_jobs": spec.tune.n_jobs, "threads": spec.model.threads},
                   "trial_log": functools.partial(project.metadata.record_trial, run_id=run_id),
                   "storage_url": project.metadata.url, "backend": backend}))
        train_inputs["tuning"] = "tune.tuning"
    return Graph([
        *ingest_steps,
        Step("validate", steps.validate, inputs=validate_inputs, outputs=validate_outputs, version=_version("validate"),
             params={"target": data.target, "drop_columns": data.drop_columns,
                     "sensitive_columns": data.sensitive_columns,
                     "options": spec.contract.model_dump(mode="json"),
                     "validation": spec.validation.model_dump(mode="json"), **declared},
             bound={"pii_key": pii_key(project.keys.master_key)}),
        Step("profile", steps.profile, inputs={"train": "validate.train", "contract": "validate.contract"},
             outputs={"profile": "json"}, version=_version("profile"), params=PROFILE_PARAMS),
        Step("split", steps.split, inputs=split_inputs, outputs={"train": "table", "test": "table"},
             version=_version("split"), params={"target": data.target, **spec.split.model_dump(mode="json")}),
        *tune_steps,
        Step("train", steps.train, inputs=train_inputs,
             outputs={"model": "model", "cv": "json"}, version=_version("train"),
             params={**spec.model.model_dump(mode="json", exclude=RESOURCE_KEYS), **_preprocess_params(spec),
                     "metric": spec.evaluate.metric},
             bound={"resources": resources, "backend": backend}),
        Step("evaluate", steps.evaluate,
             inputs={"model": "train.model", "test": "split.test", "contract": "validate.contract"},
             outputs={"metrics": "json", "analysis": "json", "predictions": "table"}, version=_version("evaluate"),
             params=spec.evaluate.model_dump(mode="json"), bound={"resources": resources}),
        Step("model_tests", steps.model_tests,
             inputs={"model": "train.model", "test": "split.test", "contract": "validate.contract"},
             outputs={"results": "json"}, version=_version("model_tests"),
             params=spec.tests.model_dump(mode="json"), bound={"resources": resources}),
        Step("export", steps.export,
             inputs={"model": "train.model", "test": "split.test", "contract": "validate.contract"},
             outputs={"onnx": "bytes", "engine": "json"}, version=_version("export"),
             params={"onnx": onnx_available()}, bound={"resources": resources}),
        *security_steps,
        *compare_steps,
        Step("gate", steps.gate,
             inputs={"metrics": "evaluate.metrics", "analysis": "evaluate.analysis", "tests": "model_tests.results",
                     **gate_inputs},
             outputs={"verdict": "json"}, version=_version("gate"),
             params={**spec.gate.model_dump(mode="json", exclude=GATE_ACTIONS), **spec.security.gate_limits()}),
        Step("register", steps.register,
             refs={"model": "train.model", "contract": "validate.contract", "metrics": "evaluate.metrics",
                   "cv": "train.cv", "verdict": "gate.verdict", "profile": "profile.profile", "onnx": "export.onnx",
                   "engine": "export.engine", "holdout": "split.test", "predictions": "evaluate.predictions"},
             outputs={"bundle": "json"}, version=_version("register"), bound={"sign": sign},
             params={"name": spec.name, "codecs": codec_of, "data_digests": digests,
                     "signing_key": project.keys.key_id, "parameters": lineage_parameters(loaded)}),
    ])


RESOURCE_KEYS = {"n_jobs", "threads"}
GATE_ACTIONS = {"promote"}  # what happens after the verdict: not part of the verdict or the model
PROFILE_PARAMS = {"bins": 20, "top": 50}


def _preprocess_params(spec: PipelineSpec) -> dict[str, Any]:
    """The train step's preprocess parameters; with user functions, a digest of their source files."""
    params: dict[str, Any] = {"preprocess": spec.preprocess.model_dump(mode="json")}
    if spec.preprocess.functions:
        from keelml.model.functions import sources_digest

        params["preprocess_sources"] = sources_digest(spec.preprocess.functions)
    return params


def lineage_parameters(loaded: LoadedSpec) -> dict[str, Any]:
    """The spec settings that shape a model and its evaluation, recorded in its signed bundle."""
    spec = loaded.spec
    return {"model": spec.model.model_dump(mode="json", exclude=RESOURCE_KEYS),
            "split": spec.split.model_dump(mode="json"), "evaluate": spec.evaluate.model_dump(mode="json"),
            "gate": spec.gate.model_dump(mode="json", exclude=GATE_ACTIONS),
            "contract": spec.contract.model_dump(mode="json"),
            "target": spec.data.target, "drop_columns": list(spec.data.drop_columns)}


def _security_steps(loaded: LoadedSpec, resources: Mapping[str, int],
                    backend: Backend) -> tuple[list[Step], dict[str, str]]:
    """The privacy and robustness audits the spec turns on, and the gate inputs they feed."""
    security = loaded.spec.security
    audited = {"model": "train.model", "train": "split.train", "test": "split.test", "contract": "validate.contract"}
    common = {"sample_rows": security.sample_rows, "seed": security.seed}
    found: list[Step] = []
    gate_inputs: dict[str, str] = {}
    if security.privacy:
        found.append(Step("privacy", steps.privacy, inputs=audited, outputs={"report": "json"},
                          version=_version("privacy"), bound={"resources": resources, "backend": backend},
                          params={**common, "max_membership_auc": security.max_membership_auc,
                                  "attribute_advantage_flag": security.attribute_advantage_flag}))
        gate_inputs["privacy"] = "privacy.report"
    if security.robustness:
        found.append(Step("robustness", steps.robustness, inputs=audited, outputs={"report": "json"},
                          version=_version("robustness"), bound={"resources": resources, "backend": backend},
                          params={**common, **security.model_dump(
                              mode="json", include={"noise_scale", "swap_fraction", "max_flip_rate", "attack",
                                                    "attack_rows"})}))
        gate_inputs["robustness"] = "robustness.report"
    return found, gate_inputs


@dataclass
class RunOutcome:
    """What `keel run` reports: every step's status, the model, the metrics and the report."""

    run_id: str
    pipeline: str
    steps: list[StepResult]
    wall_s: float
    metrics: Mapping[str, Any] | None = None
    verdict: Mapping[str, Any] | None = None
    registration: Registration | None = None
    report_path: Path | None = None
    validation: Mapping[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    security: dict[str, Any] = field(default_factory=dict)
    only: str | None = None

    def as_json(self) -> dict[str, Any]:
        primary = (self.metrics or {}).get("primary")
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "wall_s": round(self.wall_s, 3),
            "steps": [{"name": s.name, "status": s.status, "duration_s": round(s.duration_s, 3),
                       "cache_key": s.key, "outputs": s.outputs,
                       **({"explain": s.explain} if s.status == "ran" else {})} for s in self.steps],
            "data": {role: {k: stats.get(k) for k in ("rows_in", "rows_valid", "rows_quarantined")}
                     for role, stats in (self.validation or {}).items()},
            "primary_metric": primary,
            "gate": dict(self.verdict) if self.verdict else None,
            "security": security_summary(self.security),
            "model": ({"name": self.registration.name, "version": self.registration.version,
                       "bundle": self.registration.bundle_id, "new_version": self.registration.created,
                       "status": self.registration.status, "reasons": list(self.registration.reasons)}
                      if self.registration else None),
            "report": str(self.report_path) if self.report_path else None,
            "notes": self.notes,
            **({"step": self._only_json()} if self.only else {}),
        }

    def _only_json(self) -> dict[str, Any]:
        """For a one-step run: that step's status, and the status of each step before it."""
        mine = next(s for s in self.steps if s.name == self.only)
        return {"name": mine.name, "status": mine.status, "duration_s": round(mine.duration_s, 3),
                "upstream": {s.name: s.status for s in self.steps if s.name != self.only}}


def _lineage(loaded: LoadedSpec, results: list[StepResult]) -> dict[str, Any]:
    """What made the run, for its report: code version, spec, parameters and every step's cache key."""
    spec = loaded.spec
    return {"code_version": __version__, "spec_path": str(loaded.path), "spec_digest": loaded.digest,
            "parameters": {"split": spec.split.model_dump(mode="json"),
                           "model": spec.model.model_dump(mode="json", exclude=RESOURCE_KEYS),
                           "evaluate": spec.evaluate.model_dump(mode="json"),
                           "gate": spec.gate.model_dump(mode="json")},
            "steps": [{"name": r.name, "status": r.status, "cache_key": r.key} for r in results]}


def security_summary(security: Mapping[str, Any]) -> dict[str, Any]:
    """The headline figures of the privacy and robustness audits (None for an audit that did not run)."""
    privacy = security.get("privacy") or {}
    stability = (security.get("robustness") or {}).get("stability") or {}
    membership = privacy.get("membership") or {}
    attributes = (privacy.get("attribute_inference") or {}).get("columns") or {}
    return {"membership_auc": membership.get("auc"), "membership_tpr_at_1pct_fpr": membership.get("tpr_at_1pct_fpr"),
            "flip_rate": stability.get("flip_rate"),
            "attribute_advantage": {k: v.get("advantage") for k, v in attributes.items()}}


def training_notes(cv: Mapping[str, Any]) -> list[str]:
    """One line on the tuning, and the over/under-fitting notes of the monitoring, for `keel run`."""
    notes: list[str] = []
    tuning = cv.get("tuning")
    if tuning:
        counts = tuning["trials"]
        notes.append(f"tuning: best {tuning['metric']} {tuning['best_value']:.4f} (trial {tuning['best_trial']}) "
                     f"after {counts['complete'] + counts['pruned'] + counts['failed']} trials "
                     f"({counts['pruned']} pruned) in study {tuning['study']}")
    notes.extend((cv.get("monitoring") or {}).get("notes", []))
    return notes


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def run(spec: str | Path | LoadedSpec, *, events: Events | None = None, only: str | None = None,
        frames: Mapping[str, Any] | None = None, cached_upstream: bool = False,
        executor: str | None = None) -> RunOutcome:
    """Run a pipeline spec end to end (or up to step `only`), reusing every cached step.

    With ``only`` and ``cached_upstream`` (what `keel run --step` does for orchestrators), the steps
    before ``only`` must all come from the cache; the first that cannot is a NotFoundError naming it.

    ``frames`` ({"train": df, "test": df2}) gives pandas or polars DataFrames that replace the
    spec's sources for those roles; a frame's identity in the cache is the SHA-256 of its Arrow bytes.
    ``executor`` ("local" or "dask://HOST:PORT") overrides the spec's `executor:`; results and
    cache keys are the same on either.
    """
    from keelml.report.run_report import write_run_report

    loaded = spec if isinstance(spec, LoadedSpec) else load_spec(spec)
    backend = open_backend(executor or loaded.spec.executor)  # a bad URL fails before anything is written
    inputs = resolve_inputs(loaded, frames)
    project = open_project(loaded)
    try:
        run_id = new_run_id()
        graph = compile_graph(loaded, project, inputs, run_id, backend)
        if only is not None and only not in graph.steps:
            raise SpecError(f"no step named {only!r}", expected="one of: " + ", ".join(graph.steps),
                            fix="pass one of those names to --step")
        started = time.perf_counter()
        project.metadata.start_run(run_id, pipeline=loaded.spec.name, spec_path=str(loaded.path),
                                   spec_digest=loaded.digest)
        runner = Runner(project.artifacts, project.metadata,
                        codecs(loaded.spec.preprocess.functions, loaded.spec.model.family),
                        scope=loaded.spec.name, run_id=run_id, events=events)
        try:
            try:
                results = runner.run(graph, only=only, cached_upstream=cached_upstream)
            except UpstreamNotCached as exc:
                path = shlex.quote(str(loaded.path))
                raise NotFoundError(
                    str(exc), expected=f"every step before {exc.needed_by!r} already run against this store "
                    "(an orchestrator runs one task per step in the graph's order, on a shared store)",
                    fix=f"run `keel run {path} --step {exc.step}` first (or the whole pipeline with "
                    f"`keel run {path}`), or add --with-upstream to run the missing steps here") from None
            outcome = RunOutcome(run_id, loaded.spec.name, results, 0.0, only=only)
            if backend.kind != "local" and any(r.status == "ran" for r in results):
                outcome.notes.append(f"folds, trials and audits ran on the Dask cluster at {backend.url}")
            if project.created_keys:
                outcome.notes.append(f"created new project keys in {project.root / 'keys'} (mode 0600)")
            done = {r.name for r in results}
            if "evaluate" in done:
                outcome.metrics = runner.value("evaluate.metrics")
                outcome.validation = runner.value("validate.report")
            if "train" in done:
                outcome.notes.extend(training_notes(runner.value("train.cv")))
            if "gate" in done:
                outcome.verdict = runner.value("gate.verdict")
            outcome.security = {name: runner.value(f"{name}.report")
                                for name in ("privacy", "robustness") if name in done}
            if "register" in done and outcome.verdict is not None:
                from keelml.registry.lineage import code_version

                outcome.registration, registered = candidates.register_candidate(
                    project, loaded, runner.digest("register.bundle"), run_id=run_id, verdict=outcome.verdict,
                    summary={"primary": (outcome.metrics or {}).get("primary", {})},
                    lineage={"spec": {"path": str(loaded.path), "digest": loaded.digest},
                             "code": code_version(loaded.base_dir)})
                outcome.notes.extend(registered)
            if "evaluate" in done:
                outcome.report_path = write_run_report(
                    project.reports_dir / run_id, run_id=run_id, pipeline=loaded.spec.name,
                    contract=runner.value("validate.contract"), validation=outcome.validation or {},
                    cv=runner.value("train.cv"), metrics=outcome.metrics or {}, verdict=outcome.verdict,
                    data_digests={role: digest for role, (_, digest) in inputs.sources.items()},
                    profile=runner.value("profile.profile") if "profile" in done else None,
                    registration=(outcome.registration.name, outcome.registration.version)
                    if outcome.registration else None,
                    analysis=runner.value("evaluate.analysis"),
                    tests=runner.value("model_tests.results") if "model_tests" in done else None,
                    lineage=_lineage(loaded, results), security=outcome.security)
            outcome.wall_s = time.perf_counter() - started
            refused = outcome.verdict is not None and not outcome.verdict["passed"]
            project.metadata.finish_run(run_id, status="refused" if refused else "succeeded",
                                        summary=outcome.as_json())
            return outcome
        except BaseException as exc:
            what = getattr(exc, "what", None) or f"{type(exc).__name__}: {exc}"
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            project.metadata.finish_run(run_id, status=status, error=str(what)[:2000])
            raise
    finally:
        backend.close()
        project.close()
