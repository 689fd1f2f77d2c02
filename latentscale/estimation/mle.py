"""Default estimator: deterministic marginal maximum likelihood.

Stages, each deterministic:

1. several starts (a moment-based one and fixed-seed perturbations of it), each run by
   L-BFGS on the Laplace approximation (cheap: one node per family);
2. from the best, Newton iterations with the exact Hessian of the Laplace objective;
3. quasi-Newton (BFGS, initialized with that Hessian) on the adaptive Gauss–Hermite
   objective, whose optimum lies close to the Laplace one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import minimize

from latentscale.estimation.init import initial_params
from latentscale.estimation.objective import MarginalLikelihood
from latentscale.model.design import Design
from latentscale.model.params import ModelSpec, pack

Progress = Callable[[str], None]


@dataclass
class MLEOutcome:
    """What an estimator hands back: the unconstrained optimum, ℓ there, diagnostics, Hessian of ℓ."""

    theta: np.ndarray
    log_likelihood: float
    diagnostics: dict
    hessian: np.ndarray | None = None


def _negated(ml: MarginalLikelihood, counter: list[int]):
    def fun(theta):
        counter[0] += 1
        v, g = ml.value_and_grad(theta)
        if not (np.isfinite(v) and np.all(np.isfinite(g))):
            return np.inf, np.zeros_like(theta)
        return -v, -g

    return fun


def start_points(design: Design, spec: ModelSpec, n_starts: int, seed: int, scale: float = 0.3) -> list[np.ndarray]:
    """The moment-based start and ``n_starts - 1`` perturbations of it (fixed seed)."""
    base = pack(initial_params(design, spec), spec)
    rng = np.random.default_rng(seed)
    return [base] + [base + rng.normal(0.0, scale, size=base.shape) for _ in range(n_starts - 1)]


def fit_mle(
    design: Design,
    spec: ModelSpec,
    *,
    points: int | None = None,
    n_starts: int = 4,
    seed: int = 0,
    maxiter: int = 1000,
    gtol: float = 1e-6,
    progress: Progress | None = None,
) -> MLEOutcome:
    """Maximize the marginal log-likelihood; returns the unconstrained optimum and diagnostics."""
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    laplace = MarginalLikelihood.build(spec, design, points=1)
    full = MarginalLikelihood.build(spec, design, points=points)
    n_eval = [0]
    f_lap = _negated(laplace, n_eval)

    starts = start_points(design, spec, n_starts, seed)
    results = []
    for s, x0 in enumerate(starts):
        if not np.isfinite(f_lap(x0)[0]):
            say(f"start {s + 1}/{n_starts}: not finite, skipped")
            continue
        r = minimize(f_lap, x0, jac=True, method="L-BFGS-B",
                     options={"maxiter": maxiter, "gtol": gtol, "ftol": 1e-13, "maxcor": 30})
        results.append(r)
        say(f"start {s + 1}/{n_starts}: Laplace log-likelihood {-r.fun:.3f} ({r.nit} iterations)")
    if not results:
        raise RuntimeError("no starting point gave a finite likelihood; check the data")
    best = min(results, key=lambda r: r.fun)
    theta = best.x
    iterations = int(sum(r.nit for r in results))

    # Newton on the Laplace objective, exact Hessian.
    for _ in range(20):
        v, g = laplace.value_and_grad(theta)
        if np.max(np.abs(g)) < gtol:
            break
        H = laplace.hessian(theta)
        step = _newton_step(H, g)
        theta, improved = _backtrack(laplace, theta, v, step)
        iterations += 1
        if not improved:
            break
    say(f"Laplace optimum {laplace.value(theta):.3f}; refining with {full.rule.size}-node adaptive Gauss–Hermite")

    # Quasi-Newton on the full objective with the Laplace Hessian as the initial inverse Hessian.
    f_full = _negated(full, n_eval)
    H = laplace.hessian(theta)
    hinv0 = _inverse_negdef(H)
    r = minimize(f_full, theta, jac=True, method="BFGS", options={"gtol": gtol, "maxiter": 200, "hess_inv0": hinv0})
    theta = r.x
    iterations += int(r.nit)
    value, grad = full.value_and_grad(theta)
    say(f"log-likelihood {value:.3f} ({r.nit} quasi-Newton iterations)")
    diagnostics = {
        "grad_norm": float(np.linalg.norm(grad)),
        "grad_max": float(np.max(np.abs(grad))),
        "iterations": iterations,
        "function_evaluations": n_eval[0],
        "converged": bool(np.max(np.abs(grad)) < max(gtol * 100, 1e-4)),
        "start_log_likelihoods": [float(-r.fun) for r in results],
        "laplace_log_likelihood": float(laplace.value(theta)),
        "quadrature_nodes": full.rule.size,
        "optimizer_message": str(r.message),
        "seconds_optimize": time.perf_counter() - t0,
    }
    return MLEOutcome(theta=theta, log_likelihood=float(value), diagnostics=diagnostics)


def _inverse_negdef(H: np.ndarray) -> np.ndarray:
    """Inverse of −H made positive definite (eigenvalues floored)."""
    w, V = np.linalg.eigh(-H)
    w = np.maximum(w, 1e-6 * max(w.max(), 1.0))
    return (V / w) @ V.T


def _newton_step(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    return _inverse_negdef(H) @ g


def _backtrack(ml: MarginalLikelihood, theta, value, step, shrink=0.5, tries=30):
    t = 1.0
    for _ in range(tries):
        cand = theta + t * step
        v = ml.value(cand)
        if np.isfinite(v) and v >= value:
            return cand, v > value
        t *= shrink
    return theta, False
