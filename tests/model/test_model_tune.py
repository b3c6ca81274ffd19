"""Tuning with Optuna: every trial recorded, seeded, resumable, pruned, parallel, on the right folds."""

from __future__ import annotations

from pathlib import Path

import optuna
import polars as pl
import pytest

from keelml.errors import DataError, SpecError
from keelml.model import tune as tune_module
from keelml.model.tune import study_name, tune_model
from keelml.spec.model import ModelSpec, ParamRange, TuneSpec
from keelml.store.metadata import MetadataStore

STUDY = "test-study"
ALPHA = {"alpha": ParamRange(low=1e-3, high=1e6, log=True)}


def _tune(tmp_path: Path, frame, contract, *, db: str = "keel.db", model: ModelSpec | None = None,
          **settings) -> tuple[dict, MetadataStore]:
    store = MetadataStore(f"sqlite:///{tmp_path / db}")
    spec = TuneSpec(**{"trials": 5, "space": ALPHA, **settings})
    summary = tune_model(frame, contract, model or ModelSpec(family="linear", cv_folds=3), spec, metric=None,
                         storage_url=store.url, study=STUDY,
                         log=lambda record: store.record_trial(record, study=STUDY, run_id="run-1"))
    return summary, store


def _sequence(summary: dict) -> list[tuple[str, dict, float | None]]:
    return [(h["state"], h["params"], h["value"]) for h in summary["history"] if h["state"] != "interrupted"]


def test_every_trial_is_recorded_in_the_metadata_store(tmp_path, synthetic) -> None:
    frame, contract = synthetic("regression", n=160)
    summary, store = _tune(tmp_path, frame, contract)
    rows = store.list_trials(STUDY)
    assert [r["number"] for r in rows] == list(range(5)) == [h["number"] for h in summary["history"]]
    for row, entry in zip(rows, summary["history"], strict=True):
        assert row["state"] == entry["state"] and row["params"] == entry["params"]
        assert row["fold_scores"] == entry["fold_scores"] and row["run_id"] == "run-1"
        assert row["duration_s"] > 0 and set(row["params"]) == {"alpha"}
        if row["state"] == "complete":
            assert len(row["fold_scores"]) == 3 and row["value"] == pytest.approx(sum(row["fold_scores"]) / 3)
    best = max((r for r in rows if r["state"] == "complete"), key=lambda r: r["value"])
    assert summary["best_trial"] == best["number"] and summary["best_value"] == best["value"]
    assert summary["best_params"] == {"alpha": best["params"]["alpha"]} == summary["tuned_params"]
    assert summary["metric"] == "r2" and summary["direction"] == "maximize"
    assert summary["folds"]["kind"] == "kfold" and summary["budget"] == 5 and summary["resumed_from"] == 0
    assert store.list_trials(run_id="run-1") == rows and store.list_trials("other") == []


def test_tuning_is_reproducible_with_a_seed(tmp_path, synthetic) -> None:
    frame, contract = synthetic("regression", n=160)
    first, _ = _tune(tmp_path, frame, contract, db="a.db", seed=7)
    again, _ = _tune(tmp_path, frame, contract, db="b.db", seed=7)
    other, _ = _tune(tmp_path, frame, contract, db="c.db", seed=8)
    assert _sequence(first) == _sequence(again)
    assert [p for _, p, _ in _sequence(first)] != [p for _, p, _ in _sequence(other)]


def test_an_interrupted_study_resumes_where_it_stopped(tmp_path, synthetic, monkeypatch) -> None:
    frame, contract = synthetic("regression", n=160)
    straight, _ = _tune(tmp_path, frame, contract, db="straight.db", pruner="none")

    calls = {"n": 0}
    real = tune_module.FoldScorer.__call__

    def interrupt_on_the_eighth_fold(self, params, fold):
        calls["n"] += 1
        if calls["n"] == 8:  # trials 0-1 finished (3 folds each); trial 2 is killed mid-way
            raise KeyboardInterrupt
        return real(self, params, fold)

    monkeypatch.setattr(tune_module.FoldScorer, "__call__", interrupt_on_the_eighth_fold)
    with pytest.raises(KeyboardInterrupt):
        _tune(tmp_path, frame, contract, db="resumed.db", pruner="none")
    monkeypatch.setattr(tune_module.FoldScorer, "__call__", real)
    resumed, store = _tune(tmp_path, frame, contract, db="resumed.db", pruner="none")

    assert resumed["resumed_from"] == 2
    assert resumed["trials"] == {"complete": 5, "pruned": 0, "failed": 0, "interrupted": 1}
    assert _sequence(resumed) == _sequence(straight)  # the same trials as a run that was never stopped
    states = [r["state"] for r in store.list_trials(STUDY)]
    assert states.count("interrupted") == 1 and states.count("complete") == 5

    # a run killed outright leaves a RUNNING trial behind: the next run marks it and carries on
    optuna.load_study(study_name=STUDY, storage=store.url).ask()
    extended, _ = _tune(tmp_path, frame, contract, db="resumed.db", pruner="none", trials=6)
    assert extended["trials"] == {"complete": 6, "pruned": 0, "failed": 0, "interrupted": 2}
    assert [r["state"] for r in store.list_trials(STUDY)].count("interrupted") == 2


