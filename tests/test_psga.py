"""Projected stochastic gradient ascent (the paper's estimator) on a small simulated problem.

K = 2 skills, J = 5 benchmarks, 40 families (71 models), simulated here with numpy from the
model of SPEC §2. The reference optimum is the maximum of the default estimator's objective
(``MarginalLikelihood``, adaptive Gauss–Hermite) found by L-BFGS from the moment start; on this
data ``fit_mle`` reaches the same value (measured on a 60-family version: 537.6343 both) but takes minutes on a busy
2-core machine because it also builds Laplace Hessians, so the test maximizes the objective
directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

import jax
import jax.numpy as jnp
from latentscale.config import float64_scope
from latentscale.data import from_frame
from latentscale.estimation.init import initial_params
from latentscale.estimation.likelihood import MarginalLikelihood
from latentscale.estimation.psga import fit_psga, mc_loglik
from latentscale.fitting import LatentScalingModel
from latentscale.model.design import build_design
from latentscale.model.params import PROJECTION_FLOOR as FLOOR, layout, pack, unpack


@pytest.fixture(autouse=True)
def _x64():
    with float64_scope():
        yield


def start_params(design, spec):
    """The projected moment-based start, as PSGA begins."""
    lay = layout(spec)
    return lay.project({k: jnp.asarray(v) for k, v in initial_params(design, spec).items()})

# Measured on this data (40 families) with PSGA_SETTINGS (600 steps × 600 draws): optimum 370.584; PSGA gaps
# 0.174 / 0.196 / 0.170 / 0.187 nat for seeds 0-3 (1,000 steps: 0.07-0.12); 300 steps × 600 draws: gaps
# 1.07-1.17. A 0.5-nat tolerance is 2.5 times the measured gap and still fails an unconverged run. (On 60
# families with 1,000 steps the gaps were 0.38-0.47 nat and the fixture, at the test session's unoptimized
# XLA, the suite's slowest at 33 s; here 9 s.)
TOLERANCE_NATS = 0.5
PSGA_SETTINGS = dict(steps=600, draws=600, learning_rates=(0.1,), schedules=("constant",), seeds=1,
                     report_every=100)


def simulate(seed: int = 1, n_families: int = 40):
    """Score table from θ = Bᵀx + α, μ = c + (1−c)σ(λᵀθ + b), y ~ Beta(φμ, φ(1−μ)), 10 % missing."""
    rng = np.random.default_rng(seed)
    names = [f"b{j}" for j in range(5)]
    floors = np.array([0.0, 0.25, 0.0, 0.25, 0.5])
    fam = np.repeat(np.arange(n_families), rng.choice([1, 1, 2, 3], size=n_families))
    n = len(fam)
    N = np.exp(rng.uniform(np.log(0.5), np.log(70.0), n))
    D = np.exp(rng.uniform(np.log(0.3), np.log(15.0), n_families))[fam]
    x = np.column_stack([np.log(N), np.log(D), np.log(N) * np.log(D)])
    x = (x - x.mean(0)) / x.std(0)
    B = np.array([[0.8, 0.5], [0.6, 0.3], [0.1, 0.0]])
    lam = np.array([[1.2, 0.0, 0.8, 0.5, 0.6], [0.0, 0.9, 0.3, 0.7, -0.2]])
    b = np.array([-0.5, 0.3, 0.0, 0.5, -0.2])
    phi = np.array([40.0, 60.0, 30.0, 80.0, 50.0])
    alpha = rng.multivariate_normal(np.zeros(2), [[1.0, 0.4], [0.4, 1.0]], size=n_families)
    theta = x @ B + alpha[fam]
    mu = floors + (1 - floors) / (1 + np.exp(-(theta @ lam + b)))
    y = rng.beta(phi * mu, phi * (1 - mu))
    y[rng.uniform(size=y.shape) < 0.1] = np.nan
    df = pd.DataFrame(y, columns=names)
    df.insert(0, "model", [f"m{i}" for i in range(n)])
    df.insert(1, "family", [f"f{f}" for f in fam])
    df.insert(2, "size", N)
    df.insert(3, "tokens", D)
    return from_frame(df, floors=dict(zip(names, floors)))


@pytest.fixture(scope="module")
def problem():
    data = simulate()
    spec = LatentScalingModel(2).spec_for(data)  # anchors b0 (skill 1), b1 (skill 2)
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    return spec, design


@pytest.fixture(scope="module")
def optimum(problem):
    spec, design = problem
    ml = MarginalLikelihood(spec, design)

    def negated(theta):
        v, g = ml.loglike_and_score(theta)
        return -v, -np.asarray(g)

    x0 = pack(initial_params(design, spec), spec)
    r = minimize(negated, x0, jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-6})
    return -r.fun


@pytest.fixture(scope="module")
def psga_fit(problem):
    spec, design = problem
    return fit_psga(design, spec, seed=0, **PSGA_SETTINGS)


def _check_constraints(params, spec):
    K, J = spec.K, spec.J
    L = np.asarray(params["corr"])
    np.testing.assert_allclose(np.linalg.norm(L, axis=1), 1.0, atol=1e-12)
    assert np.all(np.triu(L, 1) == 0.0)
    assert np.all(np.asarray(params["precision"]) > 0)
    lam = np.asarray(params["loadings"])
    for k, j in enumerate(spec.anchor_index):
        assert lam[k, j] >= FLOOR
        others = np.delete(lam[:, j], k)
        assert np.all(others == 0.0), "structural zeros of an anchor column"
    assert lam.shape == (K, J)


def test_projection_enforces_constraints(problem):
    spec, _ = problem
    K, J, p = spec.K, spec.J, spec.p
    rng = np.random.default_rng(3)
    junk = {
        "B": jnp.asarray(rng.normal(size=(p, K))),
        "loadings": jnp.asarray(rng.normal(size=(K, J)) - 1.0),  # anchors negative, zeros violated
        "intercepts": jnp.asarray(rng.normal(size=J)),
        "precision": jnp.asarray(rng.normal(size=J) * 10.0),  # some negative
        "corr": jnp.asarray(rng.normal(size=(K, K)) * 3.0),  # not triangular, not unit rows
    }
    lay = layout(spec)
    out = jax.jit(lay.project)(junk)
    _check_constraints(out, spec)
    assert np.all(np.asarray(out["precision"]) >= FLOOR)
    # Projection is idempotent and leaves free parameters alone.
    again = lay.project(out)
    for key in out:
        np.testing.assert_allclose(np.asarray(again[key]), np.asarray(out[key]), atol=1e-15)
    np.testing.assert_array_equal(np.asarray(out["B"]), np.asarray(junk["B"]))
    np.testing.assert_array_equal(np.asarray(out["loadings"])[:, list(spec.free_index)],
                                  np.asarray(junk["loadings"])[:, list(spec.free_index)])
    # The unconstrained round trip keeps the constrained point (anchor loadings floored).
    theta = lay.pack({k: np.asarray(v) for k, v in out.items()})
    back = lay.unpack(theta)
    S_out = np.asarray(out["corr"]) @ np.asarray(out["corr"]).T
    S_back = np.asarray(back["corr"]) @ np.asarray(back["corr"]).T
    np.testing.assert_allclose(S_back, S_out, atol=1e-10)
    np.testing.assert_allclose(np.asarray(back["precision"]), np.asarray(out["precision"]), rtol=1e-12)


def test_mc_loglik_float32_matches_float64(problem):
    spec, design = problem
    params = start_params(design, spec)
    z = jax.random.normal(jax.random.PRNGKey(0), (1, 500, spec.K))
    valid = jnp.ones((1, 500), bool)
    args = (design.arrays(), jnp.asarray(spec.floors), design.n_families, 35.0)
    def value(dtype, checkpoint=False):
        return jax.jit(lambda zz, vv: mc_loglik(params, zz, vv, *args, dtype=dtype, checkpoint=checkpoint))

    v32 = float(value(jnp.float32)(z, valid))
    v64 = float(value(jnp.float64)(z, valid))
    assert abs(v32 - v64) < 0.05
    # Chunked draws (with padding) give the same estimate as one chunk.
    zc = jnp.concatenate([z[0], jnp.zeros((100, spec.K))]).reshape(3, 200, spec.K)
    vc = (jnp.arange(600) < 500).reshape(3, 200)
    v64c = float(value(jnp.float64, checkpoint=True)(zc, vc))
    assert abs(v64c - v64) < 1e-9


def test_mc_loglik_gradient_matches_plain_autodiff(problem):
    """The Monte Carlo likelihood with the package's fused Beta kernel (value and derivative in one
    pass, a custom JVP) against plain autodiff of the Beta density written with JAX's gammaln."""
    spec, design = problem
    params = start_params(design, spec)
    S = 300
    z = jax.random.normal(jax.random.PRNGKey(1), (S, spec.K))
    a, floors, F = design.arrays(), jnp.asarray(spec.floors), design.n_families

    def reference(p):
        lam, j = p["loadings"], a["obs_bench"]
        alpha = z @ p["corr"].T
        base = jnp.sum((a["X"] @ p["B"])[a["obs_model"]] * lam.T[j], 1) + p["intercepts"][j]
        eta = base[:, None] + lam.T[j] @ alpha.T
        c, phi = floors[j][:, None], p["precision"][j][:, None]
        mu = c + (1.0 - c) * jax.nn.sigmoid(eta)
        A, Bb = phi * mu, phi * (1.0 - mu)
        gl = jax.scipy.special.gammaln
        ll = ((A - 1.0) * a["log_y"][:, None] + (Bb - 1.0) * a["log1m_y"][:, None]
              - gl(A) - gl(Bb) + gl(phi))  # the Beta density written out, plain autodiff
        per = jax.ops.segment_sum(ll, a["obs_family"], num_segments=F)
        return jnp.sum(jax.scipy.special.logsumexp(per, axis=1) - jnp.log(S))

    def fused(p):
        return mc_loglik(p, z[None], jnp.ones((1, S), bool), a, floors, F, 35.0, dtype=jnp.float64)

    v_ref, g_ref = jax.jit(jax.value_and_grad(reference))(params)
    v_new, g_new = jax.jit(jax.value_and_grad(fused))(params)
    assert float(v_new) == pytest.approx(float(v_ref), abs=1e-8)
    for key in g_ref:
        np.testing.assert_allclose(np.asarray(g_new[key]), np.asarray(g_ref[key]), atol=1e-8, rtol=1e-8)


