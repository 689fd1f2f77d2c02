"""The Beta observation model and the per-family joint density (pure functions of params and data).

μ_ij = c_j + (1 − c_j) · sigmoid(η_ij), η_ij = λ_jᵀ θ_i + b_j, θ_i = Bᵀ x_i + α_f(i),
y_ij | α ~ Beta(φ_j μ_ij, φ_j (1 − μ_ij)).

With ``logit_clip = L`` (the reference code's variant) η is clamped to [−L, L] before the sigmoid;
otherwise it is clipped to ±35 (μ within 1e-15 of its limits) as a numerical guard only. The
JAX functions act on the long-form arrays of :class:`latentscale.model.design.Design` and are
vectorized over observations and families; the mean score is also available for numpy.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

LOG_2PI = float(np.log(2.0 * np.pi))
TINY = 1e-100  # keeps Beta shape parameters off an underflowed 0 (finite log-density)
ETA_BOUND = 35.0  # numerical guard on η when the model has no logit clamp


def eta_bound(logit_clip: float | None) -> float:
    """Where η is cut: the model's clamp L, or the numerical guard."""
    return ETA_BOUND if logit_clip is None else float(logit_clip)


# ---- special functions ----------------------------------------------------------------------
# Upward recurrence to x + 6 (or 10) and the asymptotic series there: accurate to about 1e-12
# absolute for x > 0, a few elementwise operations each, and each function's derivative is the
# next one (custom JVPs), so automatic differentiation never unrolls the series.
_HALF_LOG_2PI = float(0.5 * np.log(2.0 * np.pi))
_SHIFT = 10


def _recurrence6(x):
    """p = x(x+1)…(x+5) as two products and Σ_{i<6} 1/(x+i) from their derivatives."""
    x1, x2, x3, x4, x5 = x + 1.0, x + 2.0, x + 3.0, x + 4.0, x + 5.0
    p1, p2 = x * x1 * x2, x3 * x4 * x5
    d1 = x1 * x2 + x * x2 + x * x1
    d2 = x4 * x5 + x3 * x5 + x3 * x4
    return p1, p2, d1 / p1 + d2 / p2


def log_gamma_and_digamma(x):
    """log Γ(x) and ψ(x) for x > 0 in one pass (they share the recurrence and log z)."""
    p1, p2, acc = _recurrence6(x)
    z = x + 6.0
    lz = jnp.log(z)
    iz = 1.0 / z
    iz2 = iz * iz
    lg = ((z - 0.5) * lz - z + _HALF_LOG_2PI
          + iz * (1 / 12 - iz2 * (1 / 360 - iz2 * (1 / 1260 - iz2 * (1 / 1680 - iz2 / 1188))))
          - jnp.log(p1) - jnp.log(p2))
    dg = lz - 0.5 * iz - iz2 * (1 / 12 - iz2 * (1 / 120 - iz2 * (1 / 252 - iz2 * (1 / 240 - iz2 / 132)))) - acc
    return lg, dg


@jax.custom_jvp
def digamma(x):
    """ψ(x) for x > 0 (derivative: :func:`trigamma`)."""
    return log_gamma_and_digamma(x)[1]


@digamma.defjvp
def _digamma_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return digamma(x), trigamma(x) * dx


@jax.custom_jvp
def trigamma(x):
    """ψ₁(x) for x > 0 (derivative: :func:`tetragamma`)."""
    acc = jnp.zeros_like(x)
    for i in range(_SHIFT):
        acc = acc + 1.0 / ((x + i) * (x + i))
    z = x + _SHIFT
    iz = 1.0 / z
    z2 = iz * iz
    series = iz + 0.5 * z2 + iz * z2 * (1 / 6 - z2 * (1 / 30 - z2 * (1 / 42 - z2 * (1 / 30 - z2 * 5 / 66))))
    return series + acc


@trigamma.defjvp
def _trigamma_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return trigamma(x), tetragamma(x) * dx


def tetragamma(x):
    """ψ₂(x) for x > 0."""
    acc = jnp.zeros_like(x)
    for i in range(_SHIFT):
        acc = acc + 2.0 / ((x + i) * (x + i) * (x + i))
    z = x + _SHIFT
    iz = 1.0 / z
    z2 = iz * iz
    series = -z2 - iz * z2 - z2 * z2 * (0.5 - z2 * (1 / 6 - z2 * (1 / 6 - z2 * (3 / 10 - z2 * 5 / 6))))
    return series - acc


