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

**Random slopes** (``slope_sd`` in the parameters): each cell has two effects r_fj = (u_fj, v_fj),
v_fj ~ N(0, ω_j²), entering η as u_fj + v_fj·z_i with z_i the model's first standardized covariate
(its size). Everything above holds with 2 × 2 blocks: the cell's curvature is the matrix
M_fj = Σ_i w_i w_iᵀ h_i (w_i = (1, z_i)), its prior precision diag(ρ_j) (ρ = 1/τ², 1/ω²), the
α-marginal's curvature the Schur complement Σ_j λ_j λ_jᵀ s_fj + Σ⁻¹ with the scalar
s_fj = M00 − cᵀ(M + diag ρ)⁻¹c, c the first row of M (s = hρ/(h + ρ) for one effect), and the
inner rule a two-dimensional product rule scaled by the Cholesky factor of M + diag ρ. The cells'
effects are stored as r (F, J, m), m = 1 or 2; flattened (u, then v) after α in the joint mode.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from latentscale.estimation import smallmat as sm
from latentscale.model.observation import (
    LOG_2PI,
    beta_eta_derivatives,
    beta_logpdf,
    expand,
    fixed_eta,
    log_prior,
    obs_terms,
)


def n_cell_effects(params) -> int:
    """Random effects per (family, benchmark) cell: 1 (u), or 2 (u and the slope v)."""
    return 2 if "slope_sd" in params else 1


def cell_sds(params):
    """Prior SDs of the cells' effects (..., J, m): τ_j, and ω_j with slopes (numpy or JAX; stacked
    parameter draws (S, J) give (S, J, m))."""
    xp = np if isinstance(params["residual_sd"], np.ndarray) else jnp
    return xp.stack([params["residual_sd"]] + ([params["slope_sd"]] if "slope_sd" in params else []), axis=-1)


def cell_precisions(params):
    """Prior precisions of the cells' effects (J, m): 1/τ_j² (and 1/ω_j²)."""
    return 1.0 / jnp.square(cell_sds(params))


def _cell(arrays, n_benchmarks: int):
    """Index of every observation's (family, benchmark) cell in a flattened (F·J) table."""
    return arrays["obs_family"] * n_benchmarks + arrays["obs_bench"]


def cell_design(arrays, m: int):
    """Each observation's weights w_i on its cell's effects (n_obs, m): 1, and its first standardized
    covariate z_i with a slope."""
    one = jnp.ones_like(arrays["log_y"])[:, None]
    if m == 1:
        return one
    return jnp.concatenate([one, arrays["X"][arrays["obs_model"], :1]], axis=1)


def split_effects(x, K: int, m: int):
    """α (F, K) and the cells' effects r (F, J, m) of joint modes x (F, K + m·J) (u, then v)."""
    F = x.shape[0]
    return x[:, :K], jnp.swapaxes(x[:, K:].reshape(F, m, -1), 1, 2)


def join_effects(alpha, r):
    """The inverse of :func:`split_effects`."""
    return jnp.concatenate([alpha, jnp.swapaxes(r, 1, 2).reshape(r.shape[0], -1)], axis=1)


def _cell_sums(values, arrays, n_families: int, n_benchmarks: int):
    """Sum per-observation values (n_obs, ...) into (F, J, ...) by family and benchmark."""
    out = jax.ops.segment_sum(values, _cell(arrays, n_benchmarks), num_segments=n_families * n_benchmarks)
    return out.reshape(n_families, n_benchmarks, *values.shape[1:])


def _residual_eta(r, w, arrays, n_benchmarks: int):
    """Each observation's cell term Σ_m r_fjm w_im (n_obs,)."""
    r_obs = r.reshape(-1, r.shape[-1])[_cell(arrays, n_benchmarks)]
    return jnp.sum(r_obs * w, axis=1)


def _eta(eta0, lam_obs, alpha, r, w, arrays, n_benchmarks: int):
    """η of every observation at the family effects α (F, K) and cell effects r (F, J, m)."""
    fam = arrays["obs_family"]
    return eta0 + jnp.sum(lam_obs * alpha[fam], axis=1) + _residual_eta(r, w, arrays, n_benchmarks)