def test_psga_solution_satisfies_constraints(problem, psga_fit):
    spec, _ = problem
    params = unpack(np.asarray(psga_fit.theta), spec)
    assert np.all(np.asarray(params["loadings"])[np.arange(spec.K), list(spec.anchor_index)] > 0)
    _check_constraints(params, spec)
    d = psga_fit.diagnostics
    assert d["steps"] == PSGA_SETTINGS["steps"] and d["draws"] == PSGA_SETTINGS["draws"] and len(d["restarts"]) == 1
    assert d["averaged_steps"] == 120  # the last 20 % of 600 steps


def test_psga_reaches_the_optimum(problem, optimum, psga_fit):
    spec, design = problem
    ll = psga_fit.log_likelihood
    # The reported value is the accurate log-likelihood of the returned parameters.
    assert ll == pytest.approx(MarginalLikelihood(spec, design).loglike(psga_fit.theta), abs=1e-8)
    assert ll <= optimum + 0.01
    assert optimum - ll < TOLERANCE_NATS, f"PSGA {ll:.3f} vs optimum {optimum:.3f}"


@pytest.mark.slow
def test_psga_is_deterministic(problem):
    spec, design = problem
    opts = dict(PSGA_SETTINGS, steps=100, learning_rates=(0.1,), schedules=("constant", "plateau"))
    messages = []
    a = fit_psga(design, spec, seed=7, progress=messages.append, **opts)
    b = fit_psga(design, spec, seed=7, **opts)
    np.testing.assert_array_equal(a.theta, b.theta)
    assert a.log_likelihood == b.log_likelihood
    assert a.diagnostics["restart_log_likelihoods"] == b.diagnostics["restart_log_likelihoods"]
    assert any("restart 2/2" in m for m in messages)
    c = fit_psga(design, spec, seed=8, **dict(opts, schedules=("constant",)))
    assert not np.array_equal(a.theta, c.theta)
