"""Adaptive quadrature with a family × benchmark residual effect (nested rules), vectorized over families.

The residual model adds u_fj ~ N(0, τ_j²), independent across families and benchmarks and of α,
to the linear predictor: η_ij = λ_jᵀ θ_i + b_j + u_f(i)j. Given α the u_fj of a family are
independent across benchmarks, so

    p(y_f) = ∫ N(α; 0, Σ) Π_j I_fj(α) dα,   I_fj(α) = ∫ N(u; 0, τ_j²) Π_{i ∈ f} p(y_ij | α, u) du,

a K-dimensional outer integral of a product of one-dimensional inner ones. Both are done by
adaptive Gauss–Hermite rules:

1. :func:`converge_joint_modes`: Newton's method for the joint posterior mode (α̂_f, û_f) in K + J
   dimensions; the Hessian has an arrow structure (the u block is diagonal), so each step is a
   K × K solve with the Schur complement H_α|u = Σ_j λ_j λ_jᵀ h_fj ρ_j / (h_fj + ρ_j) + Σ⁻¹
   (h_fj the curvature of family f's benchmark-j scores in η, ρ_j = 1/τ_j²), then a division per
   benchmark;
2. :func:`residual_terms`: the outer rule at α̂_f scaled by the Fisher version of H_α|u (the
   curvature of the u-marginal in α); at each outer node α_q the inner rule for u_fj is centred at
   the conditional mode predicted linearly from the joint mode, û_fj − F_fj λ_jᵀ(α_q − α̂_f)/(F_fj + ρ_j),
   and scaled by (F_fj + ρ_j)^(-1/2) (F the Fisher information). A benchmark without scores in
   the family gets exactly 1 (the inner rule integrates the prior exactly).

With one outer and one inner node this is the Laplace approximation in (α, u); the likelihood is
deterministic and smooth in the parameters, and its gradient exact (the joint mode is tracked by
one Newton step from its converged value, as for the plain model).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from latentscale.estimation import smallmat as sm
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


def _rho(params):
    """Prior precisions 1/τ_j² of the residual effects (J,)."""
    return 1.0 / jnp.square(params["residual_sd"])


def _cell(arrays, n_benchmarks: int):
    """Index of every observation's (family, benchmark) cell in a flattened (F·J) table."""
    return arrays["obs_family"] * n_benchmarks + arrays["obs_bench"]


def _eta(eta0, lam_obs, alpha, u, arrays, n_benchmarks: int):
    """η of every observation at the family effects α (F, K) and residuals u (F, J)."""
    fam = arrays["obs_family"]
    u_obs = u.reshape(-1)[_cell(arrays, n_benchmarks)]
    return eta0 + jnp.sum(lam_obs * alpha[fam], axis=1) + u_obs


def _stats(params, arrays, floors, eta, n_families, n_benchmarks, bound):
    """Per (family, benchmark) sums of the score's first derivative in η, of its negative second
    derivative and of its Fisher information: G, Hd, Fd (F, J)."""
    c, log_phi, _, kappa = obs_terms(params, arrays, floors)
    d1, d2, fisher = beta_eta_derivatives(eta, arrays["log_y"], arrays["log1m_y"], c, log_phi, bound, kappa)
    return (family_sums(d1, arrays, n_families, n_benchmarks), family_sums(-d2, arrays, n_families, n_benchmarks),
            family_sums(fisher, arrays, n_families, n_benchmarks))


def _precision(params):
    L = params["corr"]
    return jax.scipy.linalg.cho_solve((L, True), jnp.eye(L.shape[0], dtype=L.dtype))


def schur(lam, prec, rho, h):
    """H_α|u (F, K, K) for per-cell curvatures h (F, J): Σ_j λ_j λ_jᵀ h ρ/(h + ρ) + Σ⁻¹."""
    return jnp.einsum("kj,fj,lj->fkl", lam, h * rho / (h + rho), lam) + prec


def _newton_step(lam, prec, rho, h, g_a, g_u, chol=sm.cholesky, solve=sm.cho_solve):
    """The joint Newton step (Δα, Δu) of the arrow system with curvatures h (F, J)."""
    d = h + rho
    rhs = g_a - (h * g_u / d) @ lam.T
    da = solve(chol(schur(lam, prec, rho, h)), rhs)
    du = (g_u - h * (da @ lam)) / d
    return da, du


def _choose_h(lam, prec, rho, h_true, h_fish):
    """The true curvature where the joint system is positive definite for the whole family, else
    the Fisher information (decided without gradient)."""
    h0 = jax.lax.stop_gradient(h_true)
    trial = sm.cholesky(schur(lam, prec, rho, h0))  # NaN (comparing False) when not positive definite
    ok = jnp.all(jnp.diagonal(trial, axis1=1, axis2=2) > 1e-6, axis=1) & jnp.all(h0 + rho > 1e-8, axis=1)
    return jnp.where(ok[:, None], h_true, h_fish)


def _gradients(lam, prec, rho, G, alpha, u):
    return G @ lam.T - alpha @ prec, G - rho * u


