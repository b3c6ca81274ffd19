"""Hyperparameter tuning with Optuna: a cross-validated objective, pruning, resumable studies, parallel trials.

The study lives in the metadata database (Optuna's RDBStorage on the same URL), so a run that is
interrupted resumes it: finished trials count towards the budget and trials that were running are
marked failed (and recorded as interrupted). Trials are asked in batches of `n_jobs`; each batch
advances fold by fold (on an executor: a local process pool when n_jobs > 1, or a Dask cluster),
reporting the running mean to the pruner after every fold. The sampler is re-seeded from (seed,
number of finished trials) before each ask and pruning only looks at completed trials, so for a
given seed and n_jobs the same trials run in the same order, with or without an interruption
between batches, on every executor.

Optuna is imported inside the functions that drive the study: the executor's worker processes import
this module to run `score_fold` and never need it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from keelml.engine.executors import Executor, InProcess, Pool, ProcessPool
from keelml.errors import DataError
from keelml.model.catalog import make_pipeline_for
from keelml.model.folds import Folds, encode_columns, make_folds, skip_fixed_encoder
from keelml.model.scoring import check_metric, greater_is_better, metric_value, predictions
from keelml.model.spaces import resolve_space, space_as_json, suggest

if TYPE_CHECKING:
    import polars as pl

    from keelml.data.contract import Contract
    from keelml.spec.model import ModelSpec, TuneSpec

TrialLog = Callable[[dict[str, Any]], None]
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def study_name(prefix: str, identity: Mapping[str, Any]) -> str:
    """A stable study name: the same spec section and data always name the same study."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return f"{prefix}-{digest[:20]}"


class FoldScorer:
    """Fits the pipeline with given hyperparameters on one fold and scores its validation rows."""

    def __init__(self, folds: Folds, contract: Contract, family: str, seed: int, metric: str) -> None:
        self.folds, self.contract, self.family, self.seed, self.metric = folds, contract, family, seed, metric
        self._encoded: dict[str, Folds] = {}  # folds with fixed-domain codes, per encoder (folds.encode_for_folds)

    def __call__(self, params: Mapping[str, Any], fold: int) -> float | str:
        """The fold's score, or the error message if these hyperparameters cannot be fitted."""
        fit_idx, val_idx = self.folds.splits[fold]
        try:
            model, encoder, cols = skip_fixed_encoder(
                make_pipeline_for(self.contract, self.family, params, self.seed), self.folds)
            folds = self.folds
            if encoder is not None:  # the same codes for every trial with this encoder: computed once
                key = repr((cols, sorted(encoder.get_params().items())))
                if key not in self._encoded:
                    self._encoded[key] = encode_columns(self.folds, encoder, cols)
                folds = self._encoded[key]
            X, y = folds.X, folds.y
            model.fit(X.iloc[fit_idx], y[fit_idx])
            output = predictions(model, X.iloc[val_idx], self.contract.task)
        except (ValueError, TypeError, ArithmeticError, DataError) as exc:
            text = getattr(exc, "what", None) or str(exc).strip() or type(exc).__name__
            return text.splitlines()[0][:500]
        return metric_value(self.metric, self.contract.task, self.folds.classes, y[val_idx], output)


def score_fold(shared: tuple[Folds, Contract, str, int, str], params: Mapping[str, Any], fold: int) -> float | str:
    """One fold of one trial (an executor task); `shared` is FoldScorer's arguments."""
    return FoldScorer(*shared)(params, fold)


@dataclass
class _Running:
    trial: Any
    params: dict[str, Any]
    started: float
    scores: list[float] = field(default_factory=list)
    state: str | None = None
    error: str | None = None


