"""Marginal likelihood by adaptive Gauss–Hermite quadrature centred at each family's posterior mode.

For family f the integral ∫ p(y_f | α) N(α; 0, Σ) dα is computed by (1) Newton's method for the
posterior mode α̂_f, vectorized over families, (2) the Cholesky factor R_f of the negative Hessian
of the log joint at α̂_f, and (3) a Gauss–Hermite product rule on α = α̂_f + R_f^{-T} z. With one
node this is the Laplace approximation. Every step is a differentiable JAX function with a fixed
number of iterations, so gradients of the approximated log-likelihood are exact and the value is
deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from latentscale.estimation import smallmat as sm
from latentscale.model.params import unpack
from latentscale.model.likelihood import (
    LOG_2PI,
    beta_eta_derivatives,
    beta_logpdf,
    family_sums,
    fixed_eta,
    log_prior,
    obs_terms,
)


@dataclass(frozen=True)
class QuadratureRule:
    """Nodes z_q (Q, K) and log weights of a rule for E[g(z)], z ~ N(0, I_K)."""

    nodes: np.ndarray
    log_weights: np.ndarray

    @property
    def size(self) -> int:
        return int(self.nodes.shape[0])


def gauss_hermite_rule(K: int, points: int, prune: float = 0.0) -> QuadratureRule:
    """Product Gauss–Hermite rule with ``points`` nodes per dimension.

    ``prune`` drops product nodes whose weight is below ``prune`` × the largest weight
    (the dropped mass is renormalized away); 0 keeps the full grid.
    """
    x, w = np.polynomial.hermite_e.hermegauss(points)
    w = w / w.sum()
    grids = np.meshgrid(*([x] * K), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    logw = np.sum(np.log(np.stack(np.meshgrid(*([w] * K), indexing="ij"), -1).reshape(-1, K)), axis=1)
    if prune > 0:
        keep = logw >= logw.max() + np.log(prune)
        nodes, logw = nodes[keep], logw[keep]
        logw = logw - np.logaddexp.reduce(logw)
    return QuadratureRule(nodes=nodes, log_weights=logw)


def default_points(K: int) -> int:
    """Nodes per dimension by default: more in low dimension, fewer where the grid explodes."""
    return {1: 15, 2: 9, 3: 6, 4: 4, 5: 3}.get(K, 3)


def _neg_hessians(params, arrays, floors, eta, n_families, n_benchmarks, fisher_only=False):
    """Per-family negative Hessian of the log joint in α (the true one where it is positive
    definite, else the Fisher information) and the data part of the gradient."""
    c, log_phi, _ = obs_terms(params, arrays, floors)
    d1, d2, fisher = beta_eta_derivatives(eta, arrays["log_y"], arrays["log1m_y"], c, log_phi)
    lam = params["loadings"]  # (K, J)
    G = family_sums(d1, arrays, n_families, n_benchmarks)  # (F, J)
    Hs = family_sums(-d2, arrays, n_families, n_benchmarks)
    Fs = family_sums(fisher, arrays, n_families, n_benchmarks)
    L = params["corr_chol"]
    prec = jax.scipy.linalg.cho_solve((L, True), jnp.eye(L.shape[0]))
    H_true = jnp.einsum("kj,fj,lj->fkl", lam, Hs, lam) + prec
    H_fish = jnp.einsum("kj,fj,lj->fkl", lam, Fs, lam) + prec
    if fisher_only:
        return H_fish, G @ lam.T, prec
    # A failed Cholesky (NaN) marks an indefinite Hessian; decided without gradient.
    trial = sm.cholesky(jax.lax.stop_gradient(H_true))
    ok = jnp.all(jnp.diagonal(trial, axis1=1, axis2=2) > 1e-6, axis=1)  # NaN compares False
    H = jnp.where(ok[:, None, None], H_true, H_fish)
    return H, G @ lam.T, prec


#: Step sizes tried by the mode finder's line search, largest first; the last (0) always passes.
_STEP_SIZES = np.array([1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.0078125, 0.001953125, 0.0])


def family_modes(params, arrays, floors, n_families: int, n_benchmarks: int, max_iter: int = 50,
                 tol: float = 1e-10, max_step: float = 2.0, tracked_steps: int = 1):
    """Posterior modes α̂_f (F, K) and the curvature there (F, K, K): the Fisher information of
    the family's scores plus Σ⁻¹, positive definite and smooth in the parameters (the
    quadrature's scale; any smooth positive-definite scale gives a valid rule).

    Damped Newton iterations run without gradient tracking until the largest step is below
    ``tol``; then two tracked Newton steps from the converged point carry the exact
    derivatives of the mode (implicit function theorem; two steps keep second derivatives
    exact as well, since Newton's error is quadratic).
    """
    K = params["loadings"].shape[0]
    _, _, lam_obs = obs_terms(params, arrays, floors)
    fam = arrays["obs_family"]

    log_y, log1m_y = arrays["log_y"], arrays["log1m_y"]
    c_obs, log_phi_obs, _ = obs_terms(params, arrays, floors)
    c_obs, log_phi_obs = jax.lax.stop_gradient(c_obs), jax.lax.stop_gradient(log_phi_obs)

    def newton(p, alpha, damped=True):
        lam_p = obs_terms(p, arrays, floors)[2]
        eta = fixed_eta(p, arrays) + jnp.sum(lam_p * alpha[fam], axis=1)
        H, g, prec = _neg_hessians(p, arrays, floors, eta, n_families, n_benchmarks)
        grad = g - alpha @ prec
        step = sm.cho_solve(sm.cholesky(H), grad)
        if not damped:  # the tracked steps at the converged mode: plain Newton, smooth in p
            return alpha + step, None
        # Backtracking line search on the log joint, vectorized over families and step sizes:
        # η is linear along the step, the prior quadratic.
        norm = jnp.sqrt(jnp.sum(step**2, axis=1, keepdims=True))
        step = step * jnp.minimum(1.0, max_step / jnp.maximum(norm, 1e-300))
        t = jnp.asarray(_STEP_SIZES)  # (S,)
        d_eta = jnp.sum(lam_p * step[fam], axis=1)  # (n_obs,)
        ll = beta_logpdf(eta[:, None] + d_eta[:, None] * t[None, :], log_y[:, None], log1m_y[:, None],
                         c_obs[:, None], log_phi_obs[:, None])
        ll_fam = jax.ops.segment_sum(ll, fam, num_segments=n_families)  # (F, S)
        a_t = alpha[:, None, :] + t[None, :, None] * step[:, None, :]  # (F, S, K)
        quad = jnp.einsum("fsk,kl,fsl->fs", a_t, prec, a_t)
        joint = ll_fam - 0.5 * quad
        joint0 = joint[:, -1]  # t = 0
        slope = jnp.sum(grad * step, axis=1)  # > 0: an ascent direction
        ok = joint >= joint0[:, None] + 1e-4 * t[None, :] * slope[:, None]
        ok = ok & jnp.isfinite(joint)
        first = jnp.argmax(ok, axis=1)  # largest acceptable step (t decreasing; t = 0 always ok)
        t_f = t[first]
        moved = t_f[:, None] * step
        return alpha + moved, jnp.sqrt(jnp.sum(moved**2, axis=1))

    p_const = jax.lax.stop_gradient(params)

    def cond(state):
        i, _, size = state
        return (i < max_iter) & (size > tol)

    def body(state):
        i, alpha, _ = state
        alpha, norm = newton(p_const, alpha)
        return i + 1, alpha, jnp.max(norm)

    _, alpha, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0), jnp.zeros((n_families, K)), jnp.asarray(jnp.inf)))
    alpha = jax.lax.stop_gradient(alpha)
    for _ in range(tracked_steps):
        alpha = newton(params, alpha, damped=False)[0]
    eta = fixed_eta(params, arrays) + jnp.sum(lam_obs * alpha[fam], axis=1)
    H, _, _ = _neg_hessians(params, arrays, floors, eta, n_families, n_benchmarks, fisher_only=True)
    return alpha, H


def family_nodes(params, arrays, floors, nodes, log_weights, n_families: int, n_benchmarks: int):
    """The adaptive rule of every family: its centre (the posterior mode, F × K), nodes α_fq
    (F, Q, K) and log terms (F, Q) whose log-sum-exp, plus the log-determinant (F,) of the node
    map, is log p(y_f). Normalized, the terms are the posterior weights of the nodes."""
    alpha, H = family_modes(params, arrays, floors, n_families, n_benchmarks)
    R = sm.cholesky(H)  # H = R Rᵀ
    K = R.shape[-1]
    S = sm.inv_lower_t(R)  # S Sᵀ = H⁻¹
    c, log_phi, lam_obs = obs_terms(params, arrays, floors)
    fam = arrays["obs_family"]
    eta_hat = fixed_eta(params, arrays) + jnp.sum(lam_obs * alpha[fam], axis=1)
    U = jnp.einsum("fkl,kj->fjl", S, params["loadings"])  # (F, J, K): S_fᵀ λ_j
    u_obs = U[fam, arrays["obs_bench"]]  # (n_obs, K)
    eta = eta_hat[:, None] + u_obs @ nodes.T  # (n_obs, Q)
    ll = beta_logpdf(eta, arrays["log_y"][:, None], arrays["log1m_y"][:, None], c[:, None], log_phi[:, None])
    ll_fam = jax.ops.segment_sum(ll, fam, num_segments=n_families)  # (F, Q)
    alpha_q = alpha[:, None, :] + jnp.einsum("fkl,ql->fqk", S, nodes)  # (F, Q, K)
    lp = log_prior(alpha_q, params["corr_chol"])  # (F, Q)
    log_phi_z = -0.5 * jnp.sum(nodes**2, axis=1) - 0.5 * K * LOG_2PI  # (Q,)
    log_det_S = -jnp.sum(jnp.log(jnp.diagonal(R, axis1=1, axis2=2)), axis=1)
    terms = log_weights[None, :] + ll_fam + lp - log_phi_z[None, :]
    return alpha, alpha_q, terms, log_det_S


def family_loglik(params, arrays, floors, nodes, log_weights, n_families: int, n_benchmarks: int):
    """Adaptive Gauss–Hermite log marginal likelihood of each family, shape (F,)."""
    _, _, terms, log_det_S = family_nodes(params, arrays, floors, nodes, log_weights, n_families, n_benchmarks)
    return log_det_S + jax.scipy.special.logsumexp(terms, axis=1)


@partial(jax.jit, static_argnames=("spec", "n_families"))
def posterior_rule(theta, arrays, nodes, log_weights, spec, n_families: int):
    """At the unconstrained parameters ``theta``: every family's posterior mode (F, K), the
    adaptive nodes α_fq (F, Q, K) and their normalized posterior weights (F, Q)."""
    params = unpack(theta, spec)
    mode, alpha_q, terms, _ = family_nodes(params, arrays, jnp.asarray(spec.floors), nodes, log_weights,
                                           n_families, spec.J)
    return mode, alpha_q, jax.nn.softmax(terms, axis=1)