def converge_joint_modes(params, arrays, floors, start, n_families: int, n_benchmarks: int, bound: float,
                         max_iter: int = 60, tol: float = 1e-10, max_step: float = 2.0):
    """Joint posterior modes (α̂_f, û_f) as one (F, K + J) array, without gradient tracking
    (damped Newton from ``start``, as :func:`latentscale.estimation.adaptive.converge_modes`)."""
    params = jax.lax.stop_gradient(params)
    fam = arrays["obs_family"]
    log_y, log1m_y = arrays["log_y"], arrays["log1m_y"]
    c_obs, log_phi_obs, lam_obs, kappa = obs_terms(params, arrays, floors)
    eta0 = fixed_eta(params, arrays)
    lam = params["loadings"]
    K = lam.shape[0]
    prec, rho = _precision(params), _rho(params)

    def joint(alpha, u):
        eta = _eta(eta0, lam_obs, alpha, u, arrays, n_benchmarks)
        ll = jax.ops.segment_sum(beta_logpdf(eta, log_y, log1m_y, c_obs, log_phi_obs, bound, kappa=kappa), fam,
                                 num_segments=n_families)
        return ll - 0.5 * jnp.einsum("fk,kl,fl->f", alpha, prec, alpha) - 0.5 * jnp.sum(rho * u * u, axis=1)

    def cond(state):
        i, _, _, _, active = state
        return (i < max_iter) & jnp.any(active)

    def body(state):
        i, x, j0, t, _ = state
        alpha, u = x[:, :K], x[:, K:]
        G, Hd, Fd = _stats(params, arrays, floors, _eta(eta0, lam_obs, alpha, u, arrays, n_benchmarks), n_families,
                           n_benchmarks, bound)
        g_a, g_u = _gradients(lam, prec, rho, G, alpha, u)
        da, du = _newton_step(lam, prec, rho, _choose_h(lam, prec, rho, Hd, Fd), g_a, g_u)
        step = jnp.concatenate([da, du], axis=1)
        norm = jnp.sqrt(jnp.sum(step**2, axis=1))
        step = step * jnp.minimum(1.0, max_step / jnp.maximum(norm, 1e-300))[:, None]
        trial = x + t[:, None] * step
        j1 = joint(trial[:, :K], trial[:, K:])
        slope = jnp.sum(jnp.concatenate([g_a, g_u], axis=1) * step, axis=1)
        ok = (j1 >= j0 + 1e-4 * t * slope) & jnp.isfinite(j1)
        x = jnp.where(ok[:, None], trial, x)
        j0 = jnp.where(ok, j1, j0)
        t = jnp.where(ok, 1.0, 0.5 * t)
        active = (norm > tol) & (slope > 1e-13 * (1.0 + jnp.abs(j0))) & (t > 1e-3)
        return i + 1, x, j0, t, active

    x0 = jax.lax.stop_gradient(jnp.asarray(start, dtype=eta0.dtype))
    ones = jnp.ones(n_families, dtype=eta0.dtype)
    _, x, _, _, _ = jax.lax.while_loop(
        cond, body, (jnp.asarray(0), x0, joint(x0[:, :K], x0[:, K:]), ones, jnp.ones(n_families, dtype=bool)))
    return x


def tracked_joint_modes(params, arrays, floors, x_hat, n_families: int, n_benchmarks: int, bound: float,
                        exact_second: bool = False):
    """The converged joint modes as a differentiable function of the parameters: one Newton step
    from the converged point (two, with the curvature differentiated, for ``exact_second``);
    see :func:`latentscale.estimation.adaptive.tracked_modes`. Returns α (F, K), u (F, J), the
    fixed part of η and the per-observation loadings."""
    x = jax.lax.stop_gradient(x_hat)
    lam_obs = obs_terms(params, arrays, floors)[2]
    eta0 = fixed_eta(params, arrays)
    lam = params["loadings"]
    K = lam.shape[0]
    prec, rho = _precision(params), _rho(params)
    alpha, u = x[:, :K], x[:, K:]
    for _ in range(2 if exact_second else 1):
        G, Hd, Fd = _stats(params, arrays, floors, _eta(eta0, lam_obs, alpha, u, arrays, n_benchmarks), n_families,
                           n_benchmarks, bound)
        g_a, g_u = _gradients(lam, prec, rho, G, alpha, u)
        h = _choose_h(lam, prec, rho, Hd, Fd)
        if not exact_second:
            h = jax.lax.stop_gradient(h)
        da, du = _newton_step(lam, prec, rho, h, g_a, g_u)
        alpha, u = alpha + da, u + du
    return alpha, u, eta0, lam_obs


