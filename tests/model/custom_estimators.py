"""Estimators outside scikit-learn, named by import path in tests (model.family: module:Class)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin


class ShrunkLinearRegressor(RegressorMixin, BaseEstimator):
    """Least squares with the coefficients shrunk towards zero by `shrink` (a plain custom class)."""

    def __init__(self, shrink: float = 0.0, random_state: int | None = None) -> None:
        self.shrink = shrink
        self.random_state = random_state

    def fit(self, X, y):
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        design = np.c_[np.ones(len(X)), X]
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        self.intercept_ = float(coef[0])
        self.coef_ = coef[1:] * (1.0 - self.shrink)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        return self.intercept_ + np.asarray(X, dtype=np.float64) @ self.coef_


class Holder:
    """A type nobody declared: a model holding it must not load."""

    def __init__(self) -> None:
        self.value = 1


class LeakyRegressor(ShrunkLinearRegressor):
    """Keeps an undeclared object in its fitted state."""

    def fit(self, X, y):
        super().fit(X, y)
        self.extra_ = Holder()
        return self
