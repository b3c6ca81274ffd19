"""Run a spec: resolve its inputs, build the standard graph, run it with the project's services, report.

The Python API's entry point (`keelml.run`) and what `keel run` calls.
"""

from __future__ import annotations

import secrets
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keelml import __version__
from keelml.engine.executors import open_backend
from keelml.engine.runner import Events, Runner, StepResult, UpstreamNotCached
from keelml.errors import NotFoundError, SpecError
from keelml.model.trust import TrustPolicy
from keelml.pipeline.graph import RESOURCE_KEYS, Outputs, standard_graph
from keelml.pipeline.inputs import resolve_inputs
from keelml.pipeline.production import production_reference
from keelml.pipeline.services import codecs, project_services
from keelml.registry import Registration
from keelml.registry.project import Project, open_project
from keelml.report.run_report import write_run_report
from keelml.spec.pipeline import LoadedSpec, load_spec


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
                       **({"explain": s.explain} if s.status == "ran" else {}),
                       **({"cache_refused": s.refused} if s.refused else {})} for s in self.steps],
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
    loaded = spec if isinstance(spec, LoadedSpec) else load_spec(spec)
    backend = open_backend(executor or loaded.spec.executor)  # a bad URL fails before anything is written
    inputs = resolve_inputs(loaded, frames)
    policy = TrustPolicy.from_spec(loaded.spec.model, loaded.spec.preprocess)
    project = open_project(loaded)
    try:
        run_id = new_run_id()
        graph = standard_graph(loaded, inputs, production_reference(project.registry, loaded.spec.name),
                               signer=project.keys.key_id)
        if only is not None and only not in graph.steps:
            raise SpecError(f"no step named {only!r}", expected="one of: " + ", ".join(graph.steps),
                            fix="pass one of those names to --step")
        started = time.perf_counter()
        project.metadata.start_run(run_id, pipeline=loaded.spec.name, spec_path=str(loaded.path),
                                   spec_digest=loaded.digest)
        runner = Runner(project.artifacts, project.step_cache, codecs(policy), scope=loaded.spec.name, run_id=run_id,
                        events=events, services=project_services(project, loaded, run_id=run_id, backend=backend))
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
            outcome = _outcome(loaded, project, runner, results, only=only)
            first = []
            if backend.kind != "local" and any(r.status == "ran" for r in results):
                first.append(f"folds, trials and audits ran on the Dask cluster at {backend.url}")
            if project.created_keys:
                first.append(f"created new project keys in {project.root / 'keys'} (mode 0600)")
            outcome.notes[:0] = first
            if outcome.metrics is not None:
                outcome.report_path = _report(loaded, project, runner, results, outcome,
                                              {role: digest for role, (_, digest) in inputs.sources.items()})
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


def _outcome(loaded: LoadedSpec, project: Project, runner: Runner, results: list[StepResult], *,
             only: str | None) -> RunOutcome:
    """What the run produced, read back from the steps that ran or came from the cache."""
    outcome = RunOutcome(runner.run_id, loaded.spec.name, results, 0.0, only=only)
    outcome.notes.extend(f"refused {r.refused}; recomputed the step (audit record: verification_failure)"
                         for r in results if r.refused)
    status = {r.name: r.status for r in results}
    if "evaluate" in status:
        outcome.metrics = runner.value(Outputs.METRICS)
        outcome.validation = runner.value(Outputs.VALIDATION)
    if "train" in status:
        outcome.notes.extend(training_notes(runner.value(Outputs.CV)))
    if "gate" in status:
        outcome.verdict = runner.value(Outputs.VERDICT)
    outcome.security = {name: runner.value(ref) for name, ref in Outputs.AUDITS.items() if name in status}
    if "register" in status:
        recorded = runner.value(Outputs.REGISTRATION)
        # a cached registration created nothing now: its version is the one registered then
        outcome.registration = Registration.from_dict({**recorded,
                                                       "created": recorded["created"] and status["register"] == "ran"})
        notes = list(recorded["notes"])
        outcome.notes.extend(notes if status["register"] == "ran" else notes[:1])
    return outcome


def _report(loaded: LoadedSpec, project: Project, runner: Runner, results: list[StepResult], outcome: RunOutcome,
            data_digests: dict[str, str]) -> Path:
    """Write the run's HTML report (plaintext, beside the store) and return its path."""
    done = {r.name for r in results}
    registration = outcome.registration
    return write_run_report(
        project.reports_dir / runner.run_id, run_id=runner.run_id, pipeline=loaded.spec.name,
        contract=runner.value(Outputs.CONTRACT), validation=outcome.validation or {}, cv=runner.value(Outputs.CV),
        metrics=outcome.metrics or {}, verdict=outcome.verdict, data_digests=data_digests,
        profile=runner.value(Outputs.PROFILE) if "profile" in done else None,
        registration=(registration.name, registration.version) if registration else None,
        analysis=runner.value(Outputs.ANALYSIS), tests=runner.value(Outputs.TESTS) if "model_tests" in done else None,
        lineage=_lineage(loaded, results), security=outcome.security,
        timings={name: runner.value(ref) for name, ref in Outputs.TIMINGS.items() if name in done},
        min_category_count=loaded.spec.report.min_category_count)