def _stats(params, arrays, floors, eta, w, n_families, n_benchmarks, bound):
    """Per (family, benchmark) cell: the gradient of its scores in the cell's effects G (F, J, m), and
    their negative Hessian and Fisher information there, Hd and Fd (F, J, m, m)."""
    c, log_phi, _, kappa = obs_terms(params, arrays, floors)
    d1, d2, fisher = beta_eta_derivatives(eta, arrays["log_y"], arrays["log1m_y"], c, log_phi, bound, kappa)
    ww = w[:, :, None] * w[:, None, :]
    return (_cell_sums(d1[:, None] * w, arrays, n_families, n_benchmarks),
            _cell_sums(-d2[:, None, None] * ww, arrays, n_families, n_benchmarks),
            _cell_sums(fisher[:, None, None] * ww, arrays, n_families, n_benchmarks))


def _precision(params):
    L = params["corr"]
    return jax.scipy.linalg.cho_solve((L, True), jnp.eye(L.shape[0], dtype=L.dtype))


def cell_system(M, rho):
    """D = M + diag ρ (F, J, m, m) and the cells' scalar weights in the α-marginal's curvature,
    s = M00 − cᵀ D⁻¹ c with c the first row of M (F, J): hρ/(h + ρ) with one effect."""
    m = M.shape[-1]
    if m == 1:
        h = M[..., 0, 0]
        return M + rho[None, :, :, None], h * rho[None, :, 0] / (h + rho[None, :, 0])
    D = M + rho[None, :, :, None] * jnp.eye(m, dtype=M.dtype)
    c = M[..., 0, :]
    return D, M[..., 0, 0] - jnp.sum(c * cell_solve(D, c), axis=-1)


def cell_solve(D, b):
    """D⁻¹ b for the cells' m × m systems (m = 1 or 2, closed form)."""
    if D.shape[-1] == 1:
        return b / D[..., 0]
    a, off, d = D[..., 0, 0], D[..., 0, 1], D[..., 1, 1]
    det = a * d - off * off
    return jnp.stack([d * b[..., 0] - off * b[..., 1], a * b[..., 1] - off * b[..., 0]], axis=-1) / det[..., None]


def _cell_ok(D):
    """Whether each cell's system is positive definite (F, J)."""
    if D.shape[-1] == 1:
        return D[..., 0, 0] > 1e-8
    a = D[..., 0, 0]
    return (a > 1e-8) & (D[..., 1, 1] - D[..., 0, 1] ** 2 / jnp.where(a > 1e-8, a, 1.0) > 1e-8)


def schur(lam, prec, s):
    """H_α|u (F, K, K) for the cells' weights s (F, J) (:func:`cell_system`): Σ_j λ_j λ_jᵀ s + Σ⁻¹."""
    return jnp.einsum("kj,fj,lj->fkl", lam, s, lam) + prec


def _newton_step(lam, prec, rho, M, g_a, g_r, chol=sm.cholesky, solve=sm.cho_solve):
    """The joint Newton step (Δα, Δr) of the arrow system with the cells' curvatures M (F, J, m, m)."""
    D, s = cell_system(M, rho)
    c = M[..., 0, :]
    rhs = g_a - jnp.sum(c * cell_solve(D, g_r), axis=-1) @ lam.T
    da = solve(chol(schur(lam, prec, s)), rhs)
    dr = cell_solve(D, g_r - c * (da @ lam)[..., None])
    return da, dr


def _choose_h(lam, prec, rho, h_true, h_fish):
    """The true curvature where the joint system is positive definite for the whole family, else
    the Fisher information (decided without gradient)."""
    h0 = jax.lax.stop_gradient(h_true)
    D, s = cell_system(h0, rho)
    trial = sm.cholesky(schur(lam, prec, s))  # NaN (comparing False) when not positive definite
    ok = jnp.all(jnp.diagonal(trial, axis1=1, axis2=2) > 1e-6, axis=1) & jnp.all(_cell_ok(D), axis=1)
    return jnp.where(ok[:, None, None, None], h_true, h_fish)