def residual_terms(params, arrays, floors, nodes, log_weights, x_hat, n_families: int, n_benchmarks: int,
                   bound: float, exact_second: bool = False):
    """The nested adaptive rule of every family (module docstring).

    Returns the centre α (F, K), the outer nodes α_fq (F, Q, K), the log terms (F, Q) and the
    log-determinant (F,) of the outer node map (as :func:`~latentscale.estimation.adaptive.adaptive_terms`),
    and the inner nodes u_fqjr (F, Q, J, R) with their log terms (F, Q, J, R), whose normalized
    exponentials are the posterior weights of the inner nodes given the outer one. The inner
    rule (nodes x_r, log weights) comes in ``arrays["inner_nodes"]``, ``arrays["inner_log_weights"]``.
    """
    alpha, u, eta0, lam_obs = tracked_joint_modes(params, arrays, floors, x_hat, n_families, n_benchmarks, bound,
                                                  exact_second)
    lam = params["loadings"]
    prec, rho = _precision(params), _rho(params)
    fam, cell = arrays["obs_family"], _cell(arrays, n_benchmarks)
    eta_hat = _eta(eta0, lam_obs, alpha, u, arrays, n_benchmarks)
    _, _, Fd = _stats(params, arrays, floors, eta_hat, n_families, n_benchmarks, bound)
    R = jnp.linalg.cholesky(schur(lam, prec, rho, Fd))
    K = R.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(K, dtype=R.dtype), R.shape)
    S = jnp.swapaxes(jax.scipy.linalg.solve_triangular(R, eye, lower=True), -1, -2)  # S Sᵀ = H_α|u⁻¹
    shift = jnp.einsum("fkl,ql->fqk", S, nodes)  # α_fq − α̂_f (F, Q, K)
    alpha_q = alpha[:, None, :] + shift
    # inner rules: centres (F, Q, J), scales (F, J), nodes (F, Q, J, R)
    x, log_w = arrays["inner_nodes"], arrays["inner_log_weights"]
    centre = u[:, None, :] - (Fd / (Fd + rho))[:, None, :] * jnp.einsum("fqk,kj->fqj", shift, lam)
    scale = 1.0 / jnp.sqrt(Fd + rho)
    u_qr = centre[..., None] + scale[:, None, :, None] * x  # (F, Q, J, R)
    # scores at every (outer, inner) node: (n_obs, Q, R)
    eta_q = eta0[:, None] + jnp.einsum("ok,oqk->oq", lam_obs, alpha_q[fam])
    u_obs = jnp.swapaxes(u_qr, 1, 2).reshape(-1, *u_qr.shape[1:2], u_qr.shape[-1])[cell]  # (n_obs, Q, R)
    c, log_phi, _, kappa = obs_terms(params, arrays, floors)
    ll = beta_logpdf(eta_q[..., None] + u_obs, arrays["log_y"][:, None, None], arrays["log1m_y"][:, None, None],
                     c[:, None, None], log_phi[:, None, None], bound, kappa=expand(kappa, 1, 2))
    J = n_benchmarks
    ll_cell = jax.ops.segment_sum(ll, cell, num_segments=n_families * J)  # (F·J, Q, R)
    ll_cell = jnp.swapaxes(ll_cell.reshape(n_families, J, *ll_cell.shape[1:]), 1, 2)  # (F, Q, J, R)
    tau = params["residual_sd"]
    log_prior_u = -0.5 * jnp.square(u_qr / tau[None, None, :, None]) - jnp.log(tau)[None, None, :, None] - 0.5 * LOG_2PI
    log_phi_x = -0.5 * x**2 - 0.5 * LOG_2PI
    inner = ll_cell + log_prior_u + (log_w - log_phi_x) + jnp.log(scale)[:, None, :, None]
    ll_q = jnp.sum(jax.scipy.special.logsumexp(inner, axis=-1), axis=-1)  # (F, Q)
    lp = log_prior(alpha_q, params["corr"])
    log_phi_z = -0.5 * jnp.sum(nodes**2, axis=1) - 0.5 * K * LOG_2PI
    log_det_S = -jnp.sum(jnp.log(jnp.diagonal(R, axis1=1, axis2=2)), axis=1)
    terms = log_weights[None, :] + ll_q + lp - log_phi_z[None, :]
    return alpha, alpha_q, terms, log_det_S, u_qr, inner


def joint_mode_and_scale(params, arrays, floors, start, n_families: int, n_benchmarks: int, bound: float,
                         track: bool = False):
    """The joint modes (F, K + J), the scale of the α-marginal H_α|u (F, K, K) and the Fisher
    information per (family, benchmark) (F, J) there: the centre and curvatures of importance
    sampling proposals for (α, u). ``track``: the modes differentiable in the parameters."""
    x = converge_joint_modes(params, arrays, floors, start, n_families, n_benchmarks, bound)
    lam = params["loadings"]
    K = lam.shape[0]
    if track:
        alpha, u, eta0, lam_obs = tracked_joint_modes(params, arrays, floors, x, n_families, n_benchmarks, bound)
        x = jnp.concatenate([alpha, u], axis=1)
    else:
        lam_obs = obs_terms(params, arrays, floors)[2]
        eta0 = fixed_eta(params, arrays)
    eta = _eta(eta0, lam_obs, x[:, :K], x[:, K:], arrays, n_benchmarks)
    _, _, Fd = _stats(params, arrays, floors, eta, n_families, n_benchmarks, bound)
    return x, schur(lam, _precision(params), _rho(params), Fd), Fd