def test_unpromising_trials_are_pruned(tmp_path, synthetic) -> None:
    frame, contract = synthetic("regression", n=160)
    summary, store = _tune(tmp_path, frame, contract, trials=12, seed=1)
    pruned = [r for r in store.list_trials(STUDY) if r["state"] == "pruned"]
    assert summary["trials"]["pruned"] == len(pruned) >= 1
    assert all(len(r["fold_scores"]) < 3 and r["value"] is None for r in pruned)
    assert all(r["params"]["alpha"] > 1.0 for r in pruned)  # heavy shrinkage: r2 far below the median
    unpruned, _ = _tune(tmp_path, frame, contract, db="none.db", trials=12, seed=1, pruner="none")
    assert unpruned["trials"]["pruned"] == 0


def test_trials_run_in_a_process_pool_reproducibly(tmp_path, synthetic) -> None:
    frame, contract = synthetic("binary", n=160)
    model = ModelSpec(family="linear", cv_folds=2)
    space = {"C": ParamRange(low=1e-3, high=10.0, log=True)}
    first, store = _tune(tmp_path, frame, contract, db="a.db", model=model, trials=4, n_jobs=2, space=space)
    again, _ = _tune(tmp_path, frame, contract, db="b.db", model=model, trials=4, n_jobs=2, space=space)
    assert first["trials"]["complete"] + first["trials"]["pruned"] == 4
    assert first["trials"]["complete"] >= 2  # the first batch of two cannot be pruned
    assert _sequence(first) == _sequence(again)
    assert first["metric"] == "roc_auc" and len(store.list_trials(STUDY)) == 4


def test_group_folds_metric_and_fixed_params(tmp_path, synthetic) -> None:
    frame, contract = synthetic("regression", n=160)
    frame = frame.with_columns(user=(pl.col("row_id") % 8).cast(pl.String))
    model = ModelSpec(family="random_forest", params={"n_estimators": 8, "min_samples_leaf": 3}, cv_folds=3,
                      group_column="user")
    summary, _ = _tune(tmp_path, frame, contract, model=model, trials=3, space={}, metric="rmse")
    assert summary["folds"]["kind"] == "group" and summary["folds"]["column"] == "user"
    assert summary["direction"] == "minimize"
    assert set(summary["space"]) == {"max_features"}  # the default space minus what model.params fixes
    assert summary["best_params"]["n_estimators"] == 8 and summary["best_params"]["min_samples_leaf"] == 3
    complete = [h["value"] for h in summary["history"] if h["state"] == "complete"]
    assert summary["best_value"] == min(complete)


def test_tuning_errors(tmp_path, synthetic) -> None:
    frame, contract = synthetic("regression", n=80)
    with pytest.raises(DataError, match="tuning finished no trial") as info:
        _tune(tmp_path, frame, contract, db="bad.db", trials=2, space={"alpha": ParamRange(choices=[-1.0])})
    assert "alpha" in info.value.what
    custom = ModelSpec(family="tests.model.custom_estimators:ShrunkLinearRegressor")
    with pytest.raises(SpecError, match="nothing to tune"):
        _tune(tmp_path, frame, contract, db="custom.db", model=custom, space={})


def test_study_names_are_stable_and_distinct() -> None:
    one = study_name("adult", {"model": {"family": "x"}, "train": "abc"})
    assert one == study_name("adult", {"train": "abc", "model": {"family": "x"}})
    assert one != study_name("adult", {"model": {"family": "x"}, "train": "abd"})
    assert one.startswith("adult-")