def _gradients(lam, prec, rho, G, alpha, r):
    return G[..., 0] @ lam.T - alpha @ prec, G - rho[None] * r


def converge_joint_modes(params, arrays, floors, start, n_families: int, n_benchmarks: int, bound: float,
                         max_iter: int = 60, tol: float = 1e-10, max_step: float = 2.0):
    """Joint posterior modes (α̂_f, r̂_f) as one (F, K + m·J) array, without gradient tracking
    (damped Newton from ``start``, as :func:`latentscale.estimation.adaptive.converge_modes`)."""
    params = jax.lax.stop_gradient(params)
    fam = arrays["obs_family"]
    log_y, log1m_y = arrays["log_y"], arrays["log1m_y"]
    c_obs, log_phi_obs, lam_obs, kappa = obs_terms(params, arrays, floors)
    eta0 = fixed_eta(params, arrays)
    lam = params["loadings"]
    K = lam.shape[0]
    m = n_cell_effects(params)
    w = cell_design(arrays, m)
    prec, rho = _precision(params), cell_precisions(params)

    def joint(x):
        alpha, r = split_effects(x, K, m)
        eta = _eta(eta0, lam_obs, alpha, r, w, arrays, n_benchmarks)
        ll = jax.ops.segment_sum(beta_logpdf(eta, log_y, log1m_y, c_obs, log_phi_obs, bound, kappa=kappa), fam,
                                 num_segments=n_families)
        return ll - 0.5 * jnp.einsum("fk,kl,fl->f", alpha, prec, alpha) - 0.5 * jnp.sum(rho[None] * r * r, axis=(1, 2))

    def cond(state):
        i, _, _, _, active = state
        return (i < max_iter) & jnp.any(active)

    def body(state):
        i, x, j0, t, _ = state
        alpha, r = split_effects(x, K, m)
        G, Hd, Fd = _stats(params, arrays, floors, _eta(eta0, lam_obs, alpha, r, w, arrays, n_benchmarks), w,
                           n_families, n_benchmarks, bound)
        g_a, g_r = _gradients(lam, prec, rho, G, alpha, r)
        da, dr = _newton_step(lam, prec, rho, _choose_h(lam, prec, rho, Hd, Fd), g_a, g_r)
        step = join_effects(da, dr)
        norm = jnp.sqrt(jnp.sum(step**2, axis=1))
        step = step * jnp.minimum(1.0, max_step / jnp.maximum(norm, 1e-300))[:, None]
        trial = x + t[:, None] * step
        j1 = joint(trial)
        slope = jnp.sum(join_effects(g_a, g_r) * step, axis=1)
        ok = (j1 >= j0 + 1e-4 * t * slope) & jnp.isfinite(j1)
        x = jnp.where(ok[:, None], trial, x)
        j0 = jnp.where(ok, j1, j0)
        t = jnp.where(ok, 1.0, 0.5 * t)
        active = (norm > tol) & (slope > 1e-13 * (1.0 + jnp.abs(j0))) & (t > 1e-3)
        return i + 1, x, j0, t, active

    x0 = jax.lax.stop_gradient(jnp.asarray(start, dtype=eta0.dtype))
    ones = jnp.ones(n_families, dtype=eta0.dtype)
    _, x, _, _, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0), x0, joint(x0), ones,
                                                    jnp.ones(n_families, dtype=bool)))
    return x


