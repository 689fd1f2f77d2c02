"""Family × benchmark random slopes in size (variant ``residual+slope``): η_ij += u_fj + v_fj·z_i with
u_fj ~ N(0, τ_j²), v_fj ~ N(0, ω_j²) and z_i the model's standardized log size.

The nested two-dimensional rule is checked against scipy's integration of the model's definition,
its gradient against finite differences, the estimator against data drawn from the variant
(recovery of ω, AIC preferring the true variant), and the two prediction paths against each other.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import latentscale as ls
from latentscale.errors import InputError
from latentscale.estimation.likelihood import MarginalLikelihood
from latentscale.estimation.quadrature import QuadratureSpec
from latentscale.model.design import build_design
from latentscale.model.params import layout, pack
from latentscale.model.simulate import model_residuals, random_params, simulate
from latentscale.model.spec import ModelSpec
from latentscale.model.variants import parse_variant, variant_name
from test_likelihood import scipy_beta_logpdf, standardized_covariates
from test_variants import assert_score_matches_differences, three_family_reference

TAU = np.array([0.4, 0.3, 0.5, 0.3])
OMEGA = np.array([0.3, 0.5, 0.2, 0.4])


@pytest.fixture(scope="module")
def slopes():
    """K = 1, J = 4, 200 families of 3 models drawn with residuals and slopes."""
    true = random_params(1, 4, seed=2, extra_blocks=("residual_sd", "slope_sd"))
    true["residual_sd"], true["slope_sd"] = TAU, OMEGA
    data, true, spec = simulate(true, k=1, n_benchmarks=4, n_families=200, family_sizes=3, seed=3, residual=True,
                                residual_slope=True, missing=0.1)
    return data, true, spec


def test_variant_and_spec():
    assert parse_variant("slope") == {"residual": True, "residual_slope": True}
    assert variant_name(parse_variant("residual+slope+ceiling")) == "residual+slope+ceiling"
    assert variant_name(parse_variant("slope")) == "residual+slope"
    with pytest.raises(InputError, match="residual_slope needs residual"):
        ModelSpec(benchmarks=("a", "b"), anchors=("a",), floors=(0.0, 0.0), residual_slope=True)
    with pytest.raises(InputError, match="residual_slope needs residual"):
        ls.LatentScalingModel(1, residual_slope=True)
    spec = ModelSpec(benchmarks=("a", "b"), anchors=("a",), floors=(0.0, 0.0), residual=True, residual_slope=True)
    assert spec.n_effects == 1 + 2 * 2 and spec.block_names[-2:] == ("residual_sd", "slope_sd")
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(InputError, match="slope_points"):
        QuadratureSpec(slope_points=0)


def test_simulated_scores_carry_the_slopes(slopes):
    data, true, spec = slopes
    X = standardized_covariates(data.frame)
    fam = pd.factorize(data.frame["family"])[0]
    u = np.concatenate([true["residual"], true["slope"]], axis=1)
    r = model_residuals(u, fam, X, spec)
    np.testing.assert_allclose(r, true["residual"][fam] + true["slope"][fam] * X[:, :1])
    assert np.std(true["slope"], axis=0) == pytest.approx(OMEGA, rel=0.3)


def nested_integral(data, spec, params, name) -> float:
    """K = 1: log ∫ N(α) Π_j ∫∫ N(u; 0, τ_j²) N(v; 0, ω_j²) Π_i Beta(y_ij | η_ij + u + v z_i) du dv dα
    from the model's definition (scipy's Beta density), by Simpson's rule on grids around the modes."""
    from scipy import integrate, special, stats

    frame = data.frame
    X = standardized_covariates(frame)
    Y = np.clip(frame[list(spec.benchmarks)].to_numpy(float), *spec.clip)
    rows = np.flatnonzero(frame["family"].to_numpy() == name)
    c = np.asarray(spec.floors)
    eta0 = X[rows] @ params["B"] @ params["loadings"] + params["intercepts"]
    z = X[rows, 0]

    def log_simpson(log_f, grid, axis=-1):
        top = np.max(log_f, axis=axis, keepdims=True)
        return np.squeeze(top, axis) + np.log(integrate.simpson(np.exp(log_f - top), x=grid, axis=axis))

    alpha = np.linspace(-6.5, 6.5, 105)
    total = stats.norm.logpdf(alpha)
    for j in range(spec.J):
        obs = ~np.isnan(Y[rows, j])
        if not obs.any():
            continue
        tau, om, phi = params["residual_sd"][j], params["slope_sd"][j], params["precision"][j]
        u = np.linspace(-9 * tau, 9 * tau, 97)
        v = np.linspace(-9 * om, 9 * om, 97)
        eta = (eta0[obs, j][None, None, None, :] + alpha[:, None, None, None] * params["loadings"][0, j]
               + u[None, :, None, None] + v[None, None, :, None] * z[obs][None, None, None, :])
        mu = c[j] + (1 - c[j]) * special.expit(eta)
        log_f = (scipy_beta_logpdf(Y[rows, j][obs], phi * mu, phi * (1 - mu)).sum(axis=-1)
                 + stats.norm.logpdf(u, 0, tau)[None, :, None] + stats.norm.logpdf(v, 0, om)[None, None, :])
        total = total + log_simpson(log_simpson(log_f, v), u)
    return log_simpson(total, alpha)


