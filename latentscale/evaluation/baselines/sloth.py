"""``sloth-basic-d``: "Sloth basic" (Maia Polo et al., arXiv:2412.06540): the factor model with fixed family
intercepts and a sigmoid link.

d latent skills per model, θ_i = a_{f(i)} + Bᵀ x_i (x = (log N, log D, log N · log D) standardized
over the training rows, B p × d, one free intercept vector a_f ∈ R^d per family: fixed effects, no
shrinkage), and a sigmoid link with the benchmark's known floor:

    μ_ij = c_j + (1 − c_j) · sigmoid(λ_jᵀ θ_i + b_j).

Fitted as Sloth fits it, by the smooth-L1 (Huber) loss of the residuals with β = 0.01 (nearly the
absolute error; ``loss="squared"`` for least squares), here with L-BFGS-B on the analytic gradient
from the principal components of the floor-corrected logits (deterministic). Whether L-BFGS-B
converged is recorded (``converged_``) and reported by the evaluation. Skills are identified only up
to an invertible linear map (θ → Mθ + v with λ → M⁻ᵀλ); predictions do not depend on it. Sloth's
best published variant also learns a monotone link per benchmark and fits the floors; its stored
errors are compared as published (:mod:`latentscale.evaluation.published`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit as sigmoid

from latentscale.evaluation.baselines._common import (
    FamilyCodes, covariates, family_effect, floor_array, scores,
)
from latentscale.errors import InputError
from latentscale.model.observation import floor_logit


class Sloth:
    """Sloth basic with d skills, free family intercepts and a sigmoid link (module docstring)."""

    def __init__(self, d: int = 2, maxiter: int = 20000, loss: str = "smooth-l1", beta: float = 0.01):
        if d < 1:
            raise InputError(f"d must be at least 1, got {d}")
        if loss not in ("smooth-l1", "squared"):
            raise InputError(f"loss must be 'smooth-l1' or 'squared', got {loss!r}")
        self.d = d
        self.maxiter = maxiter
        self.loss = loss
        self.beta = beta

    @property
    def name(self) -> str:
        return f"sloth-basic-d{self.d}"

    def _loss(self, r):
        """The loss of the residuals and its derivative."""
        if self.loss == "squared":
            return 0.5 * r * r, r
        small = np.abs(r) < self.beta
        return (np.where(small, 0.5 * r * r / self.beta, np.abs(r) - 0.5 * self.beta),
                np.where(small, r / self.beta, np.sign(r)))

    def _shapes(self, F, p, J):
        d = self.d
        return [("A", (F, d)), ("B", (p, d)), ("L", (d, J)), ("b", (J,))]

    def _unpack(self, v, F, p, J):
        out, i = {}, 0
        for key, shape in self._shapes(F, p, J):
            size = int(np.prod(shape))
            out[key] = v[i:i + size].reshape(shape)
            i += size
        return out

    def fit(self, train: pd.DataFrame, benchmarks: Sequence[str], floors: Mapping[str, float]):
        self.benchmarks_ = tuple(benchmarks)
        Y = scores(train, benchmarks)
        c = floor_array(benchmarks, floors)
        X, self.scaler_ = covariates(train, kind="paper")
        self.families_ = FamilyCodes(train["family"].to_numpy())
        codes = self.families_(train["family"].to_numpy())
        n, J = Y.shape
        F, p, d = len(self.families_), X.shape[1], self.d
        # start: principal components of the centred logits, regressed on x with family intercepts
        Z = floor_logit(Y, c)
        b0 = Z.mean(axis=0)
        U, s, Vt = np.linalg.svd(Z - b0, full_matrices=False)
        k = min(d, len(s))
        theta0 = np.zeros((n, d))
        theta0[:, :k] = U[:, :k] * s[:k] / np.sqrt(n)
        L0 = np.zeros((d, J))
        L0[:k] = Vt[:k] * np.sqrt(n)
        D = np.zeros((n, F))
        D[np.arange(n), codes] = 1.0
        M = np.hstack([X, D])
        coef = np.linalg.solve(M.T @ M + 1e-6 * np.eye(M.shape[1]), M.T @ theta0)
        v0 = np.concatenate([coef[p:].ravel(), coef[:p].ravel(), L0.ravel(), b0])

        def loss(v):
            q = self._unpack(v, F, p, J)
            theta = q["A"][codes] + X @ q["B"]  # (n, d)
            s_ = sigmoid(theta @ q["L"] + q["b"])
            value, dr = self._loss(c + (1.0 - c) * s_ - Y)
            dEta = dr * (1.0 - c) * s_ * (1.0 - s_)  # (n, J)
            dTheta = dEta @ q["L"].T  # (n, d)
            gA = np.zeros((F, d))
            np.add.at(gA, codes, dTheta)
            grad = np.concatenate([gA.ravel(), (X.T @ dTheta).ravel(), (theta.T @ dEta).ravel(), dEta.sum(axis=0)])
            return float(np.sum(value)), grad

        res = minimize(loss, v0, jac=True, method="L-BFGS-B",
                       options={"maxiter": self.maxiter, "gtol": 1e-8, "ftol": 1e-12, "maxcor": 30})
        q = self._unpack(res.x, F, p, J)
        self.family_skills_, self.B_, self.loadings_, self.intercepts_ = q["A"], q["B"], q["L"], q["b"]
        self.floors_ = c
        self.loss_ = float(res.fun)
        self.converged_ = bool(res.success)
        return self

    def skills(self, models: pd.DataFrame) -> np.ndarray:
        """θ (n, d) of the given models (unseen families: the average family intercept)."""
        X, _ = covariates(models, self.scaler_)
        return family_effect(self.family_skills_, self.families_(models["family"].to_numpy())) + X @ self.B_

    def predict(self, models: pd.DataFrame) -> np.ndarray:
        eta = self.skills(models) @ self.loadings_ + self.intercepts_
        return self.floors_ + (1.0 - self.floors_) * sigmoid(eta)