def tracked_joint_modes(params, arrays, floors, x_hat, n_families: int, n_benchmarks: int, bound: float,
                        exact_second: bool = False):
    """The converged joint modes as a differentiable function of the parameters: one Newton step
    from the converged point (two, with the curvature differentiated, for ``exact_second``);
    see :func:`latentscale.estimation.adaptive.tracked_modes`. Returns α (F, K), the cells' effects
    r (F, J, m), the fixed part of η, the per-observation loadings and the cells' weights w (n_obs, m)."""
    x = jax.lax.stop_gradient(x_hat)
    lam_obs = obs_terms(params, arrays, floors)[2]
    eta0 = fixed_eta(params, arrays)
    lam = params["loadings"]
    K = lam.shape[0]
    m = n_cell_effects(params)
    w = cell_design(arrays, m)
    prec, rho = _precision(params), cell_precisions(params)
    alpha, r = split_effects(x, K, m)
    for _ in range(2 if exact_second else 1):
        G, Hd, Fd = _stats(params, arrays, floors, _eta(eta0, lam_obs, alpha, r, w, arrays, n_benchmarks), w,
                           n_families, n_benchmarks, bound)
        g_a, g_r = _gradients(lam, prec, rho, G, alpha, r)
        h = _choose_h(lam, prec, rho, Hd, Fd)
        if not exact_second:
            h = jax.lax.stop_gradient(h)
        da, dr = _newton_step(lam, prec, rho, h, g_a, g_r)
        alpha, r = alpha + da, r + dr
    return alpha, r, eta0, lam_obs, w


def inner_scale(D):
    """The inner rule's node map per cell: S (F, J, m, m) with S Sᵀ = D⁻¹ (S = L^{-T}, L the lower
    Cholesky factor of D), and log |det S| (F, J)."""
    if D.shape[-1] == 1:
        S = 1.0 / jnp.sqrt(D)
        return S, jnp.log(S[..., 0, 0])
    L = sm.cholesky(D)
    S = sm.inv_lower_t(L)
    return S, -jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)


def cell_log_prior(r, rho):
    """log N(r; 0, diag(1/ρ)) of cell effects r (..., J, m) summed over m, with ρ (J, m)."""
    return jnp.sum(-0.5 * rho * r * r + 0.5 * jnp.log(rho) - 0.5 * LOG_2PI, axis=-1)


