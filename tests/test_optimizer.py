"""The projected quasi-Newton stage, its stopping rules, and estimates on the boundary of the box."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

import latentscale as ls
from latentscale.estimation.optimize import (
    backtrack_factor,
    convergence_diagnostics,
    free_coordinates,
    projected_gradient,
    quasi_newton,
)
from latentscale.model.params import parameter_names
from latentscale.model.simulate import random_params, simulate
from latentscale.results.inference import theta_covariance


class Quadratic:
    """ℓ(θ) = −½ (θ − c)ᵀ A (θ − c): a stand-in for MarginalLikelihood (loglike_and_score only)."""

    def __init__(self, A, c):
        self.A, self.c, self.calls = np.asarray(A, float), np.asarray(c, float), 0

    def loglike_and_score(self, theta):
        self.calls += 1
        d = np.asarray(theta) - self.c
        return -0.5 * d @ self.A @ d, -self.A @ d


def box_maximum(q: Quadratic, lo, hi) -> np.ndarray:
    """The constrained maximum by L-BFGS-B run to tight tolerances (a reference)."""
    r = minimize(lambda t: tuple(-v for v in q.loglike_and_score(t)), np.clip(np.zeros_like(q.c), lo, hi),
                 jac=True, method="L-BFGS-B", bounds=list(zip(lo, hi)), options={"gtol": 1e-12, "ftol": 1e-15})
    return r.x


def test_projected_newton_reaches_a_maximum_on_the_bound_with_coupled_curvature():
    # The unconstrained maximum (2, −1) lies outside x1 ≤ 0. From (0, 0) the full Newton step
    # (2, −1) clipped to the box is (0, −1), which goes downhill (g = (1.1, 0.8)): clipping a
    # coupled Newton step fails here, holding x1 and stepping in x2 alone does not.
    A = np.array([[1.0, 0.9], [0.9, 1.0]])
    q = Quadratic(A, [2.0, -1.0])
    lo, hi = np.array([-5.0, -5.0]), np.array([0.0, 5.0])
    theta, B, steps = quasi_newton(q, np.zeros(2), -A, lo, hi, gtol=1e-10, max_iter=50)
    np.testing.assert_allclose(theta, [0.0, 0.8], atol=1e-10)  # x2 = c2 − A12 (x1 − c1) / A22
    np.testing.assert_allclose(theta, box_maximum(q, lo, hi), atol=1e-7)
    assert steps <= 3


@pytest.mark.parametrize("seed", range(5))
def test_projected_quasi_newton_matches_a_reference_in_random_boxes(seed):
    rng = np.random.default_rng(seed)
    n = 8
    M = rng.normal(size=(n, n))
    A = M @ M.T + 0.5 * np.eye(n)
    q = Quadratic(A, rng.normal(scale=3.0, size=n))
    lo, hi = -np.ones(n), np.ones(n)
    # A rough starting curvature: BFGS has to correct it on the way.
    theta, _, _ = quasi_newton(q, np.zeros(n), -np.diag(np.diag(A)), lo, hi, gtol=1e-9, max_iter=500)
    ref = box_maximum(q, lo, hi)
    assert q.loglike_and_score(theta)[0] >= q.loglike_and_score(ref)[0] - 1e-9
    np.testing.assert_allclose(theta, ref, atol=1e-5)
    assert np.max(np.abs(projected_gradient(theta, q.loglike_and_score(theta)[1], lo, hi))) < 1e-6


def test_backtracking_interpolates_a_step_far_too_long():
    # A starting curvature 30 times too small makes the first step 30 times the Newton step. On a
    # quadratic the interpolated step is the line's maximum: t = 1 (rejected), t = 0.1 (the safeguard,
    # 3 Newton steps: rejected), then a third of that: the maximum itself, in 3 trials where halving
    # takes 5 and stops at 30/32 of the Newton step.
    A = np.array([[2.0, 0.3], [0.3, 1.0]])
    q = Quadratic(A, [1.0, -2.0])
    lo, hi = -np.full(2, 100.0), np.full(2, 100.0)
    theta, _, steps = quasi_newton(q, np.zeros(2), -A / 30.0, lo, hi, gtol=0.0, max_iter=1)
    assert steps == 1 and q.calls == 1 + 3
    np.testing.assert_allclose(theta, q.c, atol=1e-10)


def test_backtrack_factor_is_the_line_maximum_within_its_safeguards():
    grad = np.array([1.0, 0.0])
    for v, expected in [(-1.0, 1.0 / 4.0), (0.9, 0.5), (-100.0, 0.1), (np.nan, 0.5), (np.inf, 0.5)]:
        # φ(τ) = τ gᵀs + (v − gᵀs) τ²: its maximum at gᵀs / (2 (gᵀs − v))
        assert backtrack_factor(0.0, grad, np.array([1.0, 5.0]), v) == pytest.approx(expected)
    assert backtrack_factor(0.0, grad, np.array([-1.0, 0.0]), -1.0) == 0.5  # not an ascent direction


def test_stops_when_nothing_is_left_to_gain():
    # A flat direction (curvature 1e-12): its gradient entry stays near 1e-4 · 1e-8 scale
    # forever, but the predicted gain is far below ftol, so the stage stops early.
    A = np.diag([1.0, 1e-12])
    q = Quadratic(A, [1.0, 1e8])
    lo, hi = -np.full(2, 1e9), np.full(2, 1e9)
    theta, _, steps = quasi_newton(q, np.zeros(2), -A, lo, hi, gtol=0.0, max_iter=200, ftol=1e-9)
    assert steps < 200
    assert abs(theta[0] - 1.0) < 1e-8


def test_free_coordinates_hold_only_bounds_the_gradient_pushes_against():
    lo, hi = np.array([0.0, 0.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0, 1.0])
    theta = np.array([0.0, 0.0, 1.0, 0.5])
    grad = np.array([-1.0, 1.0, 1.0, 5.0])  # out, in, out, interior
    np.testing.assert_array_equal(free_coordinates(theta, grad, lo, hi), [False, True, False, True])
    np.testing.assert_array_equal(projected_gradient(theta, grad, lo, hi), [0.0, 1.0, 0.0, 5.0])


def test_convergence_diagnostics():
    lo, hi = -np.ones(3), np.ones(3)
    H = -np.diag([1.0, 1e6, 4.0])
    names = ["a", "b", "c"]
    # A gradient entry of 1e-2 in a very stiff direction: the decrement (1e-10) says converged.
    d = convergence_diagnostics(np.zeros(3), np.array([0.0, 1e-2, 0.0]), H, lo, hi, names)
    assert d["converged"] and d["grad_max"] == pytest.approx(1e-2) and d["newton_decrement"] == pytest.approx(1e-10)
    # The same entry in a soft direction is not converged.
    d = convergence_diagnostics(np.zeros(3), np.array([1e-2, 0.0, 0.0]), H, lo, hi, names)
    assert not d["converged"]
    # A coordinate held by its bound is left out of both measures and named.
    d = convergence_diagnostics(np.array([1.0, 0.0, 0.0]), np.array([3.0, 0.0, 1e-6]), H, lo, hi, names)
    assert d["converged"] and d["at_bounds"] == ["a"] and d["grad_max"] == pytest.approx(1e-6)
    # Indefinite on the free block: not positive definite, and only the gradient test can pass.
    d = convergence_diagnostics(np.zeros(3), np.array([0.0, 0.0, 1e-3]), -np.diag([1.0, -1.0, 1.0]), lo, hi, names)
    assert not d["hessian_pd"] and not d["converged"] and np.isnan(d["newton_decrement"])


def test_covariance_with_held_coordinates_is_the_conditional_one():
    rng = np.random.default_rng(1)
    M = rng.normal(size=(4, 4))
    info = M @ M.T + np.eye(4)
    held = np.array([False, True, False, False])
    cov = theta_covariance(-info, None, "observed", held=held)
    free = ~held
    np.testing.assert_allclose(cov[np.ix_(free, free)], np.linalg.inv(info[np.ix_(free, free)]), rtol=1e-12)
    assert np.all(cov[held] == 0) and np.all(cov[:, held] == 0)
    # An indefinite entry confined to the held coordinate no longer spoils the rest.
    bad = info.copy()
    bad[1, 1] = -5.0
    cov = theta_covariance(-bad, None, "observed", held=held)
    assert np.all(np.isfinite(cov))


@pytest.mark.slow
def test_overspecified_fit_converges_with_a_correlation_on_the_boundary():
    # Data from K = 2 skills that are all but one and the same (correlation 0.999), fitted with K = 2:
    # the correlation estimate sits on the edge of the box. Before the projected steps, such a
    # fit ended unconverged where the clipped Newton step stopped climbing (gradient 1.8).
    params = random_params(2, 6, seed=4)
    rho = 0.999
    params["corr"] = np.array([[1.0, 0.0], [rho, np.sqrt(1.0 - rho**2)]])
    data, _, _ = simulate(params, k=2, n_benchmarks=6, n_families=150, family_sizes=2, seed=4)
    fit = ls.fit(data, k=2)
    assert fit.converged
    assert fit.skill_corr.iloc[1, 0] > 0.97
    table = fit.params_table()
    corr_se = table.loc[("corr", fit.skills[1], fit.skills[0]), "se"]
    assert fit.at_bounds == [parameter_names(fit.spec)[-1]]  # the correlation's coordinate
    assert np.isnan(corr_se)
    assert "boundary" in fit.summary().as_text()
    assert np.all(np.isfinite(table.xs("B", level="block")["se"]))


@pytest.mark.parametrize("P,batch", [(78, 26), (89, 23), (10, 10), (27, 14), (1, 1)])
def test_direction_batch_splits_the_parameters_evenly(P, batch):
    from latentscale.estimation.likelihood import direction_batch

    assert direction_batch(P) == batch
    passes = -(-P // batch)
    assert passes * batch >= P > (passes - 1) * batch and batch <= 26


def test_repeated_evaluation_at_the_same_point_is_free(monkeypatch):
    from latentscale.estimation.likelihood import MarginalLikelihood
    from latentscale.estimation.quadrature import QuadratureSpec
    from latentscale.model.design import build_design

    data, _, spec = simulate(k=1, n_benchmarks=3, n_families=40, family_sizes=2, seed=0)
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    ml = MarginalLikelihood(spec, design, QuadratureSpec(points=5))
    theta = objective_start(design, spec)
    v, g, per = ml.value_grad_families(theta)

    def refuse(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(ml, "_programs", (refuse, refuse))  # the compiled value(-and-gradient) programs it calls
    v2, g2, per2 = ml.value_grad_families(theta.copy())
    assert v2 == v and np.array_equal(g2, g) and np.array_equal(per2, per)
    assert ml.loglike(theta) == pytest.approx(v, abs=1e-9)
    g2[0] += 1.0  # the caller's copy: the cache is not changed through it
    assert np.array_equal(ml.score(theta), g)
    with pytest.raises(AssertionError, match="recomputed"):
        ml.loglike_and_score(theta + 1e-3)
    ml.reset()
    with pytest.raises(AssertionError, match="recomputed"):
        ml.loglikeobs(theta)


def objective_start(design, spec):
    from latentscale.estimation.init import start_points

    return start_points(design, spec, 1, 0)[0]


@pytest.fixture(scope="module")
def small_fit():
    data, _, _ = simulate(k=2, n_benchmarks=5, n_families=60, family_sizes=2, seed=11)
    return data, ls.LatentScalingModel(k=2, n_starts=1).fit(data)


def test_start_params_from_the_optimum_returns_it(small_fit):
    data, fit = small_fit
    again = ls.LatentScalingModel(k=2, n_starts=1).fit(data, start_params=fit)
    assert again.diagnostics["start_given"] and not fit.diagnostics["start_given"]
    assert again.llf == pytest.approx(fit.llf, abs=1e-6)
    np.testing.assert_allclose(again.theta, fit.theta, atol=1e-3)
    # a start far from the optimum (every coordinate moved) climbs back to the same ℓ
    rng = np.random.default_rng(0)
    moved = ls.LatentScalingModel(k=2, n_starts=1).fit(data, start_params=fit.theta + rng.normal(0, 0.3, fit.theta.size))
    assert moved.llf == pytest.approx(fit.llf, abs=1e-4)


def test_laplace_stage_bound_leaves_the_rest_to_the_quadrature_stage(small_fit):
    """``laplace_maxiter`` bounds the Laplace stage only: cut to two steps, the quadrature stage takes
    more steps and reaches the same optimum."""
    from latentscale.estimation.mle import fit_mle
    from latentscale.model.design import build_design

    data, fit = small_fit
    design, _ = build_design(data, fit.spec.benchmarks, fit.spec.clip)
    # a short screening leaves the Laplace stage work to do
    full = fit_mle(design, fit.spec, n_starts=1, hessian=None, screen_iter=3)
    short = fit_mle(design, fit.spec, n_starts=1, hessian=None, screen_iter=3, laplace_maxiter=2)
    assert full.diagnostics["laplace_steps"] > 2 and short.diagnostics["laplace_steps"] <= 2
    assert short.diagnostics["quadrature_steps"] > full.diagnostics["quadrature_steps"]
    assert short.log_likelihood == pytest.approx(full.log_likelihood, abs=1e-4)
    assert short.log_likelihood == pytest.approx(fit.llf, abs=1e-4)


def test_start_params_errors(small_fit):
    data, fit = small_fit
    with pytest.raises(ValueError, match=r"must be a FitResult or \d+ numbers"):
        ls.LatentScalingModel(k=2).fit(data, start_params=fit.theta[:-1])
    with pytest.raises(ValueError, match="same model"):
        ls.LatentScalingModel(k=1).fit(data, start_params=fit)
    with pytest.raises(ValueError, match="psga"):
        ls.LatentScalingModel(k=2, method="psga").fit(data, start_params=fit)
    with pytest.raises(ValueError, match="finite"):
        from latentscale.estimation.mle import fit_mle
        from latentscale.model.design import build_design

        design, _ = build_design(data, fit.spec.benchmarks, fit.spec.clip)
        fit_mle(design, fit.spec, start=np.full(fit.theta.size, np.nan))


@pytest.mark.parametrize("screened, kept", [([-100.0, -95.0, 40.0], 2), ([-100.0, 5000.0, 40.0], 1),
                                            ([-100.0, -1.0, 40.0], 2), ([-100.0, 0.5, 40.0], 1)])
def test_starts_that_failed_screening_are_not_taken_further(monkeypatch, screened, kept):
    """Of the ``laplace_starts`` best screened starts, those more than START_GAP nats below the best go
    no further (a failed screen); the others all do, sharing one starting curvature."""
    from types import SimpleNamespace

    from latentscale.estimation import mle
    from latentscale.model.spec import ModelSpec

    spec = ModelSpec(benchmarks=("a", "b", "c"), anchors=("a",), floors=(0.0, 0.0, 0.0))
    P = mle.layout(spec).size
    results = [SimpleNamespace(fun=f, x=np.full(P, float(i)), nit=5) for i, f in enumerate(screened)]
    monkeypatch.setattr(mle, "_screen", lambda *a: results)
    curvatures = []

    class Laplace:
        def start_curvature(self, x):
            curvatures.append(x)
            return -np.eye(P)

    design = SimpleNamespace(n_families=10)
    said = []
    cands, _, iterations, subset = mle._start_stage(design, spec, Laplace(), [None] * 3, 2000, 50, 1e-6, 10, 2,
                                                    said.append)
    assert len(cands) == kept and subset is None and iterations == 15
    assert cands[0][0][0] == 0.0  # the best first
    assert len(curvatures) == 1 and curvatures[0][0] == 0.0
    assert bool(said) == (kept < 2)


class _FailsAway:
    """A concave quadratic (maximum 3 at c) whose likelihood fails (NaN or −inf) beyond ‖x‖ = 0.5:
    L-BFGS-B's first trial from 0, a unit step along the gradient, lands there."""

    c = np.array([0.2, -0.1, 0.1])

    def __init__(self, failure: float):
        self.failure = failure

    def loglike_and_score(self, x):
        x = np.asarray(x, float)
        if np.linalg.norm(x) > 0.5:
            return self.failure, np.full_like(x, np.nan)
        return -50.0 * np.sum((x - self.c) ** 2) + 3.0, -100.0 * (x - self.c)


@pytest.mark.parametrize("failure", [np.nan, -np.inf])
def test_negated_lets_lbfgsb_step_back_from_a_failed_trial(failure):
    """A failed evaluation is a large finite value with zero gradient, so L-BFGS-B shrinks its step
    and reaches the maximum (SciPy, given +inf there, returned to the start and stopped as converged)."""
    from latentscale.estimation.optimize import FAILED_GAP, negated

    ml = _FailsAway(failure)
    counter = [0]
    fun = negated(ml, counter)
    r = minimize(fun, np.zeros(3), jac=True, method="L-BFGS-B", bounds=[(-5.0, 5.0)] * 3)
    assert np.allclose(r.x, ml.c, atol=1e-6) and np.isclose(-r.fun, 3.0)
    assert counter[0] == r.nfev
    value, grad = fun(np.ones(3))  # a failing point: finite, above every finite −ℓ seen, flat
    assert np.isfinite(value) and value >= FAILED_GAP and np.all(grad == 0.0)
