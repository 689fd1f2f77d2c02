"""Beta observation model and the per-family joint density (pure JAX functions of params and data).

μ_ij = c_j + (1 − c_j) · sigmoid(η_ij), η_ij = λ_jᵀ θ_i + b_j, θ_i = Bᵀ x_i + α_f(i),
y_ij | α ~ Beta(φ_j μ_ij, φ_j (1 − μ_ij)).  All functions act on the long-form arrays of
:class:`latentscale.model.design.Design` and are vectorized over observations and families.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from latentscale.model.special import digamma, trigamma

LOG_2PI = jnp.log(2.0 * jnp.pi)
TINY = 1e-100  # keeps Beta shape parameters off an underflowed 0 (finite log-density)
ETA_BOUND = 35.0  # η is clipped to ±35 (μ within 1e-15 of its limits): a numerical guard only


def beta_logpdf(eta, log_y, log1m_y, c, log_phi):
    """log Beta(y | φμ, φ(1−μ)) with μ = c + (1−c)·sigmoid(η); broadcasts."""
    phi = jnp.exp(log_phi)
    eta = jnp.clip(eta, -ETA_BOUND, ETA_BOUND)
    a = jnp.maximum(phi * (c + (1.0 - c) * jax.nn.sigmoid(eta)), TINY)
    b = jnp.maximum(phi * (1.0 - c) * jax.nn.sigmoid(-eta), TINY)
    return (a - 1.0) * log_y + (b - 1.0) * log1m_y - gammaln(a) - gammaln(b) + gammaln(phi)


def beta_eta_derivatives(eta, log_y, log1m_y, c, log_phi):
    """First and second derivative of :func:`beta_logpdf` in η, and the Fisher information in η."""
    phi = jnp.exp(log_phi)
    eta = jnp.clip(eta, -ETA_BOUND, ETA_BOUND)
    s = jax.nn.sigmoid(eta)
    a = jnp.maximum(phi * (c + (1.0 - c) * s), TINY)
    b = jnp.maximum(phi * (1.0 - c) * jax.nn.sigmoid(-eta), TINY)
    l_mu = phi * (log_y - log1m_y - digamma(a) + digamma(b))
    l_mumu = -(phi**2) * (trigamma(a) + trigamma(b))
    d_mu = (1.0 - c) * s * (1.0 - s)
    d2_mu = d_mu * (1.0 - 2.0 * s)
    fisher = -l_mumu * d_mu**2
    return l_mu * d_mu, l_mumu * d_mu**2 + l_mu * d2_mu, fisher


def fixed_eta(params, arrays):
    """η of every observation at α = 0: λ_jᵀ Bᵀ x_i + b_j, shape (n_obs,)."""
    lam = params["loadings"]  # (K, J)
    theta_fixed = arrays["X"] @ params["B"]  # (n_models, K)
    skill = theta_fixed[arrays["obs_model"]]  # (n_obs, K)
    lam_obs = lam.T[arrays["obs_bench"]]  # (n_obs, K)
    return jnp.sum(skill * lam_obs, axis=1) + params["intercepts"][arrays["obs_bench"]]


def log_prior(alpha, corr_chol):
    """log N_K(α; 0, L Lᵀ) for α of shape (..., K)."""
    K = corr_chol.shape[0]
    flat = alpha.reshape(-1, K).T
    z = jax.scipy.linalg.solve_triangular(corr_chol, flat, lower=True)
    quad = jnp.sum(z**2, axis=0).reshape(alpha.shape[:-1])
    return -0.5 * quad - jnp.sum(jnp.log(jnp.diag(corr_chol))) - 0.5 * K * LOG_2PI


def obs_terms(params, arrays, floors):
    """Per-observation constants: floor, log precision and loading vector, each gathered by benchmark."""
    j = arrays["obs_bench"]
    return floors[j], params["log_precision"][j], params["loadings"].T[j]


def family_sums(values, arrays, n_families: int, n_benchmarks: int):
    """Sum per-observation values into a (F, J) table by family and benchmark."""
    idx = arrays["obs_family"] * n_benchmarks + arrays["obs_bench"]
    out = jax.ops.segment_sum(values, idx, num_segments=n_families * n_benchmarks)
    return out.reshape(n_families, n_benchmarks)


def family_loglik_at(alpha, params, arrays, floors, n_families: int):
    """Σ over each family's observations of log p(y | α_f), for α of shape (F, K); returns (F,)."""
    c, log_phi, lam_obs = obs_terms(params, arrays, floors)
    eta = fixed_eta(params, arrays) + jnp.sum(lam_obs * alpha[arrays["obs_family"]], axis=1)
    ll = beta_logpdf(eta, arrays["log_y"], arrays["log1m_y"], c, log_phi)
    return jax.ops.segment_sum(ll, arrays["obs_family"], num_segments=n_families)