def residual_terms(params, arrays, floors, nodes, log_weights, x_hat, n_families: int, n_benchmarks: int,
                   bound: float, exact_second: bool = False):
    """The nested adaptive rule of every family (module docstring).

    Returns the centre α (F, K), the outer nodes α_fq (F, Q, K), the log terms (F, Q) and the
    log-determinant (F,) of the outer node map (as :func:`~latentscale.estimation.adaptive.adaptive_terms`),
    and the inner nodes r_fqjr (F, Q, J, R, m) with their log terms (F, Q, J, R), whose normalized
    exponentials are the posterior weights of the inner nodes given the outer one. The inner
    rule (nodes x_r (R, m), log weights) comes in ``arrays["inner_nodes"]``, ``arrays["inner_log_weights"]``.
    """
    alpha, r, eta0, lam_obs, w = tracked_joint_modes(params, arrays, floors, x_hat, n_families, n_benchmarks, bound,
                                                     exact_second)
    lam = params["loadings"]
    prec, rho = _precision(params), cell_precisions(params)
    fam, cell = arrays["obs_family"], _cell(arrays, n_benchmarks)
    eta_hat = _eta(eta0, lam_obs, alpha, r, w, arrays, n_benchmarks)
    _, _, Fd = _stats(params, arrays, floors, eta_hat, w, n_families, n_benchmarks, bound)
    D, s = cell_system(Fd, rho)
    R = jnp.linalg.cholesky(schur(lam, prec, s))
    K = R.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(K, dtype=R.dtype), R.shape)
    S = jnp.swapaxes(jax.scipy.linalg.solve_triangular(R, eye, lower=True), -1, -2)  # S Sᵀ = H_α|u⁻¹
    shift = jnp.einsum("fkl,ql->fqk", S, nodes)  # α_fq − α̂_f (F, Q, K)
    alpha_q = alpha[:, None, :] + shift
    # inner rules: centres (F, Q, J, m) = r̂ − D⁻¹c·λᵀ(α_q − α̂), node maps (F, J, m, m),
    # nodes (F, Q, J, R, m)
    x, log_w = arrays["inner_nodes"], arrays["inner_log_weights"]
    gain = cell_solve(D, Fd[..., 0, :])  # (F, J, m)
    centre = r[:, None] - gain[:, None] * jnp.einsum("fqk,kj->fqj", shift, lam)[..., None]
    Sc, log_det_c = inner_scale(D)
    offsets = jnp.einsum("fjab,rb->fjra", Sc, x)  # (F, J, R, m)
    r_qr = centre[:, :, :, None, :] + offsets[:, None]  # (F, Q, J, R, m)
    # scores at every (outer, inner) node: η = η_q + w·centre + w·offset, (n_obs, Q, R)
    eta_q = eta0[:, None] + jnp.einsum("ok,oqk->oq", lam_obs, alpha_q[fam])
    n_cells = n_families * n_benchmarks
    cen = jnp.swapaxes(centre, 1, 2).reshape(n_cells, centre.shape[1], -1)[cell]  # (n_obs, Q, m)
    off = offsets.reshape(n_cells, *offsets.shape[2:])[cell]  # (n_obs, R, m)
    eta = (eta_q + jnp.sum(cen * w[:, None, :], axis=-1))[..., None] + jnp.sum(off * w[:, None, :], axis=-1)[:, None, :]
    c, log_phi, _, kappa = obs_terms(params, arrays, floors)
    ll = beta_logpdf(eta, arrays["log_y"][:, None, None], arrays["log1m_y"][:, None, None],
                     c[:, None, None], log_phi[:, None, None], bound, kappa=expand(kappa, 1, 2))
    J = n_benchmarks
    ll_cell = jax.ops.segment_sum(ll, cell, num_segments=n_cells)  # (F·J, Q, R)
    ll_cell = jnp.swapaxes(ll_cell.reshape(n_families, J, *ll_cell.shape[1:]), 1, 2)  # (F, Q, J, R)
    log_phi_x = -0.5 * jnp.sum(x**2, axis=-1) - 0.5 * x.shape[-1] * LOG_2PI  # (R,)
    inner = (ll_cell + cell_log_prior(r_qr, rho[:, None, :]) + (log_w - log_phi_x)
             + log_det_c[:, None, :, None])
    ll_q = jnp.sum(jax.scipy.special.logsumexp(inner, axis=-1), axis=-1)  # (F, Q)
    lp = log_prior(alpha_q, params["corr"])
    log_phi_z = -0.5 * jnp.sum(nodes**2, axis=1) - 0.5 * K * LOG_2PI
    log_det_S = -jnp.sum(jnp.log(jnp.diagonal(R, axis1=1, axis2=2)), axis=1)
    terms = log_weights[None, :] + ll_q + lp - log_phi_z[None, :]
    return alpha, alpha_q, terms, log_det_S, r_qr, inner


def joint_mode_and_scale(params, arrays, floors, start, n_families: int, n_benchmarks: int, bound: float,
                         track: bool = False):
    """The joint modes (F, K + m·J), the scale of the α-marginal H_α|u (F, K, K) and the Fisher
    information of each (family, benchmark) cell in its effects (F, J, m, m) there: the centre and
    curvatures of importance sampling proposals for (α, r). ``track``: the modes differentiable in
    the parameters."""
    x = converge_joint_modes(params, arrays, floors, start, n_families, n_benchmarks, bound)
    lam = params["loadings"]
    K = lam.shape[0]
    m = n_cell_effects(params)
    if track:
        alpha, r, eta0, lam_obs, w = tracked_joint_modes(params, arrays, floors, x, n_families, n_benchmarks, bound)
        x = join_effects(alpha, r)
    else:
        lam_obs = obs_terms(params, arrays, floors)[2]
        eta0 = fixed_eta(params, arrays)
        w = cell_design(arrays, m)
        alpha, r = split_effects(x, K, m)
    eta = _eta(eta0, lam_obs, alpha, r, w, arrays, n_benchmarks)
    _, _, Fd = _stats(params, arrays, floors, eta, w, n_families, n_benchmarks, bound)
    return x, schur(lam, _precision(params), cell_system(Fd, cell_precisions(params))[1]), Fd
