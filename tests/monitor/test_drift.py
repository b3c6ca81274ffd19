"""Drift: shifted columns flagged and unshifted ones not; statistics equal scipy's; BH; shares."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, false_discovery_control, ks_2samp, wasserstein_distance

from keelml.data.contract import Contract
from keelml.data.profile import profile_frame
from keelml.errors import DataError
from keelml.monitor import stats
from keelml.monitor.drift import drift_report
from keelml.spec.monitor import DriftSpec

LEVELS = [f"v{k}" for k in range(6)]
BASE = np.array([0.35, 0.25, 0.15, 0.12, 0.08, 0.05])


def tables(rows: int, seed: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Reference and current: n0, n1 shifted by 0.2 std, c0 re-weighted (10 points); n2..n4, c1..c3 unchanged."""
    rng = np.random.default_rng(seed)

    def table(shifted: bool) -> pl.DataFrame:
        data: dict[str, Any] = {}
        for i in range(5):
            shift = 0.2 * 10 if shifted and i < 2 else 0.0
            data[f"n{i}"] = rng.normal(100 + shift, 10, rows)
        data["k"] = rng.integers(0, 5, rows)  # an integer column with few values
        for i in range(4):
            shares = BASE.copy()
            if shifted and i == 0:
                shares[0] -= 0.10
                shares[3] += 0.10
            data[f"c{i}"] = np.asarray(LEVELS)[rng.choice(len(LEVELS), rows, p=shares)]
        return pl.DataFrame(data)

    return table(False), table(True)


@pytest.fixture(scope="module")
def pair() -> tuple[pl.DataFrame, pl.DataFrame]:
    return tables(50_000)


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {c["column"]: c["verdict"] for c in report["columns"]}


@pytest.mark.parametrize("form", ["frame", "profile"])
def test_flags_the_shifted_columns_and_none_of_the_others(pair: tuple[pl.DataFrame, pl.DataFrame], form: str) -> None:
    reference, current = pair
    given = reference if form == "frame" else profile_frame(reference)
    report = drift_report(given, current)
    assert set(report["drifted"]) == {"n0", "n1", "c0"}
    assert report["evaluated"] == 10 and report["share_drifted"] == pytest.approx(0.3)
    found = verdicts(report)
    assert all(found[c] == "ok" for c in ("n2", "n3", "n4", "k", "c1", "c2", "c3"))
    n0 = next(c for c in report["columns"] if c["column"] == "n0")
    assert n0["reasons"] and n0["reasons"][0].startswith("wasserstein 0.2")
    for column in report["columns"]:  # every statistic carries value, threshold, sample sizes, verdict
        for result in column["statistics"].values():
            assert {"value", "threshold", "n_reference", "n_current", "verdict"} <= set(result)


