"""The reference code's logit clamp (logit_clip = L: η clamped to [−L, L] before the sigmoid) and the
--paper preset that sets everything that code used."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import integrate, special, stats

import latentscale as ls
from latentscale.estimation.likelihood import MarginalLikelihood
from latentscale.estimation.quadrature import QuadratureSpec
from latentscale.model.design import build_design
from latentscale.model.params import pack
from latentscale.model.simulate import random_params, simulate
from test_likelihood import scipy_beta_logpdf, standardized_covariates


@pytest.fixture(scope="module")
def clamped():
    """K = 1, J = 4, 12 families, drawn from the clamped model with intercepts low enough that many
    linear predictors sit below −L = −1.5 (so the clamp binds for a good share of the scores)."""
    true = random_params(1, 4, seed=7)
    true["intercepts"] = np.array([-1.5, -2.0, -0.5, -2.5])
    data, true, spec = simulate(true, k=1, n_benchmarks=4, n_families=12, family_sizes=3, seed=8, logit_clip=1.5)
    return data, true, spec


def brute_force(data, spec, true, name, L):
    """log ∫ Π Beta(y | c + (1 − c)·sigmoid(clip(η, ±L))) N(α; 0, 1) dα by scipy, split at the kinks."""
    frame = data.frame
    X = standardized_covariates(frame)
    rows = np.flatnonzero(frame["family"].to_numpy() == name)
    Y = np.clip(frame[list(spec.benchmarks)].to_numpy(float)[rows], *spec.clip)
    c = np.asarray(spec.floors)
    eta0 = X[rows] @ true["B"] @ true["loadings"] + true["intercepts"]
    lam = true["loadings"][0]

    phi = true["precision"]

    def log_joint(a):  # vectorized over a grid of α
        a = np.asarray(a, float)[..., None, None]
        mu = c + (1 - c) * special.expit(np.clip(eta0 + a * lam, -L, L))
        return np.nansum(scipy_beta_logpdf(Y, phi * mu, phi * (1 - mu)), axis=(-2, -1)) + stats.norm.logpdf(a[..., 0, 0])

    kinks = sorted({float(k) for k in ((np.array([-L, L])[:, None, None] - eta0[None]) / lam).ravel()
                    if -10 < k < 10})
    grid = np.linspace(-10, 10, 4001)
    top = float(np.max(log_joint(grid)))
    edges = [-10.0, *kinks, 10.0]
    total = sum(integrate.quad(lambda a: np.exp(log_joint(a) - top), lo, hi, epsabs=0, epsrel=1e-12, limit=200)[0]
                for lo, hi in zip(edges[:-1], edges[1:]))
    return top + np.log(total)


def test_clamped_likelihood_matches_brute_force(clamped):
    data, true, spec = clamped
    assert spec.logit_clip == 1.5
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    theta = pack({k: true[k] for k in spec.block_names}, spec)
    fine = MarginalLikelihood(spec, design, QuadratureSpec(points=60)).loglikeobs(theta)
    ref = np.array([brute_force(data, spec, true, n, 1.5) for n in design.families])
    # the kinks cost the Gauss-Hermite rule its spectral accuracy, not its convergence
    np.testing.assert_allclose(fine, ref, atol=2e-3)
    unclamped = MarginalLikelihood(spec.replace(logit_clip=None), design, QuadratureSpec(points=60)).loglikeobs(theta)
    assert np.max(np.abs(unclamped - ref)) > 0.1  # the clamp binds


def test_clamped_gradient_matches_finite_differences_away_from_the_kinks(clamped):
    data, true, spec = clamped
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    ml = MarginalLikelihood(spec, design, QuadratureSpec(points=15))
    theta = pack({k: true[k] for k in spec.block_names}, spec) + 0.013
    _, g = ml.loglike_and_score(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = 1e-6
        fd = (ml.loglike(theta + e) - ml.loglike(theta - e)) / 2e-6
        assert g[i] == pytest.approx(fd, rel=1e-4, abs=1e-4), i


def test_paper_preset_sets_every_documented_setting(tmp_path):
    """LatentScalingModel.paper and --paper: the clamp at 4.5, the exact BBH and MuSR floors, the clip
    of the scores, and the reference code's anchor order (explicit options override)."""
    from typer.testing import CliRunner

    from latentscale.cli.app import app
    from latentscale.fitting import PAPER_ANCHORS, PAPER_FLOORS

    m = ls.LatentScalingModel.paper(k=3)
    assert m.logit_clip == 4.5 and m.clip == (0.001, 0.999) and m.anchors == PAPER_ANCHORS[:3]
    assert m.n_starts == 10 and ls.LatentScalingModel.paper(k=3, n_starts=2).n_starts == 2
    assert m.floors == {"bbh": 0.28850361, "musr": 0.34329806} == PAPER_FLOORS
    assert ls.LatentScalingModel.paper(k=2, logit_clip=3.0).logit_clip == 3.0
    data, _, _ = simulate(k=1, n_benchmarks=4, n_families=20, family_sizes=2, seed=1)
    frame = data.frame.rename(columns={"b1": "math", "b2": "ifeval", "b3": "bbh", "b4": "musr"})
    path = tmp_path / "scores.csv"
    frame.to_csv(path)
    out = tmp_path / "fit.json"
    r = CliRunner().invoke(app, ["fit", str(path), "-k", "2", "--paper", "--floor", "math=0", "--floor", "ifeval=0",
                                 "--starts", "1", "--method", "laplace", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    model = json.loads(r.stdout)["model"]
    assert model["logit_clip"] == 4.5 and model["clip"] == [0.001, 0.999]
    assert model["anchors"] == ["math", "ifeval"]
    floors = dict(zip(model["benchmarks"], model["floors"]))
    assert floors["bbh"] == 0.28850361 and floors["musr"] == 0.34329806
    fit = ls.FitResult.load(out)
    assert fit.spec.logit_clip == 4.5 and "logit clamped to ±4.5" in fit.summary().as_text()


def test_clamped_fit_reports_the_importance_sampling_log_likelihood(clamped):
    """With the clamp, ℓ at the optimum is re-estimated by importance sampling (refine='auto'): it agrees
    with a fine quadrature at the same θ within its standard error, and the estimator's value is kept."""
    data, _, spec = clamped
    opts = dict(k=1, logit_clip=1.5, method="laplace", n_starts=1, hessian=None, refine_draws=4000)
    auto = ls.LatentScalingModel(**opts).fit(data)
    plain = ls.LatentScalingModel(**opts, refine=None).fit(data)
    np.testing.assert_array_equal(auto.theta, plain.theta)
    d = auto.diagnostics
    assert d["quadrature_log_likelihood"] == plain.llf and d["importance_draws"] == 4000
    design, _ = build_design(data, auto.spec.benchmarks, auto.spec.clip)
    fine = MarginalLikelihood(auto.spec, design, QuadratureSpec(points=60)).loglike(auto.theta)
    assert abs(auto.llf - fine) < 4 * d["importance_se"] + 1e-3
    assert "importance sampling" in auto.summary().as_text()
    assert "importance_se" not in ls.LatentScalingModel(k=1, method="laplace", n_starts=1, hessian=None).fit(
        data).diagnostics  # no clamp: the quadrature's value
    for bad in ({"refine": "always"}, {"refine_draws": 10}):
        with pytest.raises(ls.InputError, match="refine"):
            ls.LatentScalingModel(k=1, **bad)


def test_clamped_fit_restarts_from_the_rules_curvature(clamped):
    """With the clamp, stage 3 is restarted from the rule's own curvature (on by default, off without the
    clamp or with polish_rounds=0): the restarts never lower the rule's value, and the diagnostics say
    how many ran and what they gained."""
    data, _, spec = clamped
    opts = dict(k=1, logit_clip=1.5, n_starts=1, hessian=None, refine=None, quadrature=ls.QuadratureSpec(points=5))
    polished = ls.LatentScalingModel(**opts).fit(data)
    once = ls.LatentScalingModel(**opts, method_options={"polish_rounds": 0}).fit(data)
    d = polished.diagnostics
    assert 1 <= d["curvature_restarts"] <= 3 and d["restart_gain"] >= 0.0
    assert "curvature_restarts" not in once.diagnostics
    design, _ = build_design(data, polished.spec.benchmarks, polished.spec.clip)
    rule = MarginalLikelihood(polished.spec, design, QuadratureSpec(points=5))
    assert rule.loglike(polished.theta) >= rule.loglike(once.theta) - 1e-6
    free = ls.LatentScalingModel(k=1, n_starts=1, hessian=None, quadrature=ls.QuadratureSpec(points=5)).fit(data)
    assert "curvature_restarts" not in free.diagnostics  # no clamp: no restarts
