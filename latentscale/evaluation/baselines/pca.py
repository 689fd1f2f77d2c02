"""``pca-flops``: observational scaling laws (Ruan et al., arXiv:2405.10938) with family effects.

The training score matrix Y (n × J) is centred (column means m) and its first d principal
components V (J × d, d = 3 by default, as in Ruan et al.; at most J − 1) give each model's PC
scores T = (Y − m) V. Each PC score is regressed by least squares on log FLOPs with one intercept
per family, T_k = w_k log C + a_{k,f}; predictions are mapped back, ŷ = m + T̂ Vᵀ, and clipped to
[0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from latentscale.errors import InputError
from latentscale.evaluation.baselines._common import FamilyCodes, covariates, family_effect, scores


class PCAFlops:
    """PCA of the training scores, PCs regressed on log FLOPs with family intercepts (module docstring)."""

    name = "pca-flops"

    def __init__(self, n_components: int = 3):
        if n_components < 1:
            raise InputError(f"n_components must be at least 1, got {n_components}")
        self.n_components = n_components

    def fit(self, train: pd.DataFrame, benchmarks: Sequence[str], floors: Mapping[str, float] | None = None):
        self.benchmarks_ = tuple(benchmarks)
        Y = scores(train, benchmarks)
        d = min(self.n_components, max(1, Y.shape[1] - 1), Y.shape[0])
        self.mean_ = Y.mean(axis=0)
        _, _, Vt = np.linalg.svd(Y - self.mean_, full_matrices=False)
        self.components_ = Vt[:d].T  # (J, d)
        T = (Y - self.mean_) @ self.components_
        Z, self.scaler_ = covariates(train, kind="flops")
        z = Z[:, 0]
        self.families_ = FamilyCodes(train["family"].to_numpy())
        codes = self.families_(train["family"].to_numpy())
        D = np.zeros((len(train), len(self.families_)))
        D[np.arange(len(train)), codes] = 1.0
        A = np.column_stack([z, D])
        coef = np.linalg.lstsq(A, T, rcond=None)[0]  # (1 + F, d)
        self.slope_ = coef[0]  # (d,)
        self.intercepts_ = coef[1:]  # (F, d)
        self.converged_ = True  # closed form
        return self

    def predict(self, models: pd.DataFrame) -> np.ndarray:
        z = covariates(models, self.scaler_)[0][:, 0]
        a = family_effect(self.intercepts_, self.families_(models["family"].to_numpy()))
        T = z[:, None] * self.slope_[None, :] + a
        return np.clip(self.mean_ + T @ self.components_.T, 0.0, 1.0)