def tune_model(train: pl.DataFrame, contract: Contract, model: ModelSpec, tune: TuneSpec, *, metric: str | None,
               storage_url: str, study: str, log: TrialLog | None = None, n_jobs: int = 1,
               threads: int = 1, executor: Executor | None = None) -> dict[str, Any]:
    """Search the family's space for the hyperparameters with the best cross-validated metric.

    `n_jobs` trials are asked at a time (it shapes the search); their folds run on `executor`
    (default: this process, or n_jobs local processes with `threads` threads each). An executor
    with more workers than trials in a batch scores all of the batch's folds at once and then
    replays them to the pruner fold by fold: the same trials, scores and prunings as here.

    Every finished trial is passed to `log` (number, state, params, fold_scores, value, duration).
    Returns the JSON tuning summary: best params (model.params merged with the tuned ones), best
    score, trial counts and the study's full history.
    """
    import optuna

    name = check_metric(contract.task, tune.metric or metric)
    maximize = greater_is_better(name)
    seed = model.seed if tune.seed is None else tune.seed
    space = resolve_space(model.family, contract.task, model.params, tune.space)
    folds = make_folds(train, contract, model if tune.cv_folds is None
                       else model.model_copy(update={"cv_folds": tune.cv_folds}))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = _storage(storage_url)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5) if tune.pruner == "median" \
            else optuna.pruners.NopPruner()
        opt_study = optuna.create_study(storage=storage, study_name=study, load_if_exists=True, pruner=pruner,
                                        direction="maximize" if maximize else "minimize")
        _fail_interrupted(opt_study, log)
        started = time.perf_counter()
        resumed_from = _finished(opt_study)
        if executor is None:
            executor = InProcess() if n_jobs <= 1 else ProcessPool(n_jobs, threads)
        stopped_by, workers = "trials", executor.workers
        with executor.session((folds, contract, model.family, model.seed, name)) as pool:
            while (done := _finished(opt_study)) < tune.trials:
                if tune.timeout_s is not None and time.perf_counter() - started >= tune.timeout_s:
                    stopped_by = "timeout"
                    break
                batch = []
                for j in range(min(max(1, n_jobs), tune.trials - done)):
                    opt_study.sampler = _sampler(seed, done + j, tune.trials)
                    trial = opt_study.ask()
                    batch.append(_Running(trial, suggest(trial, space), time.perf_counter()))
                try:
                    _run_batch(batch, len(folds.splits), model.params, pool, eager=workers > len(batch))
                finally:
                    _finish_batch(opt_study, batch, log)
        summary = _summary(opt_study, study, name, maximize, space, model.params, resumed_from,
                           time.perf_counter() - started, stopped_by, tune.trials)
        summary["folds"] = folds.describe()
        return summary
    finally:
        optuna.logging.set_verbosity(verbosity)


