"""Deterministic marginal maximum likelihood (the default estimator).

Stages, each deterministic:

1. several starts (a moment-based one and fixed-seed perturbations of it), each run for
   ``screen_iter`` L-BFGS-B iterations on the Laplace approximation (cheap: one node per
   family), within box bounds that stop runaway line searches; with many families, on an
   evenly spread subset of them (and the best taken to that subset's optimum);
2. from the best, projected quasi-Newton steps on the Laplace objective to its optimum: the
   Hessian is computed once by central differences of the exact gradient (of the subset's,
   scaled to all families, when there is one) and then kept current by BFGS updates
   (safeguarded: an update that would break positive definiteness is skipped); coordinates
   that a bound holds (the gradient pushes them out of the box) stay out of the step;
3. the same on the adaptive Gauss–Hermite objective, whose optimum lies close, starting from
   the Laplace curvature at the Laplace optimum; every step backtracks and stays inside the
   bounds;
4. the Hessian at the optimum and the per-family scores (for the OPG and sandwich
   covariances), of the Laplace objective by default (fast) or of the full objective
   (``hessian="full"``; used anyway when the Laplace one is not negative definite): by
   central differences of the exact gradient, or with more than ``screen_families`` families
   exactly by automatic differentiation (one call instead of 2P, after a longer compilation).

Each objective warm-starts its per-family mode search from the modes of its previous
evaluation, so an evaluation near the last one costs two or three Newton iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import minimize

from latentscale.estimation.init import initial_params
from latentscale.estimation.objective import MarginalLikelihood
from latentscale.estimation.quadrature import QuadratureRule
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
    score_outer: np.ndarray | None = None  # Σ_f s_f s_fᵀ of the per-family scores at theta


def _negated(ml: MarginalLikelihood, counter: list[int]):
    def fun(theta):
        counter[0] += 1
        v, g = ml.value_and_grad(theta)
        if not (np.isfinite(v) and np.all(np.isfinite(g))):
            return np.inf, np.zeros_like(theta)
        return -v, -g

    return fun


def start_points(design: Design, spec: ModelSpec, n_starts: int, seed: int, scale: float = 0.3,
                 base: np.ndarray | None = None) -> list[np.ndarray]:
    """The moment-based start (or ``base``) and ``n_starts - 1`` perturbations of it, normal
    with sd ``scale`` on the unconstrained scale (fixed seed)."""
    if base is None:
        base = pack(initial_params(design, spec), spec)
    rng = np.random.default_rng(seed)
    return [base] + [base + rng.normal(0.0, scale, size=base.shape) for _ in range(n_starts - 1)]


def fit_mle(
    design: Design,
    spec: ModelSpec,
    *,
    points: int | None = None,
    n_starts: int = 3,
    seed: int = 0,
    maxiter: int = 200,
    screen_iter: int = 50,
    gtol: float = 1e-6,
    hessian: str = "laplace",
    screen_families: int = 2000,
    rule: QuadratureRule | None = None,
    progress: Progress | None = None,
    start: np.ndarray | None = None,
    start_scale: float = 0.3,
) -> MLEOutcome:
    """Maximize the marginal log-likelihood; returns the unconstrained optimum and diagnostics.

    ``maxiter`` bounds the quasi-Newton steps of stages 2 and 3 each; ``gtol`` is the
    largest gradient entry accepted as converged in them. With more than ``screen_families``
    families the starts are screened on an evenly spread subset of that many. ``rule``
    overrides the quadrature rule of the final stage (default: by K and ``points``).
    ``start`` (unconstrained θ) replaces the moment-based start; the other starts perturb it
    by normal steps of sd ``start_scale``.
    """
    if hessian not in ("laplace", "full"):
        raise ValueError(f"hessian must be 'laplace' or 'full', got {hessian!r}")
    say = progress or (lambda msg: None)
    laplace = MarginalLikelihood.build(spec, design, points=1)
    full = MarginalLikelihood.build(spec, design, points=points, rule=rule)
    bounds = parameter_bounds(spec)
    lo, hi = np.array(bounds).T
    if start is not None:
        start = np.asarray(start, dtype=float)
        if start.shape != lo.shape or not np.all(np.isfinite(start)):
            raise ValueError(f"start must be {lo.size} finite numbers (the unconstrained parameter vector of "
                             f"this K and benchmark set), got shape {start.shape}")
    starts = [np.clip(x, lo, hi) for x in start_points(design, spec, n_starts, seed, start_scale, start)]
    # The exact (automatic-differentiation) Hessian pays off with many families.
    exact = design.n_families > screen_families

    # Many families: the starts are screened (and the best refined) on an evenly spread
    # subset of them; its optimum is a few Newton steps from the optimum on all of them.
    subset = screen_subset(design, screen_families)
    screen = laplace if subset is None else MarginalLikelihood.build(spec, subset, points=1)
    on = "" if subset is None else f" (on {subset.n_families} of {design.n_families} families)"
    n_eval = [0]
    f_lap = _negated(screen, n_eval)
    results = []
    for s, x0 in enumerate(starts):
        screen.reset()
        if not np.isfinite(f_lap(x0)[0]):
            say(f"start {s + 1}/{n_starts}: not finite, skipped")
            continue
        r = minimize(f_lap, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                     options={"maxiter": screen_iter, "gtol": gtol, "ftol": 1e-13, "maxcor": 30})
        results.append(r)
        say(f"start {s + 1}/{n_starts}: Laplace log-likelihood {-r.fun:.3f}{on} after {r.nit} iterations")
    if not results:
        raise RuntimeError("no starting point gave a finite likelihood; check the data")
    best = min(results, key=lambda r: r.fun)
    iterations = int(sum(r.nit for r in results))
    theta = best.x
    if subset is not None:
        # Curvature of the subset at its optimum (BFGS-refined), scaled to all families: the
        # starting curvature of both stages on all of them.
        say(f"best start: Laplace log-likelihood {-best.fun:.3f}{on}; quasi-Newton steps to its optimum")
        theta, B_sub, n_sub = quasi_newton(screen, theta, fd_hessian(screen, theta), lo, hi, gtol, maxiter)
        iterations += n_sub
        H_start = -(design.n_families / subset.n_families) * B_sub
    else:
        H_start = fd_hessian(laplace, theta)  # differences of the exact gradient; BFGS refines it
    say(f"Laplace: quasi-Newton steps{' on all families' if subset is not None else ''}")
    theta, _, n_lap = quasi_newton(laplace, theta, H_start, lo, hi, gtol, maxiter, ftol=1e-6)
    iterations += n_lap
    ll_lap = laplace.value_and_grad(theta)[0]
    if full.rule.size > 1:
        say(f"Laplace optimum {ll_lap:.3f} ({n_lap} steps); refining with "
            f"{full.rule.size}-node adaptive Gauss–Hermite quadrature")
        if subset is None:
            H_start = fd_hessian(laplace, theta)
        theta, _, n_full = quasi_newton(full, theta, H_start, lo, hi, gtol, maxiter)
        iterations += n_full
    value, grad = full.value_and_grad(theta)
    curvature = full if hessian == "full" else laplace
    H, S = hessian_and_scores(curvature, theta, exact)
    if hessian == "laplace" and full.rule.size > 1 and not _negative_definite_free(H, theta, grad, lo, hi):
        # The Laplace surface can be flat or bent the wrong way in a weakly identified
        # direction where the quadrature objective is not: use the exact Hessian then.
        say("the Laplace Hessian is not negative definite at the optimum; computing the full one")
        H, S = hessian_and_scores(full, theta, exact)
        hessian = "full"
    how = "automatic differentiation" if exact else "differences of the gradient"
    say(f"log-likelihood {value:.3f} ({iterations} iterations in all); Hessian by {how}")
    diagnostics = {
        **convergence_diagnostics(theta, grad, H, lo, hi, parameter_names(spec)),
        "iterations": iterations,
        "hessian_kind": hessian,
        "start_log_likelihoods": [float(-r.fun) for r in results],
        "laplace_log_likelihood": laplace.value(theta),
        "quadrature_nodes": full.rule.size,
    }
    return MLEOutcome(theta=theta, log_likelihood=float(value), diagnostics=diagnostics, hessian=H,
                      score_outer=S.T @ S)


#: A fit is converged when the largest free gradient entry is below this ...
GRAD_TOL = 1e-4
#: ... or when the Newton decrement gᵀ(−H)⁻¹g (twice the gain still to be had) is below this.
DECREMENT_TOL = 1e-6


def convergence_diagnostics(theta, grad, H, lo, hi, names: list[str]) -> dict:
    """Stationarity at a maximum in a box: the gradient without the coordinates held by a bound
    (``at_bounds``: the estimate lies on the edge of the box, typically a correlation near ±1
    or an intercept running off to −∞ for a benchmark whose scores sit at its floor), and the
    Newton decrement in the free coordinates. ``converged`` when the largest free gradient
    entry is below :data:`GRAD_TOL`, or the decrement below :data:`DECREMENT_TOL` (a weakly
    identified direction can keep a gradient entry above 1e-4 with nothing left to gain, as
    lme4's scaled-gradient check allows too). ``hessian_pd``: −H is positive definite on the
    free coordinates."""
    theta, grad = np.asarray(theta, float), np.asarray(grad, float)
    free = free_coordinates(theta, grad, lo, hi)
    g = grad[free]
    info = -np.asarray(H, float)[np.ix_(free, free)]
    pd = bool(g.size == 0 or np.all(np.linalg.eigvalsh((info + info.T) / 2.0) > 0))
    decrement = float(g @ np.linalg.solve(info, g)) if pd and g.size else float("nan")
    grad_max = float(np.max(np.abs(g))) if g.size else 0.0
    return {
        "grad_norm": float(np.linalg.norm(g)),
        "grad_max": grad_max,
        "newton_decrement": decrement,
        "converged": bool(grad_max < GRAD_TOL or (pd and decrement < DECREMENT_TOL)),
        "hessian_pd": pd,
        "at_bounds": [n for n, f in zip(names, free) if not f],
    }


def fd_hessian(ml: MarginalLikelihood, theta: np.ndarray, rel_step: float = 1e-4, with_scores: bool = False):
    """Hessian of ℓ by central differences of its exact gradient, symmetrized.

    Steps h_i = ``rel_step`` · max(1, |θ_i|): the truncation error (h²) and the rounding error
    of the gradient (~1e-12/h) are then both far below what standard errors need. With
    ``with_scores`` also returns the (F, P) per-family scores, by central differences of the
    per-family log-likelihoods at the same points (no extra evaluations).
    """
    theta = np.asarray(theta, dtype=float)
    n = theta.size
    h = rel_step * np.maximum(1.0, np.abs(theta))
    H = np.empty((n, n))
    S = np.empty((ml.design.n_families, n)) if with_scores else None
    for i in range(n):
        e = np.zeros(n)
        e[i] = h[i]
        _, g_plus, f_plus = ml.value_grad_families(theta + e)
        _, g_minus, f_minus = ml.value_grad_families(theta - e)
        H[:, i] = (g_plus - g_minus) / (2.0 * h[i])
        if with_scores:
            S[:, i] = (f_plus - f_minus) / (2.0 * h[i])
    H = (H + H.T) / 2.0
    return (H, S) if with_scores else H


def hessian_and_scores(ml: MarginalLikelihood, theta: np.ndarray, exact: bool):
    """The Hessian of ℓ and the per-family scores at ``theta``: exact (automatic
    differentiation: one call, but a long compilation) or by differences of the gradient
    (2 × P gradient calls, nothing more to compile)."""
    if exact:
        return ml.hessian_and_scores(theta)  # converges the modes at theta itself
    ml.per_family(theta)  # modes converged at theta: the differences start from them
    return fd_hessian(ml, theta, with_scores=True)


def fd_family_scores(ml: MarginalLikelihood, theta: np.ndarray, rel_step: float = 1e-4) -> np.ndarray:
    """(F, P) gradients of each family's log-likelihood, by central differences of the values."""
    return fd_hessian(ml, theta, rel_step, with_scores=True)[1]


def screen_subset(design: Design, n: int) -> Design | None:
    """An evenly spread subset of ``n`` families (every k-th), or None when there are not more."""
    if design.n_families <= n:
        return None
    return design.subset_families(np.linspace(0, design.n_families - 1, n).round().astype(int))


def free_coordinates(theta: np.ndarray, grad: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Coordinates not held by a bound: a coordinate on (or within a hair of) its lower
    bound with the gradient pointing below it, or on its upper bound with the gradient
    pointing above it, is held (the active set of projected Newton methods)."""
    eps = 1e-7 * np.maximum(hi - lo, 1.0)
    held = ((theta <= lo + eps) & (grad < 0)) | ((theta >= hi - eps) & (grad > 0))
    return ~held


def projected_gradient(theta: np.ndarray, grad: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The gradient with the entries of held coordinates (see :func:`free_coordinates`) zeroed:
    its size is the stationarity measure of a maximum in a box."""
    return np.where(free_coordinates(theta, grad, lo, hi), grad, 0.0)


def quasi_newton(ml: MarginalLikelihood, theta, H0, lo, hi, gtol: float, max_iter: int, ftol: float | None = None,
                 trace: Progress | None = None):
    """Maximize ``ml`` in the box [lo, hi] by projected quasi-Newton steps.

    The curvature starts at ``-H0`` and is kept current by BFGS updates (an update that would
    break positive definiteness is skipped). Coordinates held by a bound (the gradient pushes
    them out of the box) are left where they are, and the Newton step is taken in the others
    with their block of the curvature (Bertsekas' projected Newton method): projecting a full
    Newton step instead can point downhill when the curvature couples a held coordinate with
    free ones. Each step is backtracked (1, 1/2, 1/4, … as long as ℓ does not fall) along the
    projection of the step onto the box. When no step length gains, the curvature is reset to
    its diagonal once before giving up. Stops when the largest free gradient entry is below
    ``gtol``, or when both the predicted gain of the step (half the Newton decrement) and the
    realized gain are below ``ftol`` nats: ℓ cannot be raised by a meaningful amount. By
    default ``ftol`` is 1e-9, or 1e-14 |ℓ| where that is larger: the rounding noise of a sum
    over millions of scores (a 100,000-family ℓ of 1.7e6 moves by ~2e-8 between evaluations
    at the same optimum, which a fixed 1e-9 would keep chasing).

    Returns the point, the final (positive-definite) curvature matrix and the number of steps.
    """
    B = _positive_definite(-np.asarray(H0))
    value, grad = ml.value_and_grad(theta)
    steps, reset = 0, False
    for _ in range(max_iter):
        free = free_coordinates(theta, grad, lo, hi)
        if not free.any() or np.max(np.abs(grad[free])) < gtol:
            break
        step = np.zeros_like(theta)
        step[free] = np.linalg.solve(B[np.ix_(free, free)], grad[free])
        predicted = 0.5 * float(grad[free] @ step[free])
        t, accepted = 1.0, False
        for _ in range(24):
            cand = np.clip(theta + t * step, lo, hi)
            v, g = ml.value_and_grad(cand)
            if np.isfinite(v) and np.all(np.isfinite(g)) and v >= value - 1e-12 * abs(value):
                accepted = True
                break
            t *= 0.5
        steps += 1
        if not accepted:
            if reset:
                break
            B, reset = np.diag(np.diag(B)), True  # start the curvature afresh from its diagonal
            continue
        s_vec, y_vec = cand - theta, grad - g  # y: change in the gradient of −ℓ
        sy = float(s_vec @ y_vec)
        Bs = B @ s_vec
        sBs = float(s_vec @ Bs)
        if sy > 1e-10 * np.linalg.norm(s_vec) * np.linalg.norm(y_vec) and sBs > 0:
            B = B - np.outer(Bs, Bs) / sBs + np.outer(y_vec, y_vec) / sy
        gain = v - value
        theta, value, grad, reset = cand, v, g, False
        if trace is not None:
            trace(f"step {steps}: log-likelihood {value:.6f} (+{gain:.2e}, predicted {predicted:.2e}, "
                  f"step length {t:g}), largest free gradient entry {np.max(np.abs(projected_gradient(theta, grad, lo, hi))):.2e}")
        tol = ftol if ftol is not None else max(1e-9, 1e-14 * abs(value))
        if predicted < tol and gain < tol:
            break
    return theta, B, steps


def _negative_definite_free(H, theta, grad, lo, hi) -> bool:
    free = free_coordinates(theta, grad, lo, hi)
    block = -np.asarray(H)[np.ix_(free, free)]
    return bool(np.all(np.linalg.eigvalsh((block + block.T) / 2.0) > 0))


def _positive_definite(A: np.ndarray) -> np.ndarray:
    """A symmetric matrix with its eigenvalues floored to keep it safely positive definite."""
    w, V = np.linalg.eigh((A + A.T) / 2.0)
    w = np.maximum(w, 1e-8 * max(w.max(), 1.0))
    return (V * w) @ V.T