# ---- the Beta density in η ------------------------------------------------------------------
def _shapes(eta, c, log_phi, bound, kappa=None):
    tiny = 1e-30 if eta.dtype == jnp.float32 else TINY
    phi = jnp.exp(log_phi)
    eta = jnp.clip(eta, -bound, bound)
    if kappa is None:
        a = jnp.maximum(phi * (c + (1.0 - c) * jax.nn.sigmoid(eta)), tiny)
        b = jnp.maximum(phi * (1.0 - c) * jax.nn.sigmoid(-eta), tiny)
    else:  # a ceiling: μ = c + (1 − c)·κ·sigmoid(η), 1 − μ = (1 − c)·((1 − κ) + κ·sigmoid(−η))
        a = jnp.maximum(phi * (c + (1.0 - c) * kappa * jax.nn.sigmoid(eta)), tiny)
        b = jnp.maximum(phi * (1.0 - c) * ((1.0 - kappa) + kappa * jax.nn.sigmoid(-eta)), tiny)
    return phi, eta, a, b


@partial(jax.custom_jvp, nondiff_argnums=(5,))
def _beta_core(eta, log_y, log1m_y, c, log_phi, bound):
    """log Beta(y | φμ, φ(1−μ)) without its log Γ(φ) term."""
    _, _, a, b = _shapes(eta, c, log_phi, bound)
    lga, _ = log_gamma_and_digamma(a)
    lgb, _ = log_gamma_and_digamma(b)
    return (a - 1.0) * log_y + (b - 1.0) * log1m_y - lga - lgb


def _is_zero(t) -> bool:
    return isinstance(t, jax.custom_derivatives.SymbolicZero)


def _beta_core_jvp(bound, primals, tangents):
    """Value and derivative in one pass: log Γ and ψ of each shape parameter share their work."""
    eta, log_y, log1m_y, c, log_phi = primals
    d_eta, d_log_y, d_log1m_y, d_c, d_log_phi = tangents
    phi, clipped, a, b = _shapes(eta, c, log_phi, bound)
    lga, dga = log_gamma_and_digamma(a)
    lgb, dgb = log_gamma_and_digamma(b)
    value = (a - 1.0) * log_y + (b - 1.0) * log1m_y - lga - lgb
    ra, rb = log_y - dga, log1m_y - dgb
    s = jax.nn.sigmoid(clipped)
    inside = jnp.abs(eta) < bound
    g_eta = jnp.where(inside, phi * (1.0 - c) * s * (1.0 - s), 0.0) * (ra - rb)
    g_log_phi = a * ra + b * rb
    g_c = phi * (1.0 - s) * (ra - rb)
    terms = [(g_eta, d_eta), (g_log_phi, d_log_phi), (g_c, d_c), (a - 1.0, d_log_y), (b - 1.0, d_log1m_y)]
    parts = [g * d for g, d in terms if not _is_zero(d)]
    tangent = sum(parts[1:], parts[0]) if parts else jnp.zeros_like(value)
    return value, tangent


_beta_core.defjvp(_beta_core_jvp, symbolic_zeros=True)


@partial(jax.custom_jvp, nondiff_argnums=(6,))
def _beta_core_k(eta, log_y, log1m_y, c, log_phi, kappa, bound):
    """:func:`_beta_core` with a ceiling share κ: μ = c + (1 − c)·κ·sigmoid(η)."""
    _, _, a, b = _shapes(eta, c, log_phi, bound, kappa)
    return (a - 1.0) * log_y + (b - 1.0) * log1m_y - log_gamma_and_digamma(a)[0] - log_gamma_and_digamma(b)[0]


def _beta_core_k_jvp(bound, primals, tangents):
    eta, log_y, log1m_y, c, log_phi, kappa = primals
    d_eta, d_log_y, d_log1m_y, d_c, d_log_phi, d_kappa = tangents
    phi, clipped, a, b = _shapes(eta, c, log_phi, bound, kappa)
    lga, dga = log_gamma_and_digamma(a)
    lgb, dgb = log_gamma_and_digamma(b)
    value = (a - 1.0) * log_y + (b - 1.0) * log1m_y - lga - lgb
    r = phi * ((log_y - dga) - (log1m_y - dgb))  # ∂ℓ/∂μ
    s = jax.nn.sigmoid(clipped)
    inside = jnp.abs(eta) < bound
    terms = [(jnp.where(inside, (1.0 - c) * kappa * s * (1.0 - s), 0.0) * r, d_eta),
             (a * (log_y - dga) + b * (log1m_y - dgb), d_log_phi), ((1.0 - kappa * s) * r, d_c),
             ((1.0 - c) * s * r, d_kappa), (a - 1.0, d_log_y), (b - 1.0, d_log1m_y)]
    parts = [g * d for g, d in terms if not _is_zero(d)]
    tangent = sum(parts[1:], parts[0]) if parts else jnp.zeros_like(value)
    return value, tangent


