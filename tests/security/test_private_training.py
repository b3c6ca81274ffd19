"""Differentially private training (extra `dp`): contract-bounded preprocessing, epsilon recorded, leaks refused.

diffprivlib 0.6.6, its latest release, needs scikit-learn < 1.8: the tests that train run only in an
environment with the extra installed (`pip install -e '.[dev,dp]'`); the refusals run everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import sklearn
from tests.security.synthetic import halves, make_data

from keelml.data.contract import ColumnContract
from keelml.errors import SpecError
from keelml.model.catalog import make_pipeline_for
from keelml.model.private import _diffprivlib, privacy_leaks_as_errors
from keelml.model.train import train_model
from keelml.spec.model import ModelSpec


def _dp_works() -> bool:
    try:
        _diffprivlib()
    except SpecError:
        return False
    return True


needs_dp = pytest.mark.skipif(not _dp_works(), reason="extra `dp` (diffprivlib, scikit-learn < 1.8) not installed")
NEW_SKLEARN = tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 8)


def test_numeric_features_without_bounds_are_refused() -> None:
    _, contract = make_data(10)
    contract.columns[0] = ColumnContract(name="x", type="float")
    with pytest.raises(SpecError, match=r"needs a \[min, max\] for every numeric feature; missing for: x") as info:
        make_pipeline_for(contract, "dp_logistic_regression", {}, 0)
    assert "leak privacy" in info.value.expected


def test_categorical_features_without_a_domain_are_refused() -> None:
    _, contract = make_data(10)
    contract.columns[3] = ColumnContract(name="k", type="string")
    with pytest.raises(SpecError, match="needs declared categories; column.s. without them: k"):
        make_pipeline_for(contract, "dp_random_forest", {}, 0)


def test_bounds_set_by_keelml_cannot_be_overridden() -> None:
    _, contract = make_data(10)
    with pytest.raises(SpecError, match="model.params.data_norm is set by keelml"):
        make_pipeline_for(contract, "dp_logistic_regression", {"data_norm": 0.1}, 0)


@pytest.mark.skipif(not NEW_SKLEARN, reason="only scikit-learn 1.8+ is incompatible with diffprivlib 0.6.6")
def test_an_incompatible_scikit_learn_is_a_clear_error() -> None:
    _, contract = make_data(10)
    with pytest.raises(SpecError, match=r"need scikit-learn < 1.8; this environment has") as info:
        make_pipeline_for(contract, "dp_logistic_regression", {"epsilon": 1.0}, 0)
    assert "keelml[dp]" in info.value.fix


@needs_dp
@pytest.mark.parametrize("family", ["dp_logistic_regression", "dp_random_forest"])
def test_private_model_records_epsilon_and_persists_through_skops(family: str) -> None:
    import skops.io as sio

    from keelml.model.features import to_xy
    from keelml.model.persist import dump_model, load_model
    from keelml.model.trust import TRUSTED_TYPES

    frame, contract = make_data(600)
    train, test = halves(frame)
    model, report = train_model(train, contract, ModelSpec(family=family, params={"epsilon": 2.0}, cv_folds=3))
    privacy = report["privacy"]
    assert privacy["epsilon"] == 2.0 and privacy["epsilon_including_cv"] == 8.0 and privacy["cv_fits"] == 3
    data = dump_model(model)
    assert set(sio.get_untrusted_types(data=data)) <= set(TRUSTED_TYPES)
    X, _ = to_xy(test, contract)
    assert np.array_equal(load_model(data).predict(X), model.predict(X))


@needs_dp
def test_private_logistic_regression_still_learns_with_enough_rows() -> None:
    frame, contract = make_data(2000)
    _, report = train_model(frame, contract, ModelSpec(family="dp_logistic_regression", params={"epsilon": 5.0},
                                                       cv_folds=3))
    assert report["cv"]["roc_auc"]["mean"] > 0.75  # non-private: 0.99 on this data


@needs_dp
def test_private_regression_uses_the_target_range() -> None:
    frame, contract = make_data(400, task="regression")
    model, report = train_model(frame, contract, ModelSpec(family="dp_logistic_regression",
                                                           params={"epsilon": 5.0}, cv_folds=2))
    estimator = model.named_steps["model"]
    assert type(estimator).__name__ == "LinearRegression" and estimator.bounds_y == (-30.0, 50.0)
    assert report["privacy"]["epsilon"] == 5.0


@needs_dp
def test_privacy_leak_warnings_become_spec_errors() -> None:
    from diffprivlib.models import LogisticRegression

    X = np.random.default_rng(0).random((50, 3))
    y = (X[:, 0] > 0.5).astype(int)
    leak = "training dp_logistic_regression would leak privacy: Data norm"
    with pytest.raises(SpecError, match=leak) as info, privacy_leaks_as_errors("dp_logistic_regression"):
        LogisticRegression(epsilon=1.0).fit(X, y)  # no data_norm: diffprivlib would read it from the data
    assert "contract" in info.value.fix
