"""Per-benchmark sigmoid laws: in log FLOPs (global or with family intercepts) and in log size and tokens.

All three fit, benchmark by benchmark, the mean score

    μ_ij = c_j + (1 − c_j) · sigmoid(w_jᵀ z_i + a_{j, f(i)})

by least squares (Σ_i (y_ij − μ_ij)², scipy ``least_squares``, analytic Jacobian), where z_i are
covariates standardized over the training rows and a is one intercept (``flops-global``) or one
per family (the others). Coefficients stay in a wide box (|w|, |a| ≤ 30 on standardized covariates)
so a family whose scores all sit at the floor cannot drive its intercept to −∞.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import least_squares
from scipy.special import expit as sigmoid

from latentscale.evaluation.baselines._common import (
    FamilyCodes, covariates, family_effect, floor_array, scores,
)
from latentscale.model.observation import floor_logit

BOX = 30.0
FLOOR_MAX = 0.95


def fit_sigmoid_law(y: np.ndarray, Z: np.ndarray, codes: np.ndarray, n_families: int, floor: float,
                    fit_floor: bool) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """Least-squares fit of y = c + (1 − c)·sigmoid(Z w + a[codes]); returns (w, a, c, converged).

    ``floor`` is the floor (fixed) or the floor's starting value (``fit_floor``; then c ∈ [0, 0.95]).
    """
    n, p = Z.shape
    c0 = float(np.clip(floor, 0.0, max(0.0, min(FLOOR_MAX, y.min() - 0.01)))) if fit_floor else float(floor)
    # start: least squares on the floor-corrected logits (small ridge on the intercepts)
    D = np.zeros((n, n_families))
    D[np.arange(n), codes] = 1.0
    A = np.hstack([Z, D])
    z = floor_logit(y, c0)
    start = np.linalg.solve(A.T @ A + 1e-6 * np.eye(A.shape[1]), A.T @ z)
    start = np.clip(start, -BOX + 1e-6, BOX - 1e-6)

    def unpack(v):
        return v[:p], v[p:p + n_families], (v[-1] if fit_floor else c0)

    def resid(v):
        w, a, c = unpack(v)
        return c + (1.0 - c) * sigmoid(Z @ w + a[codes]) - y

    def jac(v):
        w, a, c = unpack(v)
        s = sigmoid(Z @ w + a[codes])
        d = (1.0 - c) * s * (1.0 - s)
        J = np.hstack([d[:, None] * A] + ([(1.0 - s)[:, None]] if fit_floor else []))
        return J

    x0 = np.concatenate([start, [c0]]) if fit_floor else start
    lo = np.full(x0.size, -BOX)
    hi = np.full(x0.size, BOX)
    if fit_floor:
        lo[-1], hi[-1] = 0.0, FLOOR_MAX
    r = least_squares(resid, x0, jac=jac, bounds=(lo, hi), method="trf", x_scale="jac", xtol=1e-10, ftol=1e-10,
                      gtol=1e-10, max_nfev=2000)
    w, a, c = unpack(r.x)
    return np.asarray(w), np.asarray(a), float(c), bool(r.status > 0)


class _SigmoidLaw:
    """Common machinery of the three per-benchmark sigmoid laws (see the module docstring)."""

    name = ""
    family_intercepts = True
    fit_floor = True

    covariates = "paper"  # the covariate set (latentscale.model.covariates)

    def fit(self, train: pd.DataFrame, benchmarks: Sequence[str], floors: Mapping[str, float]):
        self.benchmarks_ = tuple(benchmarks)
        Y = scores(train, benchmarks, missing_ok=True)  # one law per benchmark: each on its observed rows
        c = floor_array(benchmarks, floors)
        Z, self.scaler_ = covariates(train, kind=self.covariates)
        fams = train["family"].to_numpy() if self.family_intercepts else np.zeros(len(train), dtype=object)
        self.families_ = FamilyCodes(fams)
        codes = self.families_(fams)
        F = len(self.families_)
        self.coef_, self.intercepts_, self.floors_, ok = [], [], [], []
        for j in range(len(benchmarks)):
            obs = np.isfinite(Y[:, j])
            if not obs.any():
                raise InputError(f"no training score for benchmark {benchmarks[j]!r}")
            w, a, cj, conv = fit_sigmoid_law(Y[obs, j], Z[obs], codes[obs], F, c[j], self.fit_floor)
            seen = np.bincount(codes[obs], minlength=F) > 0
            a = np.where(seen, a, a[seen].mean())  # a family without this benchmark: the average intercept
            ok.append(conv)
            self.coef_.append(w)
            self.intercepts_.append(a)
            self.floors_.append(cj)
        self.coef_ = np.array(self.coef_)  # (J, p)
        self.intercepts_ = np.array(self.intercepts_).T  # (F, J)
        self.floors_ = np.array(self.floors_)
        self.converged_ = all(ok)
        return self

    def predict(self, models: pd.DataFrame) -> np.ndarray:
        Z, _ = covariates(models, self.scaler_)
        if self.family_intercepts:
            a = family_effect(self.intercepts_, self.families_(models["family"].to_numpy()))
        else:
            a = np.repeat(self.intercepts_[:1], len(models), axis=0)
        return self.floors_ + (1.0 - self.floors_) * sigmoid(Z @ self.coef_.T + a)


class FlopsGlobal(_SigmoidLaw):
    """``flops-global``: μ_j = c_j + (1 − c_j)·sigmoid(w_j log C + a_j), one law for all models;
    the floor c_j ∈ [0, 0.95] is fitted. C = 6ND FLOPs."""

    name = "flops-global"
    family_intercepts = False

    covariates = "flops"


class FlopsFamily(_SigmoidLaw):
    """``flops-family``: as ``flops-global`` with one intercept a_{j,f} per family (floor fitted)."""

    name = "flops-family"

    covariates = "flops"


class SizeTokensFamily(_SigmoidLaw):
    """``size-tokens-family``: μ_j = c_j + (1 − c_j)·sigmoid(w_jᵀ x + a_{j,f}), x = (log N, log D,
    log N · log D); the floor c_j is the benchmark's known random-guess floor (fixed)."""

    name = "size-tokens-family"
    fit_floor = False

    covariates = "paper"