def test_unchanged_tables_raise_no_alarm(pair: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    reference, _ = pair
    same_source, _ = tables(20_000, seed=11)
    assert drift_report(profile_frame(reference), same_source)["drifted"] == []


def test_exact_statistics_equal_scipy(pair: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    reference, current = pair
    report = drift_report(reference, current, exact=True)
    by_name = {c["column"]: c for c in report["columns"]}
    for name in ("n0", "n3", "k"):
        ref, cur = reference[name].to_numpy().astype(float), current[name].to_numpy().astype(float)
        result = by_name[name]["statistics"]
        assert result["wasserstein"]["value"] == pytest.approx(wasserstein_distance(ref, cur) / ref.std(ddof=1),
                                                               rel=1e-9)
        scipy_ks = ks_2samp(ref, cur, method="asymp")
        assert result["ks"]["value"] == pytest.approx(scipy_ks.statistic, abs=1e-12)
        assert result["ks"]["p_value"] == pytest.approx(scipy_ks.pvalue, rel=1e-6, abs=1e-300)
    for name in ("c0", "c2"):
        table = np.vstack([reference[name].value_counts().sort(name)["count"].to_numpy(),
                           current[name].value_counts().sort(name)["count"].to_numpy()])
        result = by_name[name]["statistics"]
        # the categories' order and the empty "(other)" bucket do not change either statistic
        assert result["jensen_shannon"]["value"] == pytest.approx(jensenshannon(table[0], table[1], base=2), rel=1e-9)
        chi2, p, dof, _ = chi2_contingency(table, correction=False)
        assert result["chi2"]["value"] == pytest.approx(chi2, rel=1e-9)
        assert result["chi2"]["p_value"] == pytest.approx(p, rel=1e-6, abs=1e-300)
        assert result["chi2"]["dof"] == dof


def test_profile_statistics_are_close_to_exact(pair: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    reference, current = pair
    exact = {c["column"]: c["statistics"] for c in drift_report(reference, current, exact=True)["columns"]}
    approx = {c["column"]: c["statistics"] for c in drift_report(profile_frame(reference), current)["columns"]}
    for name in ("n0", "n1", "n2"):
        assert approx[name]["wasserstein"]["value"] == pytest.approx(exact[name]["wasserstein"]["value"], abs=0.015)
        assert approx[name]["ks"]["value"] <= exact[name]["ks"]["value"] + 1e-12  # edges only: a lower bound
        assert approx[name]["ks"]["value"] == pytest.approx(exact[name]["ks"]["value"], abs=0.01)


def test_large_samples_are_judged_by_effect_size_not_p_value() -> None:
    rng = np.random.default_rng(5)
    n = 300_000
    reference = pl.DataFrame({"x": rng.normal(0, 1, n)})
    current = pl.DataFrame({"x": rng.normal(0.03, 1, n)})  # a real but negligible shift
    report = drift_report(reference, current)
    column = report["columns"][0]
    assert column["statistics"]["ks"]["p_value"] < 1e-10 and column["significant"]
    assert column["verdict"] == "ok"


def test_small_windows_need_significance() -> None:
    rng = np.random.default_rng(8)
    reference = pl.DataFrame({f"x{i}": rng.lognormal(0, 1, 20_000) for i in range(8)})
    current = pl.DataFrame({f"x{i}": rng.lognormal(0, 1, 120) for i in range(8)})
    guarded = drift_report(reference, current)
    assert guarded["drifted"] == []
    loose = drift_report(reference, current, settings=DriftSpec(require_significance=False))
    assert len(loose["drifted"]) >= 3  # without the guard, sampling noise alone crosses the thresholds
    assert all("not significant" in " ".join(c["notes"]) for c in guarded["columns"] if c["column"] in
               set(loose["drifted"]))


def test_too_few_rows_is_insufficient_not_drift() -> None:
    reference = pl.DataFrame({"x": np.arange(1000.0)})
    report = drift_report(reference, pl.DataFrame({"x": [5000.0] * 20}))
    assert verdicts(report) == {"x": "insufficient"} and report["drifted"] == []


def test_unseen_categories_out_of_range_and_nulls() -> None:
    contract = Contract.model_validate({"target": "y", "task": "binary", "classes": ["0", "1"], "columns": [
        {"name": "color", "type": "category", "categories": ["red", "green", "blue"]},
        {"name": "size", "type": "float", "min": 0.0, "max": 10.0},
        {"name": "y", "type": "category", "role": "target"},
    ]})
    rng = np.random.default_rng(2)
    n = 10_000
    reference = pl.DataFrame({"color": rng.choice(["red", "green", "blue"], n), "size": rng.uniform(0, 10, n),
                              "y": rng.choice(["0", "1"], n)})
    colors = rng.choice(["red", "green", "blue"], n).astype(object)
    colors[:500] = "purple"  # 5% never seen
    sizes = rng.uniform(0, 10, n)
    sizes[:300] = 25.0  # 3% above the contract's max
    sizes[300:1800] = np.nan  # 15% missing
    current = pl.DataFrame({"color": colors.astype(str), "size": sizes}).with_columns(pl.col("size").fill_nan(None))
    report = drift_report(profile_frame(reference, contract), current, contract=contract)
    by_name = {c["column"]: c for c in report["columns"]}
    assert "y" not in by_name  # the target is not a feature
    unseen = by_name["color"]["statistics"]["unseen"]
    assert unseen["value"] == pytest.approx(0.05) and unseen["exact"] and unseen["basis"] == "contract categories"
    assert unseen["examples"] == [{"value": "purple", "count": 500}]
    out = by_name["size"]["statistics"]["out_of_range"]
    assert out["count"] == 300 and out["value"] == pytest.approx(300 / 8500) and out["range_source"] == "contract"
    assert out["range"] == [0.0, 10.0]
    nulls = by_name["size"]["statistics"]["nulls"]
    assert nulls["value"] == pytest.approx(0.15) and nulls["verdict"] == "drift"
    assert by_name["color"]["verdict"] == by_name["size"]["verdict"] == "drift"
    assert any(r.startswith("unseen 0.05") for r in by_name["color"]["reasons"])
    assert any(r.startswith("out_of_range") for r in by_name["size"]["reasons"])


def test_missing_feature_and_skipped_text_columns() -> None:
    reference = pl.DataFrame({"a": np.arange(500.0), "b": np.arange(500.0),
                              "note": [f"free text {i}" for i in range(500)]})
    report = drift_report(reference, pl.DataFrame({"a": np.arange(500.0), "note": ["x"] * 500}))
    assert verdicts(report)["b"] == "missing" and report["drifted"] == ["b"]
    assert report["skipped"] == [{"column": "note", "reason": "type string: free text and dates are not compared"}]


def test_profile_reference_is_checked() -> None:
    with pytest.raises(DataError, match="not a usable keelml profile: wrong or missing format"):
        drift_report({"format": "something else"}, pl.DataFrame({"a": [1.0]}))
    broken = profile_frame(pl.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "x"]}))
    broken["columns"][0]["histogram"]["counts"].append(7)
    with pytest.raises(DataError, match="column 'a': no histogram"):
        drift_report(broken, pl.DataFrame({"a": [1.0]}))
    broken = profile_frame(pl.DataFrame({"b": ["x", "y", "x"]}))
    broken["columns"][0]["top"][0]["count"] = "many"
    with pytest.raises(DataError, match="column 'b': top values"):
        drift_report(broken, pl.DataFrame({"b": ["x"]}))
    with pytest.raises(ValueError, match="raw reference"):
        drift_report(profile_frame(pl.DataFrame({"a": [1.0, 2.0]})), pl.DataFrame({"a": [1.0]}), exact=True)


