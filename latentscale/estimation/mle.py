"""Default estimator: deterministic marginal maximum likelihood.

Stages, each deterministic:

1. several starts (a moment-based one and fixed-seed perturbations of it), each run by
   L-BFGS on the Laplace approximation (cheap: one node per family);
2. from the best, L-BFGS on the adaptive Gauss–Hermite objective, whose optimum lies close;
3. the Hessian of ℓ at the optimum by automatic differentiation (positive-definiteness
   check, standard errors).
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
from latentscale.model.params import ModelSpec, pack, parameter_bounds, parameter_names

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
    hessian: bool = True,
    progress: Progress | None = None,
) -> MLEOutcome:
    """Maximize the marginal log-likelihood; returns the unconstrained optimum and diagnostics."""
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    laplace = MarginalLikelihood.build(spec, design, points=1)
    full = MarginalLikelihood.build(spec, design, points=points)
    n_eval = [0]
    f_lap = _negated(laplace, n_eval)

    bounds = parameter_bounds(spec)
    lo, hi = np.array(bounds).T
    starts = [np.clip(x, lo, hi) for x in start_points(design, spec, n_starts, seed)]
    results = []
    for s, x0 in enumerate(starts):
        if not np.isfinite(f_lap(x0)[0]):
            say(f"start {s + 1}/{n_starts}: not finite, skipped")
            continue
        r = minimize(f_lap, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                     options={"maxiter": maxiter, "gtol": gtol, "ftol": 1e-13, "maxcor": 30})
        results.append(r)
        say(f"start {s + 1}/{n_starts}: Laplace log-likelihood {-r.fun:.3f} ({r.nit} iterations)")
    if not results:
        raise RuntimeError("no starting point gave a finite likelihood; check the data")
    best = min(results, key=lambda r: r.fun)
    iterations = int(sum(r.nit for r in results))
    say(f"refining the best start with {full.rule.size}-node adaptive Gauss–Hermite quadrature")
    f_full = _negated(full, n_eval)
    r = minimize(f_full, best.x, jac=True, method="L-BFGS-B", bounds=bounds,
                 options={"maxiter": maxiter, "gtol": gtol, "ftol": 1e-14, "maxcor": 30})
    theta = r.x
    iterations += int(r.nit)
    value, grad = full.value_and_grad(theta)
    say(f"log-likelihood {value:.3f} ({r.nit} iterations)")
    H = full.hessian(theta) if hessian else None
    diagnostics = {
        "grad_norm": float(np.linalg.norm(grad)),
        "grad_max": float(np.max(np.abs(grad))),
        "iterations": iterations,
        "function_evaluations": n_eval[0],
        "converged": bool(np.max(np.abs(grad)) < 1e-3),
        "hessian_pd": None if H is None else bool(np.all(np.linalg.eigvalsh(-(H + H.T) / 2) > 0)),
        "start_log_likelihoods": [float(-r.fun) for r in results],
        "laplace_log_likelihood": float(laplace.value(theta)),
        "quadrature_nodes": full.rule.size,
        "optimizer_message": str(r.message),
        "at_bounds": [n for n, x, a, b in zip(parameter_names(spec), theta, lo, hi) if x <= a + 1e-8 or x >= b - 1e-8],
    }
    return MLEOutcome(theta=theta, log_likelihood=float(value), diagnostics=diagnostics, hessian=H)
