"""Joint posterior draws of a family's random effects (and of θ) and the scores they imply, the
representation every design computation works on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from latentscale.config import float64, release_compiled_if_crowded
from latentscale.prediction import sampling
from latentscale.prediction.posterior import family_covariate_row, family_design
from latentscale.prediction.predict import as_rows


@dataclass(frozen=True)
class FamilyDraws:
    """n equally weighted draws of one family's posterior: ``thetas`` (n, d) the parameters
    (all θ̂ without parameter uncertainty), ``effects`` (n, n_effects) α (then the residuals u)."""

    family: str
    thetas: np.ndarray
    effects: np.ndarray
    n_obs: int
    n_parameter_draws: int = 1
    covariates: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the family's raw family covariates

    def scores(self, fit, size, tokens) -> tuple[np.ndarray, np.ndarray]:
        """μ and φ, each (n, N, J), of N models of this family with the given sizes and tokens."""
        size = np.atleast_1d(np.asarray(size, float))
        X = fit.scaler.transform(size, np.asarray(tokens, float), np.tile(self.covariates, (size.size, 1)))
        S, n = self.n_parameter_draws, self.effects.shape[0]
        M = n // S
        thetas = self.thetas[::M]
        alpha = np.broadcast_to(self.effects.reshape(S, M, 1, -1), (S, M, X.shape[0], self.effects.shape[1]))
        mu, phi = sampling.expected_scores(thetas, np.ascontiguousarray(alpha), X, fit.spec)
        mu = mu.reshape(n, X.shape[0], -1)
        phi = np.repeat(phi, M, axis=0)
        return mu, phi


@float64
def family_draws(fit, frame: pd.DataFrame, families: list[str], n_draws: int = 1000, seed: int = 0,
                 parameter_uncertainty: bool = False, n_parameter_draws: int = 100,
                 se: str = "sandwich") -> dict[str, FamilyDraws]:
    """Posterior draws of each family in ``families`` given its rows of ``frame`` (the prior for a
    family without rows there). With ``parameter_uncertainty`` the draws are joint: θ from
    N(θ̂, Cov θ̂), then α given θ."""
    release_compiled_if_crowded()
    S = n_parameter_draws if parameter_uncertainty else 1
    M = max(1, -(-n_draws // S))
    thetas = sampling.theta_draws(fit, S, seed, parameter_uncertainty, se)
    spec = fit.spec
    out = {}
    have = [f for f in families if f in set(frame["family"])]
    if have:
        design = family_design(fit, rows=as_rows(fit, frame[frame["family"].isin(have)]))
        alpha, _ = sampling.family_draws(thetas, spec, design, M, seed + 1, center=fit.theta)  # (S, F, M, e)
        n_obs = np.bincount(design.obs_family, minlength=design.n_families)
        for f, name in enumerate(design.families):
            out[name] = FamilyDraws(name, np.repeat(thetas, M, axis=0), alpha[:, f].reshape(S * M, -1), int(n_obs[f]), S,
                                    family_covariate_row(fit, name, frame))
    new = [f for f in families if f not in out]
    if new:
        prior = sampling.prior_draws(thetas, spec, M * len(new), seed + 2)  # (S, M·n, e)
        for i, name in enumerate(new):
            out[name] = FamilyDraws(name, np.repeat(thetas, M, axis=0),
                                    prior[:, i * M:(i + 1) * M].reshape(S * M, -1), 0, S,
                                    family_covariate_row(fit, name, frame))
    return out
