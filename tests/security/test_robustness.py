"""The robustness audit: flip rates under contract-valid perturbations, and the optional black-box attack."""

from __future__ import annotations

import sys

import numpy as np
import polars as pl
import pytest
from tests.security.synthetic import fit, halves, make_data

from keelml.data.contract import ColumnContract
from keelml.model.features import to_xy
from keelml.pipeline.steps import evaluation as steps
from keelml.security.robustness import column_scales, hopskipjump_audit, perturb, perturbation_stability


def test_no_noise_and_no_swaps_flip_nothing() -> None:
    frame, contract = make_data(600)
    train, test = halves(frame)
    model = fit(train, contract, "hist_gradient_boosting", {"max_iter": 30})
    report = perturbation_stability(model, train, test, contract, noise_scale=0.0, swap_fraction=0.0,
                                    sample_size=300, seed=0)
    assert report["flip_rate"] == 0.0
    assert {c["flip_rate"] for c in report["columns"].values()} == {0.0}
    assert set(report["columns"]) == {"x", "count", "flag", "k", "group"}  # features only, not `indep`


def test_flip_rate_grows_with_the_noise() -> None:
    frame, contract = make_data(800)
    train, test = halves(frame)
    model = fit(train, contract, "logistic_regression")
    rates = [perturbation_stability(model, train, test, contract, noise_scale=scale, swap_fraction=0.0,
                                    sample_size=400, seed=0)["flip_rate"] for scale in (0.1, 0.5, 2.0)]
    assert 0.0 < rates[0] < rates[1] < rates[2]
    swaps = [perturbation_stability(model, train, test, contract, noise_scale=0.0, swap_fraction=share,
                                    sample_size=400, seed=0)["columns"]["k"]["flip_rate"] for share in (0.1, 0.9)]
    assert 0.0 < swaps[0] < swaps[1]


def test_perturbations_stay_inside_the_contract() -> None:
    frame, contract = make_data(500)
    frame = frame.with_columns(
        frame["count"].scatter([0, 1], [None, None]), frame["k"].scatter([2], [None]))
    X, _ = to_xy(frame, contract)
    scales = column_scales(X, ["x", "count"])
    moved = perturb(X, contract, np.random.default_rng(0), noise_scale=5.0, swap_fraction=1.0, scales=scales)
    assert moved["x"].between(-4.0, 4.0).all() and moved["x"].ne(X["x"]).mean() > 0.9
    counts = moved["count"].dropna()
    assert counts.between(0, 20).all() and (counts == counts.round()).all()
    assert moved["count"].isna().tolist()[:2] == [True, True]  # missing stays missing
    assert moved["k"].isna().sum() == 1
    present = X["k"].notna()
    assert set(moved["k"][present]) <= {"u", "v", "w"} and (moved["k"][present] != X["k"][present]).all()
    assert set(moved["flag"].tolist()) <= {True, False} and (moved["flag"] != X["flag"]).all()
    assert set(moved["group"]) <= {"a", "b"}
    assert moved["indep"].equals(X["indep"]) if "indep" in X else True  # not a feature: never touched


def test_a_column_dominated_by_one_value_keeps_it_and_its_other_values_get_noise() -> None:
    frame, contract = make_data(400)
    gains = [0] * 320 + list(range(1, 81))  # like capital-gain: mostly 0, so its IQR is 0
    frame = frame.with_columns(count=pl.Series(gains, dtype=pl.Int64))
    contract.columns[1] = ColumnContract(name="count", type="integer", min=0, max=1000)
    X, _ = to_xy(frame, contract)
    scales = column_scales(X, ["count"])
    assert scales["count"].dominant == 0.0 and scales["count"].spread == pytest.approx(39.5)
    moved = perturb(X, contract, np.random.default_rng(0), noise_scale=0.5, swap_fraction=0.0, scales=scales,
                    columns=["count"])
    assert (moved["count"][:320] == 0).all() and (moved["count"][320:] != X["count"][320:]).mean() > 0.8


def test_gate_refuses_when_the_flip_rate_exceeds_the_limit() -> None:
    metrics = {"primary": {"name": "roc_auc", "value": 0.9, "greater_is_better": True}}
    robustness = {"stability": {"flip_rate": 0.12}}
    verdict = steps.gate(params={"min_score": None, "max_flip_rate": 0.05}, metrics=metrics,
                         robustness=robustness)["verdict"]
    assert not verdict["passed"] and verdict["reason"] == "flip_rate 0.1200 > allowed 0.0500"


def test_hopskipjump_finds_small_flips_of_a_classifier() -> None:
    pytest.importorskip("art")
    frame, contract = make_data(400)
    train, test = halves(frame)
    model = fit(train, contract, "logistic_regression")
    report = hopskipjump_audit(model, train, test, contract, rows=2, seed=0,
                               budget={"max_iter": 3, "max_eval": 50, "init_eval": 10, "init_size": 10})
    assert report["rows"] == 2 and report["features"] == ["x", "count"]
    assert report["success_rate"] == 1.0 and 0.0 < report["median_l2"] < 10.0


def test_hopskipjump_is_skipped_with_a_note_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    frame, contract = make_data(200)
    train, test = halves(frame)
    # What an environment without the extra looks like: every art module fails to import.
    for name in [m for m in sys.modules if m == "art" or m.startswith("art.")] + ["art", "art.attacks.evasion"]:
        monkeypatch.setitem(sys.modules, name, None)
    report = hopskipjump_audit(fit(train, contract, "logistic_regression"), train, test, contract, rows=2, seed=0)
    assert report == {"skipped": "adversarial-robustness-toolbox is not installed (pip install 'keelml[art]')"}


def test_regression_flips_are_moves_beyond_a_tolerance() -> None:
    frame, contract = make_data(600, task="regression")
    train, test = halves(frame)
    model = fit(train, contract, "logistic_regression")  # Ridge for regression
    calm = perturbation_stability(model, train, test, contract, noise_scale=0.0, swap_fraction=0.0,
                                  sample_size=300, seed=0)
    shaken = perturbation_stability(model, train, test, contract, noise_scale=1.0, swap_fraction=0.5,
                                    sample_size=300, seed=0)
    assert calm["flip_rate"] == 0.0 and calm["regression_tolerance"] > 0
    assert shaken["flip_rate"] > 0.2