def _storage(url: str) -> Any:
    import optuna

    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def _sampler(seed: int, k: int, trials: int) -> Any:
    import optuna

    startup = min(10, max(4, trials // 3))
    return optuna.samplers.TPESampler(seed=(seed * 1_000_003 + k) % 2**32, n_startup_trials=startup)


def _finished(study: Any) -> int:
    """Trials that count towards the budget: complete, pruned, or failed other than by an interruption."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    return sum(1 for t in trials if not _interrupted(t))


def _interrupted(trial: Any) -> bool:
    """A failed trial without an error message was stopped by an interruption, not by its parameters."""
    return trial.state.name == "FAIL" and not trial.user_attrs.get("error")


def _fail_interrupted(study: Any, log: TrialLog | None) -> None:
    """Trials left running by an interrupted run: mark them failed (not counted) and record them."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        if log is not None:
            log(_record(trial, "interrupted", list(trial.user_attrs.get("fold_scores", [])), None, None))


def _run_batch(batch: list[_Running], n_folds: int, fixed: Mapping[str, Any], pool: Pool, *, eager: bool) -> None:
    """Advance every trial of the batch fold by fold; report the running mean and prune after each.

    `eager`: score every fold of every trial at once first (more workers than trials), then replay.
    """
    ready: dict[tuple[int, int], float | str] = {}
    if eager:
        jobs = [(i, fold) for i in range(len(batch)) for fold in range(n_folds)]
        scores = pool.map(score_fold, [({**fixed, **batch[i].params}, fold) for i, fold in jobs])
        ready = dict(zip(jobs, scores, strict=True))
    for fold in range(n_folds):
        alive = [(i, b) for i, b in enumerate(batch) if b.state is None]
        if not alive:
            return
        results = [ready[(i, fold)] for i, _ in alive] if eager else \
            pool.map(score_fold, [({**fixed, **b.params}, fold) for _, b in alive])
        for (_, b), result in zip(alive, results, strict=True):
            if isinstance(result, str) or not np.isfinite(result):
                b.state, b.error = "FAIL", result if isinstance(result, str) else "the metric is undefined on a fold"
                continue
            b.scores.append(float(result))
            b.trial.set_user_attr("fold_scores", b.scores)
            b.trial.report(float(np.mean(b.scores)), step=fold)
            if fold < n_folds - 1 and b.trial.should_prune():
                b.state = "PRUNED"
    for b in batch:
        if b.state is None:
            b.state = "COMPLETE"


def _finish_batch(study: Any, batch: list[_Running], log: TrialLog | None) -> None:
    from optuna.trial import TrialState

    for b in batch:
        duration = time.perf_counter() - b.started
        if b.state is None:  # interrupted (Ctrl-C or an error elsewhere) before the batch finished
            study.tell(b.trial, state=TrialState.FAIL)
            state = "interrupted"
        elif b.state == "COMPLETE":
            study.tell(b.trial, float(np.mean(b.scores)))
            state = "complete"
        elif b.state == "PRUNED":
            study.tell(b.trial, state=TrialState.PRUNED)
            state = "pruned"
        else:
            b.trial.set_user_attr("error", b.error)
            study.tell(b.trial, state=TrialState.FAIL)
            state = "failed"
        if log is not None:
            log(_record(b.trial, state, b.scores, duration, b.error, params=b.params))


def _record(trial: Any, state: str, scores: list[float], duration: float | None, error: str | None,
            params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"number": int(trial.number), "state": state,
            "params": dict(params if params is not None else trial.params),
            "fold_scores": [float(s) for s in scores],
            "value": float(np.mean(scores)) if scores and state == "complete" else None,
            "duration_s": duration, "error": error}


def split_timings(summary: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the tuning summary without its durations, the durations: the study's `seconds` and each trial's
    `duration_s` by trial number). The rest of a summary is the same on every run of the same search."""
    history = list(summary.get("history") or [])
    kept = {k: v for k, v in summary.items() if k != "seconds"}
    if "history" in summary:
        kept["history"] = [{k: v for k, v in h.items() if k != "duration_s"} for h in history]
    return kept, {"seconds": summary.get("seconds"),
                  "trials": {str(h["number"]): h.get("duration_s") for h in history}}


def _summary(study: Any, name: str, metric: str, maximize: bool, space: Mapping[str, Any],
             fixed: Mapping[str, Any], resumed_from: int, seconds: float, stopped_by: str,
             budget: int) -> dict[str, Any]:
    from optuna.trial import TrialState

    history = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        state = "interrupted" if _interrupted(t) else t.state.name.lower()
        state = {"fail": "failed"}.get(state, state)
        duration = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        history.append({"number": t.number, "state": state, "params": dict(t.params), "value": t.value,
                        "fold_scores": list(t.user_attrs.get("fold_scores", [])), "duration_s": duration,
                        "error": t.user_attrs.get("error")})
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        errors = [h["error"] for h in history if h["error"]]
        raise DataError(
            f"tuning finished no trial ({len(history)} started"
            + (f"; first error: {errors[0]}" if errors else "") + ")",
            expected="a search space whose values can be fitted to this data, and a budget for a few trials",
            fix="fix tune.space (or model.params), or raise tune.trials / tune.timeout_s",
        )
    best = study.best_trial
    counts = {s: sum(1 for h in history if h["state"] == s)
              for s in ("complete", "pruned", "failed", "interrupted")}
    return {
        "study": name,
        "metric": metric,
        "direction": "maximize" if maximize else "minimize",
        "best_params": {**dict(fixed), **dict(best.params)},
        "tuned_params": dict(best.params),
        "best_value": float(best.value),
        "best_trial": int(best.number),
        "best_fold_scores": list(best.user_attrs.get("fold_scores", [])),
        "trials": counts,
        "budget": budget,
        "resumed_from": resumed_from,
        "stopped_by": stopped_by,
        "seconds": seconds,
        "space": space_as_json(space),
        "history": history,
    }