def test_slope_likelihood_matches_nested_brute_force(slopes):
    """The nested adaptive rule against scipy's integration, family by family: a fine rule within
    1e-5; the default (15 outer × 4² inner nodes) within 1e-2 (the two-dimensional inner rule converges
    more slowly than the residual's: 5² nodes are within 5e-3, 14² within 2e-5 on these families); the
    Laplace one in (α, u, v) further off."""
    data, true, spec = slopes
    design, theta, ref = three_family_reference(data, true, spec, nested_integral)
    fine = MarginalLikelihood(spec, design, QuadratureSpec(points=30, slope_points=20)).loglikeobs(theta)
    np.testing.assert_allclose(fine, ref, rtol=0, atol=1e-5)
    default = MarginalLikelihood(spec, design, QuadratureSpec()).loglikeobs(theta)
    assert np.max(np.abs(default - ref)) < 1e-2
    five = MarginalLikelihood(spec, design, QuadratureSpec(slope_points=5)).loglikeobs(theta)
    assert np.max(np.abs(five - ref)) < np.max(np.abs(default - ref))
    laplace = MarginalLikelihood(spec, design, "laplace").loglikeobs(theta)
    assert np.max(np.abs(laplace - ref)) > np.max(np.abs(default - ref))


def test_slope_gradient_matches_finite_differences(slopes):
    data, true, spec = slopes
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    ml = MarginalLikelihood(spec, design)
    theta = pack({k: true[k] for k in spec.block_names}, spec) + 0.05
    sl = layout(spec).slices
    assert_score_matches_differences(ml, theta, (0, 4, sl["residual_sd"].start, sl["slope_sd"].start,
                                                 sl["slope_sd"].stop - 1))


@pytest.fixture(scope="module")
def slope_fits(slopes):
    data, _, _ = slopes
    return (ls.LatentScalingModel(1, residual=True, residual_slope=True, n_starts=1).fit(data),
            ls.LatentScalingModel(1, residual=True, hessian=None, n_starts=1).fit(data))


def test_slope_fit_recovers_the_sds_and_aic_prefers_it(slopes, slope_fits):
    _, true, spec = slopes
    fit, residual_only = slope_fits
    assert fit.converged and fit.spec.residual_slope
    names = [f"slope_sd[{b}]" for b in spec.benchmarks]
    z = (fit.params[names].to_numpy() - OMEGA) / fit.bse[names].to_numpy()
    assert np.all(np.abs(z) < 4.0), z
    assert fit.n_params == residual_only.n_params + 4 and fit.aic < residual_only.aic
    assert "random slope" in fit.summary().as_text()
    # the posterior modes of the slopes track the drawn ones
    v_hat = fit.loglikelihood().joint_modes(fit.theta)[:, 1 + 4:]
    assert v_hat.shape == true["slope"].shape
    assert np.corrcoef(v_hat.ravel(), true["slope"].ravel())[0, 1] > 0.5


def test_slope_fit_round_trips(slope_fits, tmp_path):
    fit, _ = slope_fits
    fit.save(tmp_path / "fit.json")
    back = ls.FitResult.load(tmp_path / "fit.json")
    assert back.spec.residual_slope and back.quadrature.slope_points == fit.quadrature.slope_points
    assert back.loglikelihood().loglike(back.theta) == pytest.approx(fit.llf, abs=1e-6)


def test_slope_predictions_agree_between_quadrature_and_sampling(slopes, slope_fits):
    """The cross-validation's posterior mean (nested quadrature nodes) and the sampling-based
    predictive mean of latentscale.predict (importance sampling of α, u and v) agree, for a small
    and a large model of a family in the fit and for a new family; a new family draws its slopes from the prior."""
    from latentscale.evaluation.baselines import LatentMethod
    from latentscale.prediction import predict

    data, _, spec = slopes
    fit, _ = slope_fits
    method = LatentMethod.from_fit(fit)
    fam = data.frame["family"].iloc[0]
    new = pd.DataFrame({"model": ["a", "b", "c"], "family": [fam, fam, "brand-new"], "size": [0.5, 60.0, 60.0],
                        "tokens": [3.0, 3.0, 3.0]})
    quad = method.predict(new)
    pred = predict(method.fit_, new, parameter_uncertainty=False, n_samples=20000, levels=(0.95,))
    mean = pred.pivot(index="model", columns="benchmark", values="mean").loc[["a", "b", "c"], list(spec.benchmarks)]
    assert np.abs(mean.to_numpy() - quad).max() < 0.01
    # a new family's slopes are drawn from N(0, ω̂²)
    from latentscale.prediction.sampling import prior_draws

    draws = prior_draws(fit.theta[None], spec, 20000, seed=1)[0]  # (n, K + 2J)
    np.testing.assert_allclose(draws[:, 1 + 4:].std(axis=0), fit.constrained["slope_sd"], rtol=0.03)
    np.testing.assert_allclose(draws[:, 1:1 + 4].std(axis=0), fit.constrained["residual_sd"], rtol=0.03)
