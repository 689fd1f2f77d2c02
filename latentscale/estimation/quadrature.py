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
    """Nodes z_q (Q, K) and log |weights| of a rule for E[g(z)], z ~ N(0, I_K); ``signs`` of
    the weights (±1) for rules with negative weights (sparse grids), else None."""

    nodes: np.ndarray
    log_weights: np.ndarray
    signs: np.ndarray | None = None

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


def sparse_rule(K: int, level: int = 3) -> QuadratureRule:
    """The Smolyak rule of :func:`smolyak_rule` as a :class:`QuadratureRule`."""
    nodes, w = smolyak_rule(K, level)
    return QuadratureRule(nodes=nodes, log_weights=np.log(np.abs(w)), signs=np.sign(w))


def default_points(K: int) -> int:
    """Nodes per dimension of the product rule by default: more in low dimension."""
    return {1: 15, 2: 9, 3: 6, 4: 4}.get(K, 3)


#: From this K on, the default rule is a sparse grid (the product grid has 3^K nodes or more).
SPARSE_FROM_K = 5


def default_rule(K: int) -> QuadratureRule:
    """The default rule: the product Gauss–Hermite rule with :func:`default_points` per
    dimension up to K = 4 (256 nodes), the Smolyak sparse grid of degree 5 beyond (71 nodes at
    K = 5, 161 at K = 8, instead of 3^K)."""
    return gauss_hermite_rule(K, default_points(K)) if K < SPARSE_FROM_K else sparse_rule(K, 3)


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


def family_modes(params, arrays, floors, n_families: int, n_benchmarks: int, max_iter: int = 60,
                 tol: float = 1e-10, max_step: float = 2.0, tracked_steps: int = 1, alpha0=None,
                 search: bool = True):
    """Posterior modes α̂_f (F, K) and the curvature there (F, K, K): the Fisher information of
    the family's scores plus Σ⁻¹, positive definite and smooth in the parameters (the
    quadrature's scale; any smooth positive-definite scale gives a valid rule).

    Damped Newton iterations, vectorized over families, run without gradient tracking from
    ``alpha0`` (a warm start, e.g. the modes at nearby parameters; default 0) until every
    family's Newton step is below ``tol``. Each iteration tries one step per family: a family
    whose step fails the sufficient-increase test keeps its point and halves its step length
    in the next iteration (backtracking spread over iterations, so an iteration costs one
    derivative and one density evaluation per score). A family stops when its step is below
    ``tol`` or its predicted gain is within rounding of its log joint. Then ``tracked_steps`` plain Newton
    steps from the converged point carry the exact derivatives of the mode (implicit function
    theorem; two steps keep second derivatives exact as well, since Newton's error is
    quadratic: use two where the objective is differentiated twice). ``search=False`` skips
    the search: ``alpha0`` must then already be the converged modes (a smaller program to
    differentiate, e.g. for exact Hessians).
    """
    K = params["loadings"].shape[0]
    fam = arrays["obs_family"]
    log_y, log1m_y = arrays["log_y"], arrays["log1m_y"]
    p_const = jax.lax.stop_gradient(params)
    c_obs, log_phi_obs, lam_c = obs_terms(p_const, arrays, floors)
    eta0_c = fixed_eta(p_const, arrays)

    def newton_step(p, alpha, lam_p, eta0):
        eta = eta0 + jnp.sum(lam_p * alpha[fam], axis=1)
        H, g, prec = _neg_hessians(p, arrays, floors, eta, n_families, n_benchmarks)
        grad = g - alpha @ prec
        return sm.cho_solve(sm.cholesky(H), grad), grad

    prec_c = jax.scipy.linalg.cho_solve((p_const["corr_chol"], True), jnp.eye(K))

    def joint(alpha):  # log p(y_f | α_f) + log N(α_f; 0, Σ) up to a constant, (F,)
        eta = eta0_c + jnp.sum(lam_c * alpha[fam], axis=1)
        ll = beta_logpdf(eta, log_y, log1m_y, c_obs, log_phi_obs)
        ll_fam = jax.ops.segment_sum(ll, fam, num_segments=n_families)
        return ll_fam - 0.5 * jnp.einsum("fk,kl,fl->f", alpha, prec_c, alpha)

    def cond(state):
        i, _, _, _, active = state
        return (i < max_iter) & jnp.any(active)

    def body(state):
        i, alpha, j0, t, _ = state
        step, grad = newton_step(p_const, alpha, lam_c, eta0_c)
        norm = jnp.sqrt(jnp.sum(step**2, axis=1))
        step = step * jnp.minimum(1.0, max_step / jnp.maximum(norm, 1e-300))[:, None]
        trial = alpha + t[:, None] * step
        j1 = joint(trial)
        slope = jnp.sum(grad * step, axis=1)
        ok = (j1 >= j0 + 1e-4 * t * slope) & jnp.isfinite(j1)
        alpha = jnp.where(ok[:, None], trial, alpha)
        j0 = jnp.where(ok, j1, j0)
        t = jnp.where(ok, 1.0, 0.5 * t)
        # Converged: a step below ``tol``, or a Newton decrement (the predicted gain) within
        # rounding of the log joint, where the sufficient-increase test is only noise.
        active = (norm > tol) & (slope > 1e-13 * (1.0 + jnp.abs(j0))) & (t > 1e-3)
        return i + 1, alpha, j0, t, active

    a0 = jnp.zeros((n_families, K)) if alpha0 is None else jax.lax.stop_gradient(jnp.asarray(alpha0))
    ones = jnp.ones(n_families)
    if search:
        _, alpha, _, _, _ = jax.lax.while_loop(
            cond, body, (jnp.asarray(0), a0, joint(a0), ones, jnp.ones(n_families, dtype=bool)))
    else:
        alpha = a0
    alpha = jax.lax.stop_gradient(alpha)
    _, _, lam_obs = obs_terms(params, arrays, floors)
    eta0 = fixed_eta(params, arrays)
    for _ in range(tracked_steps):  # plain Newton steps at the converged mode: smooth in the parameters
        alpha = alpha + newton_step(params, alpha, lam_obs, eta0)[0]
    eta = eta0 + jnp.sum(lam_obs * alpha[fam], axis=1)
    H, _, _ = _neg_hessians(params, arrays, floors, eta, n_families, n_benchmarks, fisher_only=True)
    return alpha, H