def test_benjamini_hochberg_equals_scipy_and_controls_false_discoveries() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=40) ** 3
    assert np.allclose(stats.benjamini_hochberg(p.tolist()), false_discovery_control(p, method="bh"))
    alpha, proportions, found = 0.1, [], 0
    for _ in range(300):  # 80 true nulls (uniform p) and 20 real effects (tiny p) per family
        nulls = rng.uniform(size=80)
        effects = rng.uniform(size=20) * 1e-3
        q = np.asarray(stats.benjamini_hochberg(np.concatenate([nulls, effects]).tolist()))
        rejected = q <= alpha
        false = int(rejected[:80].sum())
        found += int(rejected[80:].sum())
        proportions.append(false / max(1, int(rejected.sum())))
    assert np.mean(proportions) <= alpha  # BH: expected false discovery proportion <= alpha * 80/100
    assert found > 0.9 * 300 * 20  # and it still finds the real effects
    uncorrected = np.mean([np.any(rng.uniform(size=80) <= alpha) for _ in range(300)])
    assert uncorrected > 0.99  # without correction, almost every family of 80 nulls has a false alarm


def test_small_statistics_match_their_definitions() -> None:
    assert stats.psi([50, 50], [50, 50]) == 0.0
    assert stats.psi([90, 10], [50, 50]) == pytest.approx(0.4 * np.log(0.5 / 0.1) - 0.4 * np.log(0.5 / 0.9))
    assert stats.jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    assert stats.ks_from_bins([10, 10, 10], [0, 15, 15]) == pytest.approx(1 / 3)
    assert stats.chi2_test([10, 0], [5, 0]) == (0.0, 0, 1.0)
    # a histogram shift by exactly one bin width moves all the mass by that width
    assert stats.binned_wasserstein([1.0, 2.0, 3.0], [0, 10, 10, 0], [0, 0, 10, 10], 0.0, 3.5) == pytest.approx(1.0)


def test_prediction_is_compared_with_the_recorded_held_out_predictions() -> None:
    from keelml.data.frames import encode_table
    from keelml.monitor.reference import with_prediction

    rng = np.random.default_rng(6)
    reference = pl.DataFrame({"x": rng.normal(0, 1, 5000)})
    recorded = pl.DataFrame({"_row": np.arange(2000), "prediction": rng.choice(["no", "yes"], 2000, p=[0.7, 0.3])})
    profile = with_prediction(profile_frame(reference), encode_table(recorded))
    assert [c["name"] for c in profile["columns"]] == ["x", "prediction"]
    current = pl.DataFrame({"x": rng.normal(0, 1, 3000), "prediction": rng.choice(["no", "yes"], 3000, p=[0.4, 0.6])})
    report = drift_report(profile, current)
    assert report["drifted"] == ["prediction"]
    assert report["columns"][1]["statistics"]["jensen_shannon"]["n_reference"] == 2000