_beta_core_k.defjvp(_beta_core_k_jvp, symbolic_zeros=True)


# ---- the power link: μ = c + (1 − c)·κ·g(η), g = sigmoid(η + log γ)^γ --------------------------
def _link_shapes(eta, c, log_phi, kappa, gamma, bound):
    """φ, log s and s = sigmoid(clip(η) + log γ), g = s^γ, and the Beta shapes a = φμ, b = φ(1 − μ),
    with 1 − κg formed as (1 − κ) − κ·expm1(γ·log s) (no cancellation near μ = 1)."""
    tiny = 1e-30 if eta.dtype == jnp.float32 else TINY
    phi = jnp.exp(log_phi)
    z = jnp.clip(eta, -bound, bound) + jnp.log(gamma)
    log_s = jax.nn.log_sigmoid(z)
    g = jnp.exp(gamma * log_s)
    a = jnp.maximum(phi * (c + (1.0 - c) * kappa * g), tiny)
    b = jnp.maximum(phi * (1.0 - c) * ((1.0 - kappa) - kappa * jnp.expm1(gamma * log_s)), tiny)
    return phi, log_s, jax.nn.sigmoid(z), g, a, b


@partial(jax.custom_jvp, nondiff_argnums=(7,))
def _beta_core_link(eta, log_y, log1m_y, c, log_phi, kappa, gamma, bound):
    """:func:`_beta_core` with the power link μ = c + (1 − c)·κ·sigmoid(η + log γ)^γ."""
    _, _, _, _, a, b = _link_shapes(eta, c, log_phi, kappa, gamma, bound)
    return (a - 1.0) * log_y + (b - 1.0) * log1m_y - log_gamma_and_digamma(a)[0] - log_gamma_and_digamma(b)[0]


def _beta_core_link_jvp(bound, primals, tangents):
    eta, log_y, log1m_y, c, log_phi, kappa, gamma = primals
    d_eta, d_log_y, d_log1m_y, d_c, d_log_phi, d_kappa, d_gamma = tangents
    phi, log_s, s, g, a, b = _link_shapes(eta, c, log_phi, kappa, gamma, bound)
    lga, dga = log_gamma_and_digamma(a)
    lgb, dgb = log_gamma_and_digamma(b)
    value = (a - 1.0) * log_y + (b - 1.0) * log1m_y - lga - lgb
    r = phi * ((log_y - dga) - (log1m_y - dgb))  # ∂ℓ/∂μ
    inside = jnp.abs(eta) < bound
    # dg/dη = γ·g·(1 − s), dg/dγ = g·(log s + 1 − s)
    terms = [(jnp.where(inside, (1.0 - c) * kappa * gamma * g * (1.0 - s), 0.0) * r, d_eta),
             (a * (log_y - dga) + b * (log1m_y - dgb), d_log_phi), ((1.0 - kappa * g) * r, d_c),
             ((1.0 - c) * g * r, d_kappa), ((1.0 - c) * kappa * g * (log_s + 1.0 - s) * r, d_gamma),
             (a - 1.0, d_log_y), (b - 1.0, d_log1m_y)]
    parts = [t * d for t, d in terms if not _is_zero(d)]
    tangent = sum(parts[1:], parts[0]) if parts else jnp.zeros_like(value)
    return value, tangent


_beta_core_link.defjvp(_beta_core_link_jvp, symbolic_zeros=True)


def beta_logpdf(eta, log_y, log1m_y, c, log_phi, bound: float = ETA_BOUND, normalized: bool = True, kappa=None):
    """log Beta(y | φμ, φ(1−μ)) with μ = c + (1−c)·sigmoid(clip(η, ±bound)) (times the ceiling share
    κ when given: μ = c + (1 − c)·κ·sigmoid(η); with ``kappa = (κ, γ)`` the power link
    μ = c + (1 − c)·κ·sigmoid(η + log γ)^γ); broadcasts. ``normalized=False`` leaves out the
    log Γ(φ) term (a caller with many evaluations per observation adds it once per observation)."""
    if kappa is None:
        eta, log_y, log1m_y, c, log_phi = jnp.broadcast_arrays(eta, log_y, log1m_y, c, log_phi)
        out = _beta_core(eta, log_y, log1m_y, c, log_phi, float(bound))
    elif isinstance(kappa, tuple):  # the power link (κ, γ)
        eta, log_y, log1m_y, c, log_phi, k, gam = jnp.broadcast_arrays(eta, log_y, log1m_y, c, log_phi, *kappa)
        out = _beta_core_link(eta, log_y, log1m_y, c, log_phi, k, gam, float(bound))
    else:
        eta, log_y, log1m_y, c, log_phi, kappa = jnp.broadcast_arrays(eta, log_y, log1m_y, c, log_phi, kappa)
        out = _beta_core_k(eta, log_y, log1m_y, c, log_phi, kappa, float(bound))
    return out + log_gamma_and_digamma(jnp.exp(log_phi))[0] if normalized else out


