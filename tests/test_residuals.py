"""Fitted values and residuals (lme4's ``fitted`` / ``residuals``) against the model's definition written
out here with numpy and scipy: μ_ij = c_j + (1 − c_j)·κ_j·sigmoid(η_ij + log γ_j)^γ_j with
η_ij = λ_jᵀ(Bᵀx_i + α̂_f) + b_j + û_fj, and the Beta variance μ(1 − μ)/(1 + φ_ij), φ_ij = φ_j·exp(γ_jᵀx_i)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from latentscale.errors import InputError
from latentscale.model.covariates import CovariateScaler
from latentscale.model.simulate import random_params, simulate
from latentscale.results.fit_result import FitResult

SWITCHES = {
    "plain": {},
    "hetero+ceiling+power": {"hetero_precision": True, "ceiling": True, "link_power": True},
    "residual": {"residual": True},
}
BLOCKS = {"plain": (), "hetero+ceiling+power": ("precision_slope", "ceiling", "link_power"),
          "residual": ("residual_sd",)}


def _fit_at_truth(variant: str) -> FitResult:
    """A fit at the true parameters of data simulated from ``variant`` (K = 1, J = 4, 30 families)."""
    true = random_params(1, 4, seed=3, extra_blocks=BLOCKS[variant])
    data, true, spec = simulate(true, k=1, n_benchmarks=4, n_families=30, family_sizes="real", missing=0.15,
                                seed=4, clip=(0.001, 0.999), **SWITCHES[variant])
    frame = data.frame
    frame.iloc[0, frame.columns.get_loc(spec.benchmarks[0])] = 0.0  # a score the fit clips
    scaler = CovariateScaler.fit(frame["size"], frame["tokens"])
    return FitResult.from_params(
        true, spec, scaler, log_likelihood=0.0, method="aghq",
        n_obs=int(frame[list(spec.benchmarks)].notna().sum().sum()), n_models=len(frame),
        n_families=frame["family"].nunique(), families=tuple(pd.unique(frame["family"])), models=tuple(frame.index),
        data=frame[["family", "group", "size", "tokens", *spec.benchmarks]], data_name="simulated",
        diagnostics={"converged": True})


@pytest.mark.parametrize("variant", list(SWITCHES))
def test_fitted_and_residuals_follow_the_definition(variant):
    fit = _fit_at_truth(variant)
    p, spec = fit.constrained, fit.spec
    frame = fit.data
    modes = pd.DataFrame(fit.loglikelihood().joint_modes(fit.theta), index=fit.loglikelihood().families)
    at = modes.loc[frame["family"].astype(str)].to_numpy()
    ln, ld = np.log(frame["size"].to_numpy(float)), np.log(frame["tokens"].to_numpy(float))
    raw = np.column_stack([ln, ld, ln * ld])
    X = (raw - fit.scaler.mean) / fit.scaler.scale
    skill = X @ p["B"] + at[:, :1]
    eta = skill * p["loadings"][0] + p["intercepts"]
    if spec.residual:
        eta = eta + at[:, 1:]
    kappa = p.get("ceiling", np.ones(4))
    gamma = p.get("link_power", np.ones(4))
    c = np.asarray(spec.floors)
    mu = c + (1.0 - c) * kappa * special.expit(eta + np.log(gamma)) ** gamma
    np.testing.assert_allclose(fit.fitted().to_numpy(), mu, rtol=1e-10)

    y = np.clip(frame[list(spec.benchmarks)].to_numpy(float), *spec.clip)
    response = fit.resid()
    np.testing.assert_allclose(response.to_numpy(), y - mu, rtol=1e-10, atol=1e-12)
    assert response.isna().equals(frame[list(spec.benchmarks)].isna())  # NaN exactly where no score
    assert response.iloc[0, 0] == pytest.approx(0.001 - mu[0, 0])  # the clipped score, as the fit saw it
    phi = p["precision"] * (np.exp(X @ p["precision_slope"]) if "precision_slope" in p else 1.0)
    sd = stats.beta(phi * mu, phi * (1.0 - mu)).std()
    np.testing.assert_allclose(fit.resid("pearson").to_numpy(), (y - mu) / sd, rtol=1e-8)


def test_residual_check_is_the_correlation_of_pearson_residuals():
    fit = _fit_at_truth("hetero+ceiling+power")
    r = fit.resid("pearson").to_numpy()
    J = r.shape[1]
    pairs = []
    for j in range(J):
        for k in range(j + 1, J):
            both = ~np.isnan(r[:, j]) & ~np.isnan(r[:, k])
            if both.sum() >= 10:
                pairs.append(np.corrcoef(r[both, j], r[both, k])[0, 1])
    check = fit.residual_check(10)
    assert check["pairs"] == len(pairs) > 0
    assert check["mean_correlation"] == pytest.approx(np.mean(pairs), rel=1e-10)
    assert check["pairs_above_0.3"] == sum(c > 0.3 for c in pairs)
    assert check["corr"].shape == (J, J)


def test_residual_errors():
    fit = _fit_at_truth("plain")
    with pytest.raises(InputError, match="'response' or 'pearson'"):
        fit.resid("deviance")
    bare = _fit_at_truth("plain")
    bare.data = None
    with pytest.raises(InputError, match="carries no data"):
        bare.fitted()
