"""Adaptive quadrature of the family integrals: JAX kernels, vectorized over families.

For family f the integral ∫ p(y_f | α) N(α; 0, Σ) dα is computed by

1. :func:`converge_modes`: Newton's method for the posterior mode α̂_f, run without gradient
   tracking (a compiled program of its own, shared by every rule);
2. :func:`adaptive_terms`: a Newton step from α̂_f that carries the exact derivatives of the mode
   (implicit function theorem), the Cholesky factor R_f of the scale H_f (the Fisher information of
   the family's scores at the mode plus Σ⁻¹: positive definite and smooth in the parameters), and
   the rule's nodes placed at α = α̂_f + R_f^{-T} z. The log of the integral is the (signed)
   log-sum-exp of the terms plus the log-determinant of the map. With one node this is the
   Laplace approximation.

Every step has a fixed structure, so the approximated log-likelihood is deterministic and its
gradient exact. The small K × K systems of the mode search are unrolled up to K = 4 (:mod:`.smallmat`,
fast inside the loop) and LAPACK's beyond (the unrolled code, and its compilation, grow as K³); the
rule's own factorizations use LAPACK's batched routines (smaller programs, shorter compilation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from latentscale.estimation import smallmat as sm
from latentscale.estimation.residual import converge_joint_modes, residual_terms
from latentscale.model.observation import (
    LOG_2PI,
    beta_eta_derivatives,
    beta_logpdf,
    expand,
    family_sums,
    fixed_eta,
    log_prior,
    obs_terms,
)


def _curvatures(params, arrays, floors, eta, n_families, n_benchmarks, bound):
    """Per-family data gradient in α (F, K), the true negative Hessian of the log joint and the
    Fisher scale (F, K, K), and Σ⁻¹."""
    c, log_phi, _, kappa = obs_terms(params, arrays, floors)
    d1, d2, fisher = beta_eta_derivatives(eta, arrays["log_y"], arrays["log1m_y"], c, log_phi, bound, kappa)
    lam = params["loadings"]  # (K, J)
    G = family_sums(d1, arrays, n_families, n_benchmarks)  # (F, J)
    Hs = family_sums(-d2, arrays, n_families, n_benchmarks)
    Fs = family_sums(fisher, arrays, n_families, n_benchmarks)
    L = params["corr"]
    K = L.shape[0]
    prec = jax.scipy.linalg.cho_solve((L, True), jnp.eye(K, dtype=L.dtype))
    H_true = jnp.einsum("kj,fj,lj->fkl", lam, Hs, lam) + prec
    H_fish = jnp.einsum("kj,fj,lj->fkl", lam, Fs, lam) + prec
    return G @ lam.T, H_true, H_fish, prec


def _fisher_scale(params, arrays, floors, eta, n_families, n_benchmarks, bound):
    """The rule's scale H_f: the Fisher information of the family's scores at η plus Σ⁻¹."""
    c, log_phi, _, kappa = obs_terms(params, arrays, floors)
    _, _, fisher = beta_eta_derivatives(eta, arrays["log_y"], arrays["log1m_y"], c, log_phi, bound, kappa)
    Fs = family_sums(fisher, arrays, n_families, n_benchmarks)
    lam = params["loadings"]
    L = params["corr"]
    prec = jax.scipy.linalg.cho_solve((L, True), jnp.eye(L.shape[0], dtype=L.dtype))
    return jnp.einsum("kj,fj,lj->fkl", lam, Fs, lam) + prec


def _pd_choice(H_true, H_fish):
    """The true negative Hessian where it is positive definite, else the Fisher scale (decided
    without gradient: a failed Cholesky gives NaN, which compares False)."""
    trial = sm.cholesky(jax.lax.stop_gradient(H_true))
    ok = jnp.all(jnp.diagonal(trial, axis1=1, axis2=2) > 1e-6, axis=1)
    return jnp.where(ok[:, None, None], H_true, H_fish)


def converge_modes(params, arrays, floors, alpha0, n_families: int, n_benchmarks: int, bound: float,
                   max_iter: int = 60, tol: float = 1e-10, max_step: float = 2.0):
    """Posterior modes α̂_f (F, K), without gradient tracking.

    Damped Newton iterations, vectorized over families, from ``alpha0`` (a warm start, e.g. the
    modes at nearby parameters) until every family's Newton step is below ``tol``. Each iteration
    tries one step per family: a family whose step fails the sufficient-increase test keeps its
    point and halves its step length in the next iteration (backtracking spread over iterations,
    so an iteration costs one derivative and one density evaluation per score). A family stops
    when its step is below ``tol`` or its predicted gain is within rounding of its log joint.
    """
    if "residual_sd" in params:  # the joint modes (α̂, û) of the residual model, as one (F, K + J) array
        return converge_joint_modes(params, arrays, floors, alpha0, n_families, n_benchmarks, bound, max_iter, tol,
                                    max_step)
    params = jax.lax.stop_gradient(params)
    fam = arrays["obs_family"]
    log_y, log1m_y = arrays["log_y"], arrays["log1m_y"]
    c_obs, log_phi_obs, lam_obs, kappa = obs_terms(params, arrays, floors)
    eta0 = fixed_eta(params, arrays)
    K = lam_obs.shape[1]
    prec = jax.scipy.linalg.cho_solve((params["corr"], True), jnp.eye(K, dtype=eta0.dtype))

    def joint(alpha):  # log p(y_f | α_f) + log N(α_f; 0, Σ) up to a constant, (F,)
        eta = eta0 + jnp.sum(lam_obs * alpha[fam], axis=1)
        ll = beta_logpdf(eta, log_y, log1m_y, c_obs, log_phi_obs, bound, kappa=kappa)
        ll_fam = jax.ops.segment_sum(ll, fam, num_segments=n_families)
        return ll_fam - 0.5 * jnp.einsum("fk,kl,fl->f", alpha, prec, alpha)

    def cond(state):
        i, _, _, _, active = state
        return (i < max_iter) & jnp.any(active)

    def body(state):
        i, alpha, j0, t, _ = state
        eta = eta0 + jnp.sum(lam_obs * alpha[fam], axis=1)
        g, H_true, H_fish, _ = _curvatures(params, arrays, floors, eta, n_families, n_benchmarks, bound)
        grad = g - alpha @ prec
        step = sm.cho_solve(sm.cholesky(_pd_choice(H_true, H_fish)), grad)
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

    a0 = jax.lax.stop_gradient(jnp.asarray(alpha0, dtype=eta0.dtype))
    ones = jnp.ones(n_families, dtype=eta0.dtype)
    _, alpha, _, _, _ = jax.lax.while_loop(
        cond, body, (jnp.asarray(0), a0, joint(a0), ones, jnp.ones(n_families, dtype=bool)))
    return alpha


def tracked_modes(params, arrays, floors, alpha_hat, n_families: int, n_benchmarks: int, bound: float,
                  exact_second: bool = False):
    """The converged modes as a differentiable function of the parameters.

    One Newton step α̂ + H⁻¹ g from the converged α̂ (where g = 0) has the exact first derivative of
    the mode (implicit function theorem: dα̂/dθ = H⁻¹ ∂g/∂θ); H is held constant (its derivative
    multiplies g = 0), so nothing of second order is differentiated. ``exact_second``: two plain
    Newton steps with H differentiated instead, which keep second derivatives exact too (Newton's
    error is quadratic), for exact Hessians by automatic differentiation.
    """
    alpha = jax.lax.stop_gradient(alpha_hat)
    fam = arrays["obs_family"]
    lam_obs = obs_terms(params, arrays, floors)[2]
    eta0 = fixed_eta(params, arrays)
    for _ in range(2 if exact_second else 1):
        eta = eta0 + jnp.sum(lam_obs * alpha[fam], axis=1)
        g, H_true, H_fish, prec = _curvatures(params, arrays, floors, eta, n_families, n_benchmarks, bound)
        grad = g - alpha @ prec
        H = _pd_choice(H_true, H_fish)
        if not exact_second:
            H = jax.lax.stop_gradient(H)
        alpha = alpha + sm.cho_solve(sm.cholesky(H), grad)
    return alpha, eta0, lam_obs


def adaptive_terms(params, arrays, floors, nodes, log_weights, alpha_hat, n_families: int, n_benchmarks: int,
                   bound: float, exact_second: bool = False):
    """The adaptive rule of every family: its centre α (F, K), nodes α_fq (F, Q, K), log terms
    (F, Q) and the log-determinant (F,) of the node map. log p(y_f) is the log-sum-exp of the
    terms (signed by the rule's weights) plus the log-determinant; normalized, the terms are the
    posterior weights of the nodes. With a family × benchmark residual the terms integrate it out by
    the nested rule (:func:`latentscale.estimation.residual.residual_terms`)."""
    if "residual_sd" in params:
        return residual_terms(params, arrays, floors, nodes, log_weights, alpha_hat, n_families, n_benchmarks, bound,
                              exact_second)[:4]
    alpha, eta0, lam_obs = tracked_modes(params, arrays, floors, alpha_hat, n_families, n_benchmarks, bound,
                                         exact_second)
    fam = arrays["obs_family"]
    eta_hat = eta0 + jnp.sum(lam_obs * alpha[fam], axis=1)
    H = _fisher_scale(params, arrays, floors, eta_hat, n_families, n_benchmarks, bound)
    R = jnp.linalg.cholesky(H)  # H = R Rᵀ
    K = R.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(K, dtype=R.dtype), R.shape)
    S = jnp.swapaxes(jax.scipy.linalg.solve_triangular(R, eye, lower=True), -1, -2)  # S = R^{-T}, S Sᵀ = H⁻¹
    c, log_phi, _, kappa = obs_terms(params, arrays, floors)
    U = jnp.einsum("fkl,kj->fjl", S, params["loadings"])  # (F, J, K): S_fᵀ λ_j
    u_obs = U[fam, arrays["obs_bench"]]  # (n_obs, K)
    eta = eta_hat[:, None] + u_obs @ nodes.T  # (n_obs, Q)
    ll = beta_logpdf(eta, arrays["log_y"][:, None], arrays["log1m_y"][:, None], c[:, None], log_phi[:, None],
                     bound, kappa=expand(kappa, 1))
    ll_fam = jax.ops.segment_sum(ll, fam, num_segments=n_families)  # (F, Q)
    alpha_q = alpha[:, None, :] + jnp.einsum("fkl,ql->fqk", S, nodes)  # (F, Q, K)
    lp = log_prior(alpha_q, params["corr"])  # (F, Q)
    log_phi_z = -0.5 * jnp.sum(nodes**2, axis=1) - 0.5 * K * LOG_2PI  # (Q,)
    log_det_S = -jnp.sum(jnp.log(jnp.diagonal(R, axis1=1, axis2=2)), axis=1)
    terms = log_weights[None, :] + ll_fam + lp - log_phi_z[None, :]
    return alpha, alpha_q, terms, log_det_S


def family_loglik(params, arrays, floors, nodes, log_weights, signs, alpha_hat, n_families: int,
                  n_benchmarks: int, bound: float, exact_second: bool = False):
    """Log marginal likelihood of each family (F,) by the adaptive rule (``signs`` of the rule's
    weights for rules with negative weights, else None)."""
    _, _, terms, log_det_S = adaptive_terms(params, arrays, floors, nodes, log_weights, alpha_hat, n_families,
                                            n_benchmarks, bound, exact_second)
    b = None if signs is None else signs[None, :]
    return log_det_S + jax.scipy.special.logsumexp(terms, axis=1, b=b)


def posterior_weights(terms, signs):
    """Normalized posterior weights of the nodes (F, Q) from the log terms (signed for rules with
    negative weights: the weights then sum to one but some are negative)."""
    if signs is None:
        return jax.nn.softmax(terms, axis=1)
    m = jnp.max(terms, axis=1, keepdims=True)
    w = signs[None, :] * jnp.exp(terms - m)
    return w / jnp.sum(w, axis=1, keepdims=True)


def mode_and_scale(params, arrays, floors, alpha0, n_families: int, n_benchmarks: int, bound: float,
                   track: bool = False):
    """Every family's posterior mode (F, K) and the rule's scale H_f there (F, K, K): the centre
    and curvature of importance-sampling proposals. ``track``: the mode differentiable in the
    parameters (:func:`tracked_modes`), e.g. for its derivative in θ."""
    alpha = converge_modes(params, arrays, floors, alpha0, n_families, n_benchmarks, bound)
    if track:
        alpha, _, _ = tracked_modes(params, arrays, floors, alpha, n_families, n_benchmarks, bound)
    lam_obs = obs_terms(params, arrays, floors)[2]
    eta = fixed_eta(params, arrays) + jnp.sum(lam_obs * alpha[arrays["obs_family"]], axis=1)
    return alpha, _fisher_scale(params, arrays, floors, eta, n_families, n_benchmarks, bound)