def family_nodes(params, arrays, floors, nodes, log_weights, n_families: int, n_benchmarks: int,
                 alpha0=None, tracked_steps: int = 1, search: bool = True):
    """The adaptive rule of every family: its centre (the posterior mode, F × K), nodes α_fq
    (F, Q, K) and log terms (F, Q) whose log-sum-exp, plus the log-determinant (F,) of the node
    map, is log p(y_f). Normalized, the terms are the posterior weights of the nodes.
    ``alpha0``, ``tracked_steps`` and ``search`` as in :func:`family_modes`."""
    alpha, H = family_modes(params, arrays, floors, n_families, n_benchmarks, alpha0=alpha0,
                            tracked_steps=tracked_steps, search=search)
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


def family_loglik(params, arrays, floors, nodes, log_weights, n_families: int, n_benchmarks: int,
                  alpha0=None, tracked_steps: int = 1, search: bool = True, signs=None):
    """Adaptive Gauss–Hermite log marginal likelihood of each family (F,), and the modes (F, K).
    ``signs``: of the rule's weights, for rules with negative weights (sparse grids)."""
    mode, _, terms, log_det_S = family_nodes(params, arrays, floors, nodes, log_weights, n_families, n_benchmarks,
                                             alpha0, tracked_steps, search)
    b = None if signs is None else signs[None, :]
    return log_det_S + jax.scipy.special.logsumexp(terms, axis=1, b=b), mode


@partial(jax.jit, static_argnames=("spec", "n_families"))
def posterior_rule(theta, arrays, nodes, log_weights, spec, n_families: int):
    """At the unconstrained parameters ``theta``: every family's posterior mode (F, K), the
    adaptive nodes α_fq (F, Q, K) and their normalized posterior weights (F, Q)."""
    params = unpack(theta, spec)
    mode, alpha_q, terms, _ = family_nodes(params, arrays, jnp.asarray(spec.floors), nodes, log_weights,
                                           n_families, spec.J)
    return mode, alpha_q, jax.nn.softmax(terms, axis=1)


def smolyak_rule(K: int, level: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse-grid (Smolyak) rule for E[g(z)], z ~ N(0, I_K), from Gauss–Hermite rules with
    1, 3, 5, … nodes: exact for polynomials of total degree 2·level − 1. Returns nodes (Q, K)
    and weights (Q,), some negative, summing to 1."""
    from itertools import product as iproduct
    from math import comb

    one_d = []
    for i in range(1, level + 1):
        x, w = np.polynomial.hermite_e.hermegauss(2 * i - 1)
        one_d.append((x, w / w.sum()))
    q = level + K - 1
    acc: dict[tuple, float] = {}
    for idx in iproduct(range(1, level + 1), repeat=K):
        s = sum(idx)
        if not max(K, q - K + 1) <= s <= q:
            continue
        coef = (-1) ** (q - s) * comb(K - 1, q - s)
        grids = [one_d[i - 1] for i in idx]
        for combo in iproduct(*[range(len(g[0])) for g in grids]):
            node = tuple(round(float(grids[d][0][c]), 12) for d, c in enumerate(combo))
            w = coef * float(np.prod([grids[d][1][c] for d, c in enumerate(combo)]))
            acc[node] = acc.get(node, 0.0) + w
    nodes = np.array([n for n, w in acc.items() if abs(w) > 1e-15])
    weights = np.array([w for w in acc.values() if abs(w) > 1e-15])
    return nodes, weights
