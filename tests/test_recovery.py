"""Parameter recovery: fit data simulated from the model and compare with the truth.

K = 2, J = 6, 250 families of 3 models (750 models), 10 % of the cells missing at random.
Standard errors come from the fit's Hessian of ℓ in the unconstrained parametrization
(cov = (−H)⁻¹); every parameter must lie within 4 of them of its true value. (A full fit of
this size takes about half a minute on two cores.) The identity
blocks of that parametrization (B, free loadings, intercepts) are the constrained
parameters themselves; the skill correlation is compared through its free coordinate m
(ρ = m / √(1 + m²) for K = 2) and, by the delta method, on the correlation scale.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import latentscale
from latentscale.estimation.likelihood import MarginalLikelihood
from latentscale.model.design import build_design
from latentscale.model.params import pack, parameter_names
from latentscale.model.simulate import simulate

K, J, F = 2, 6, 250
MAX_Z = 4.0


@pytest.fixture(scope="module")
def problem():
    data, true, spec = simulate(k=K, n_benchmarks=J, n_families=F, family_sizes=3, missing=0.1, seed=11)
    fit = latentscale.fit(data, k=K)
    return data, true, spec, fit


@pytest.fixture(scope="module")
def z_scores(problem):
    _, true, spec, fit = problem
    cov = np.linalg.inv(-fit.hessian)
    se = np.sqrt(np.diag(cov))
    truth = pack(true, spec)
    names = parameter_names(spec)
    return dict(zip(names, (fit.theta - truth) / se)), dict(zip(names, se)), cov


def test_fit_converged(problem):
    data, _, spec, fit = problem
    assert fit.converged
    assert fit.diagnostics["hessian_pd"]
    assert fit.diagnostics["at_bounds"] == []
    assert fit.hessian.shape == (spec.n_params, spec.n_params)
    assert np.all(np.linalg.eigvalsh(-fit.hessian) > 0)
    assert fit.n_families == F and fit.n_models == data.n_models == 3 * F
    assert fit.spec.anchors == ("b1", "b2")
    assert fit.collinear_pairs().empty  # a well-identified model: no ridge to flag
    assert "Nearly collinear" not in fit.summary().as_text()


def test_fit_beats_the_truth(problem):
    data, true, spec, fit = problem
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    ml = MarginalLikelihood(spec, design)
    at_truth = ml.loglike(pack(true, spec))
    assert np.isfinite(at_truth)
    # The reported value is the objective at the reported optimum, and no lower than at the truth.
    assert fit.llf == pytest.approx(ml.loglike(fit.theta), abs=1e-8)
    assert fit.llf >= at_truth - 1e-8
    # Twice the gap is roughly chi-square with n_params degrees of freedom; far beyond that is a bug.
    assert 2.0 * (fit.llf - at_truth) < stats.chi2.ppf(1 - 1e-6, spec.n_params)


def _block(zs, prefix):
    out = {n: z for n, z in zs.items() if n.startswith(prefix)}
    assert out, prefix
    return out


def test_B_recovered(problem, z_scores):
    _, true, _, fit = problem
    zs, se, _ = z_scores
    z = _block(zs, "B[")
    assert len(z) == 3 * K
    assert max(abs(v) for v in z.values()) < MAX_Z, z
    # The same in the constrained table (identity map), and the SEs are informative.
    B_se = np.array([[se[f"B[{c},{s}]"] for s in fit.skills] for c in fit.B.index])
    assert np.all(B_se < 0.2), B_se
    assert np.all(np.abs(fit.B.to_numpy() - true["B"]) < MAX_Z * B_se)


def test_free_loadings_recovered(problem, z_scores):
    _, true, spec, fit = problem
    zs, se, _ = z_scores
    free = {f"loading[{spec.benchmarks[j]},{s}]" for j in spec.free_index for s in spec.skills}
    z = {n: zs[n] for n in free}
    assert len(z) == K * (J - K)
    assert max(abs(v) for v in z.values()) < MAX_Z, z
    est = fit.loadings.to_numpy()[:, list(spec.free_index)]
    tru = np.asarray(true["loadings"])[:, list(spec.free_index)]
    err = np.array([[se[f"loading[{spec.benchmarks[j]},{s}]"] for j in spec.free_index] for s in spec.skills])
    assert np.all(np.abs(est - tru) < MAX_Z * err)
    # Anchor loadings (log scale in θ) and structural zeros.
    anchors = {f"loading[{s},{s}]": zs[f"loading[{s},{s}]"] for s in spec.skills}
    assert max(abs(v) for v in anchors.values()) < MAX_Z, anchors
    assert fit.loadings.loc["b1", "b2"] == 0.0 and fit.loadings.loc["b2", "b1"] == 0.0


def test_intercepts_and_precisions_recovered(problem, z_scores):
    _, true, _, fit = problem
    zs, _, _ = z_scores
    z = _block(zs, "intercept[")
    assert len(z) == J and max(abs(v) for v in z.values()) < MAX_Z, z
    z = _block(zs, "precision[")
    assert len(z) == J and max(abs(v) for v in z.values()) < MAX_Z, z
    names = [f"precision[{b}]" for b in fit.spec.benchmarks]
    np.testing.assert_allclose(fit.precisions.to_numpy(), fit.params[names].to_numpy())
    np.testing.assert_allclose(np.log(fit.precisions.to_numpy()), fit.theta[[fit.param_names.index(n) for n in names]])


def test_skill_correlation_recovered(problem, z_scores):
    _, true, spec, fit = problem
    zs, se, _ = z_scores
    name = f"corr[{spec.skills[1]},{spec.skills[0]}]"
    assert abs(zs[name]) < MAX_Z
    # Delta method on the correlation scale: ρ = m / √(1 + m²), dρ/dm = (1 + m²)^(-3/2).
    m = fit.theta[parameter_names(spec).index(name)]
    rho_se = se[name] * (1.0 + m**2) ** -1.5
    L = np.asarray(true["corr"])
    rho_true = (L @ L.T)[1, 0]
    rho_hat = fit.skill_corr.iloc[1, 0]
    assert rho_hat == pytest.approx(m / np.sqrt(1.0 + m**2), abs=1e-12)
    assert rho_se < 0.15
    assert abs(rho_hat - rho_true) < MAX_Z * rho_se, (rho_hat, rho_true, rho_se)


def test_joint_wald_statistic(z_scores, problem):
    """All parameters at once: (θ̂ − θ)ᵀ (−H) (θ̂ − θ) against its chi-square law."""
    _, true, spec, fit = problem
    d = fit.theta - pack(true, spec)
    wald = float(d @ (-fit.hessian) @ d)
    assert wald < stats.chi2.ppf(1 - 1e-4, spec.n_params), wald
