"""Maximization in a box: projected quasi-Newton steps, stationarity and convergence.

The optimizers see only the unconstrained vector θ (constraints live in the parameter blocks);
the box keeps runaway line searches in check, and a coordinate held by it is an estimate on the
boundary of the parameter space, reported as such.
"""

from __future__ import annotations

import numpy as np

#: A fit is converged when the largest free gradient entry is below this ...
GRAD_TOL = 1e-4
#: ... or when the Newton decrement gᵀ(−H)⁻¹g (twice the gain still to be had) is below this.
DECREMENT_TOL = 1e-6


def difference_steps(theta: np.ndarray, rel_step: float) -> np.ndarray:
    """Steps of finite differences in θ: h_i = ``rel_step`` · max(1, |θ_i|) (relative to large
    coordinates, absolute near 0), the one rule of the Hessians, the modes' derivatives and the
    delta-method gradients."""
    return rel_step * np.maximum(1.0, np.abs(np.asarray(theta, dtype=float)))


def free_coordinates(theta: np.ndarray, grad: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Coordinates not held by a bound: a coordinate on (or within a hair of) its lower bound with
    the gradient pointing below it, or on its upper bound with the gradient pointing above it, is
    held (the active set of projected Newton methods)."""
    eps = 1e-7 * np.maximum(hi - lo, 1.0)
    held = ((theta <= lo + eps) & (grad < 0)) | ((theta >= hi - eps) & (grad > 0))
    return ~held


def convergence_diagnostics(theta, grad, H, lo, hi, names: list[str]) -> dict:
    """Stationarity at a maximum in a box: the gradient without the coordinates held by a bound
    (``at_bounds``: the estimate lies on the edge of the box, typically a correlation near ±1 or
    an intercept running off to −∞ for a benchmark whose scores sit at its floor), and the Newton
    decrement in the free coordinates. ``converged`` when the largest free gradient entry is below
    :data:`GRAD_TOL`, or the decrement below :data:`DECREMENT_TOL` (a weakly identified direction
    can keep a gradient entry above 1e-4 with nothing left to gain, as lme4's scaled-gradient check
    allows too). ``hessian_pd``: −H is positive definite on the free coordinates."""
    theta, grad = np.asarray(theta, float), np.asarray(grad, float)
    free = free_coordinates(theta, grad, lo, hi)
    g = grad[free]
    info = -np.asarray(H, float)[np.ix_(free, free)]
    pd = bool(g.size == 0 or (np.all(np.isfinite(info)) and np.all(np.linalg.eigvalsh((info + info.T) / 2.0) > 0)))
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


def negative_definite_free(H, theta, grad, lo, hi) -> bool:
    """Whether the Hessian is negative definite on the coordinates not held by a bound."""
    free = free_coordinates(theta, grad, lo, hi)
    block = -np.asarray(H)[np.ix_(free, free)]
    return bool(np.all(np.isfinite(block)) and np.all(np.linalg.eigvalsh((block + block.T) / 2.0) > 0))


def positive_definite(A: np.ndarray) -> np.ndarray:
    """A symmetric matrix with its eigenvalues floored to keep it safely positive definite."""
    w, V = np.linalg.eigh((A + A.T) / 2.0)
    w = np.maximum(w, 1e-8 * max(w.max(), 1.0))
    return (V * w) @ V.T


def quasi_newton(ml, theta, H0, lo, hi, gtol: float, max_iter: int, ftol: float | None = None):
    """Maximize ``ml`` (anything with ``loglike_and_score(θ)``) in the box [lo, hi] by projected
    quasi-Newton steps.

    The curvature starts at ``-H0`` and is kept current by BFGS updates (an update that would
    break positive definiteness is skipped). Coordinates held by a bound (the gradient pushes them
    out of the box) are left where they are, and the Newton step is taken in the others with their
    block of the curvature (Bertsekas' projected Newton method): projecting a full Newton step
    instead can point downhill when the curvature couples a held coordinate with free ones. Each
    step is backtracked along its projection onto the box until ℓ does not fall, each trial
    shrinking the length by :func:`backtrack_factor` (quadratic interpolation, 0.1–0.5). When no step length gains, the curvature is reset to its diagonal once
    before giving up. Stops when the largest free gradient entry is below ``gtol``, or when both
    the predicted gain of the step (half the Newton decrement) and the realized gain are below
    ``ftol`` nats. By default ``ftol`` is 1e-9, or 1e-14 |ℓ| where that is larger: the rounding
    noise of a sum over millions of scores.

    Returns the point, the final (positive-definite) curvature matrix and the number of steps.
    """
    B = positive_definite(-np.asarray(H0))
    value, grad = ml.loglike_and_score(theta)
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
            v, g = ml.loglike_and_score(cand)
            if np.isfinite(v) and np.all(np.isfinite(g)) and v >= value - 1e-12 * abs(value):
                accepted = True
                break
            t *= backtrack_factor(value, grad, cand - theta, v)
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
        tol = ftol if ftol is not None else max(1e-9, 1e-14 * abs(value))
        if predicted < tol and gain < tol:
            break
    return theta, B, steps


def backtrack_factor(value: float, grad: np.ndarray, s: np.ndarray, v: float) -> float:
    """The factor by which a rejected step length shrinks: the maximizer of the quadratic in the
    step that matches ℓ and its slope gᵀs at the start and the rejected value ``v`` at its end
    (Nocedal & Wright 2006, §3.5), safeguarded to [0.1, 0.5]; 0.5 when ``v`` is not finite or the
    quadratic does not bend down. A step far too long for the curvature (a weakly identified
    direction) then shrinks in one or two trials instead of halving five or six times."""
    slope = float(grad @ s)
    bend = v - value - slope
    if not (np.isfinite(v) and slope > 0 and bend < 0):
        return 0.5
    return float(np.clip(-slope / (2.0 * bend), 0.1, 0.5))


#: How far above the largest |ℓ| seen a failed evaluation's −ℓ is put for L-BFGS-B (see :func:`negated`).
FAILED_GAP = 1e10


def negated(ml, counter: list[int] | None = None):
    """(−ℓ, −gradient) of ``ml`` for scipy's minimizers. A non-finite value (a trial point where the
    likelihood fails) becomes a large finite one, :data:`FAILED_GAP` above the largest |ℓ| seen,
    with a zero gradient: SciPy's L-BFGS-B line search, given +inf at its first trial, returned to
    the start and stopped the run as converged (`lvf-paper` K = 8: one of three screening starts
    left after one iteration at ℓ = 184.5, against 3148.3 when it runs), while a finite value makes
    it shrink the step."""
    worst = [0.0]

    def fun(theta):
        if counter is not None:
            counter[0] += 1
        v, g = ml.loglike_and_score(theta)
        if not (np.isfinite(v) and np.all(np.isfinite(g))):
            return worst[0] + FAILED_GAP, np.zeros_like(theta)
        worst[0] = max(worst[0], abs(float(v)))
        return -v, -g

    return fun


def projected_gradient(theta: np.ndarray, grad: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The gradient with the entries of held coordinates (see :func:`free_coordinates`) zeroed: its
    size is the stationarity measure of a maximum in a box."""
    return np.where(free_coordinates(theta, grad, lo, hi), grad, 0.0)