def beta_eta_derivatives(eta, log_y, log1m_y, c, log_phi, bound: float = ETA_BOUND, kappa=None):
    """First and second derivative of :func:`beta_logpdf` in η, and the Fisher information in η
    (all zero where the clip holds η, beyond ±bound)."""
    if isinstance(kappa, tuple):  # the power link: dμ/dη = (1 − c)κγ·g·(1 − s), g = s^γ,
        # s = sigmoid(η + log γ)
        k, gam = kappa
        phi, _, s, g, a, b = _link_shapes(eta, c, log_phi, k, gam, bound)
        d_mu = (1.0 - c) * k * gam * g * (1.0 - s)
        bend = gam * (1.0 - s) - s
    else:
        phi, clipped, a, b = _shapes(eta, c, log_phi, bound, kappa)
        s = jax.nn.sigmoid(clipped)
        d_mu = (1.0 - c) * s * (1.0 - s) if kappa is None else (1.0 - c) * kappa * s * (1.0 - s)
        bend = 1.0 - 2.0 * s
    l_mu = phi * (log_y - log1m_y - digamma(a) + digamma(b))
    l_mumu = -(phi**2) * (trigamma(a) + trigamma(b))
    d_mu = jnp.where(jnp.abs(eta) < bound, d_mu, 0.0)
    d2_mu = d_mu * bend
    fisher = -l_mumu * d_mu**2
    return l_mu * d_mu, l_mumu * d_mu**2 + l_mu * d2_mu, fisher


def mean_score(eta, c, bound: float = ETA_BOUND, kappa=None):
    """μ = c + (1 − c)·sigmoid(clip(η, ±bound)) (times the ceiling share κ when given; with
    ``kappa = (κ, γ)`` the power link c + (1 − c)·κ·sigmoid(η + log γ)^γ), for numpy or JAX arrays."""
    numpy = isinstance(eta, np.ndarray)
    if isinstance(kappa, tuple):
        xp = np if numpy else jnp
        z = xp.clip(eta, -bound, bound) + xp.log(kappa[1])
        log_s = -np.logaddexp(0.0, -z) if numpy else jax.nn.log_sigmoid(z)
        return c + (1.0 - c) * kappa[0] * xp.exp(kappa[1] * log_s)
    if numpy:
        from scipy.special import expit

        s = expit(np.clip(eta, -bound, bound))
    else:
        s = jax.nn.sigmoid(jnp.clip(eta, -bound, bound))
    return c + (1.0 - c) * s if kappa is None else c + (1.0 - c) * kappa * s


def floor_logit(y, c, eps: float = 0.02) -> np.ndarray:
    """logit of the floor-corrected scores (y − c)/(1 − c), clipped into [eps, 1 − eps]: the
    scale on which starting values are computed (numpy)."""
    frac = np.clip((np.asarray(y, float) - c) / (1.0 - np.asarray(c, float)), eps, 1.0 - eps)
    return np.log(frac / (1.0 - frac))


# ---- per-observation and per-family pieces --------------------------------------------------
def fixed_eta(params, arrays):
    """η of every observation at α = 0: λ_jᵀ Bᵀ x_i + b_j, shape (n_obs,)."""
    theta_fixed = arrays["X"] @ params["B"]  # (n_models, K)
    skill = theta_fixed[arrays["obs_model"]]  # (n_obs, K)
    lam_obs = params["loadings"].T[arrays["obs_bench"]]  # (n_obs, K)
    return jnp.sum(skill * lam_obs, axis=1) + params["intercepts"][arrays["obs_bench"]]


def obs_terms(params, arrays, floors):
    """Per-observation floor, log precision, loading vector and link shape (:func:`link_shares`), each
    gathered by benchmark (the log precision also by model when the precision depends on the covariates)."""
    j = arrays["obs_bench"]
    log_phi = jnp.log(params["precision"])[j]
    if "precision_slope" in params:  # log φ_ij = log φ_j + γ_jᵀ x_i
        log_phi = log_phi + jnp.sum(arrays["X"][arrays["obs_model"]] * params["precision_slope"].T[j], axis=1)
    return floors[j], log_phi, params["loadings"].T[j], link_shares(params, j)


def link_shares(params, index=None):
    """The link's shape per benchmark (gathered by ``index`` when given): None (the sigmoid), the
    ceiling share κ, or (κ, γ) with the power link (κ = 1 without a ceiling). Every function that
    takes ``kappa`` takes any of the three; numpy or JAX."""
    take = (lambda v: v) if index is None else (lambda v: v[index])
    kappa = take(params["ceiling"]) if "ceiling" in params else None
    if "link_power" not in params:
        return kappa
    gamma = take(params["link_power"])
    return (gamma * 0.0 + 1.0 if kappa is None else kappa, gamma)


def expand(kappa, *axes):
    """The link shape per observation (:func:`link_shares`) broadcast like the other per-observation
    terms (None stays None; numpy stays numpy)."""
    if kappa is None:
        return None
    if isinstance(kappa, tuple):
        return tuple(expand(k, *axes) for k in kappa)
    return np.expand_dims(kappa, axes) if isinstance(kappa, np.ndarray) else jnp.expand_dims(kappa, axes)


def precisions(params, X):
    """φ_ij of models with standardized covariates X (n, p): (n, J), numpy or JAX."""
    xp = np if isinstance(X, np.ndarray) and isinstance(params["precision"], np.ndarray) else jnp
    phi = xp.broadcast_to(params["precision"], (X.shape[0], params["precision"].shape[0]))
    if "precision_slope" in params:
        phi = phi * xp.exp(X @ params["precision_slope"])
    return phi


def log_prior(alpha, corr_chol):
    """log N_K(α; 0, L Lᵀ) for α of shape (..., K)."""
    K = corr_chol.shape[0]
    flat = alpha.reshape(-1, K).T
    z = jax.scipy.linalg.solve_triangular(corr_chol, flat, lower=True)
    quad = jnp.sum(z**2, axis=0).reshape(alpha.shape[:-1])
    return -0.5 * quad - jnp.sum(jnp.log(jnp.diag(corr_chol))) - 0.5 * K * LOG_2PI


def family_sums(values, arrays, n_families: int, n_benchmarks: int):
    """Sum per-observation values into a (F, J) table by family and benchmark."""
    idx = arrays["obs_family"] * n_benchmarks + arrays["obs_bench"]
    out = jax.ops.segment_sum(values, idx, num_segments=n_families * n_benchmarks)
    return out.reshape(n_families, n_benchmarks)


def family_loglik_at(alpha, params, arrays, floors, n_families: int, bound: float = ETA_BOUND, u=None):
    """Σ over each family's observations of log p(y | α), for α of shape (F, K) (and the families'
    residuals u (F, J) when the model has them, or their cells' effects (F, J, 2) with random slopes:
    u_fj + v_fj·z_i); returns (F,)."""
    c, log_phi, lam_obs, kappa = obs_terms(params, arrays, floors)
    eta = fixed_eta(params, arrays) + jnp.sum(lam_obs * alpha[arrays["obs_family"]], axis=1)
    if u is not None:
        cell = arrays["obs_family"] * u.shape[1] + arrays["obs_bench"]
        if u.ndim == 2:
            eta = eta + u.reshape(-1)[cell]
        else:  # u and the slope v of each cell
            r = u.reshape(-1, 2)[cell]
            eta = eta + r[:, 0] + r[:, 1] * arrays["X"][arrays["obs_model"], 0]
    ll = beta_logpdf(eta, arrays["log_y"], arrays["log1m_y"], c, log_phi, bound, kappa=kappa)
    return jax.ops.segment_sum(ll, arrays["obs_family"], num_segments=n_families)


def t_logpdf_std(t, df: float):
    """log density of the standard multivariate t (identity scale) at t (..., K), numpy or JAX."""
    xp = np if isinstance(t, np.ndarray) else jnp
    if xp is np:
        from scipy.special import gammaln as lg
    else:
        lg = gammaln
    K = t.shape[-1]
    return (lg((df + K) / 2) - lg(df / 2) - 0.5 * K * np.log(df * np.pi)
            - 0.5 * (df + K) * xp.log1p(xp.sum(t**2, axis=-1) / df))
