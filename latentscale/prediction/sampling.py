"""Draws behind posteriors and predictions (JAX kernels, vectorized over parameter draws and families).

- :func:`parameter_draws`: θ ~ N(θ̂, Cov(θ̂)) in the unconstrained coordinates (so every draw
  satisfies the constraints), the first draw being θ̂ itself when uncertainty is off;
- :func:`family_draws`: equally weighted draws of each family's α from p(α | y_f, θ) for every
  parameter draw: importance sampling from a multivariate t centred at the posterior mode
  (found at θ̂ and moved to each draw linearly in θ; scale from the curvature at θ̂), then
  systematic resampling;
- :func:`score_draws`: expected scores μ and observed scores y ~ Beta(φμ, φ(1 − μ)) for new
  models, given draws of their skills.

Everything is seeded: the same inputs and seed give the same draws.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from latentscale.estimation import smallmat as sm
from latentscale.estimation.quadrature import family_modes
from latentscale.model.likelihood import ETA_BOUND, family_loglik_at, log_prior
from latentscale.model.params import ModelSpec, unpack

#: Degrees of freedom and scale inflation of the t proposal (heavier tails than the posterior).
PROPOSAL_DF = 5.0
PROPOSAL_INFLATE = 1.2


def parameter_draws(theta: np.ndarray, cov: np.ndarray | None, n: int, seed: int) -> np.ndarray:
    """(n, d) draws of the unconstrained parameters from N(θ̂, cov); ``cov=None``: n copies of θ̂."""
    theta = np.asarray(theta, float)
    if cov is None:
        return np.repeat(theta[None], n, axis=0)
    w, V = np.linalg.eigh((cov + cov.T) / 2.0)
    root = V * np.sqrt(np.clip(w, 0.0, None))
    z = np.random.default_rng(seed).standard_normal((n, theta.size))
    return theta[None] + z @ root.T


def _t_logpdf_std(t, df):
    """log density of the standard multivariate t (identity scale) at t (..., K)."""
    K = t.shape[-1]
    return (gammaln((df + K) / 2) - gammaln(df / 2) - 0.5 * K * jnp.log(df * jnp.pi)
            - 0.5 * (df + K) * jnp.log1p(jnp.sum(t**2, axis=-1) / df))


def _one_family_draws(theta, key, center, mode0, dmode, scale, arrays, spec: ModelSpec, n_families: int,
                      n_proposals: int, n_out: int):
    """α draws (F, n_out, K) and the effective sample sizes (F,) for one parameter vector.

    The proposal is a multivariate t centred at the mode linearized in θ (the mode at θ̂ plus
    its derivative times θ − θ̂), with the curvature at θ̂ for scale: no mode search per draw;
    the importance weights make the draws exact for this θ."""
    params = unpack(theta, spec)
    floors = jnp.asarray(spec.floors)
    K = spec.K
    mode = mode0 + jnp.einsum("fkd,d->fk", dmode, theta - center)
    k_z, k_u, k_r = jax.random.split(key, 3)
    z = jax.random.normal(k_z, (n_families, n_proposals, K))
    u = jax.random.chisquare(k_u, PROPOSAL_DF, (n_families, n_proposals, 1)) / PROPOSAL_DF
    t = z / jnp.sqrt(u)
    alpha = mode[:, None, :] + jnp.einsum("fkl,fml->fmk", scale, t)  # (F, M, K)
    ll = jax.vmap(lambda a: family_loglik_at(a, params, arrays, floors, n_families), in_axes=1, out_axes=1)(alpha)
    log_q = _t_logpdf_std(t, PROPOSAL_DF) - jnp.sum(jnp.log(jnp.abs(jnp.diagonal(scale, axis1=1, axis2=2))),
                                                    axis=1)[:, None]
    logw = ll + log_prior(alpha, params["corr_chol"]) - log_q
    logw = jnp.where(jnp.isfinite(logw), logw, -jnp.inf)
    w = jax.nn.softmax(logw, axis=1)  # (F, M)
    ess = 1.0 / jnp.sum(w**2, axis=1)
    # Systematic resampling: one uniform per family, n_out evenly spaced positions.
    pos = (jax.random.uniform(k_r, (n_families, 1)) + jnp.arange(n_out)[None, :]) / n_out
    cdf = jnp.cumsum(w, axis=1)
    idx = jax.vmap(lambda c, p: jnp.searchsorted(c, p))(cdf / cdf[:, -1:], pos)
    idx = jnp.minimum(idx, n_proposals - 1)
    return jnp.take_along_axis(alpha, idx[:, :, None], axis=1), ess


@partial(jax.jit, static_argnames=("spec", "n_families", "n_proposals", "n_out"))
def _family_draws(center, thetas, keys, arrays, spec, n_families, n_proposals, n_out):
    floors = jnp.asarray(spec.floors)

    def modes(th):
        return family_modes(unpack(th, spec), arrays, floors, n_families, spec.J)

    mode0, H = modes(center)
    # d mode / d θ (F, K, d), forward mode through the tracked Newton step (implicit derivative).
    dmode = jax.jacfwd(lambda th: modes(th)[0])(center)
    scale = sm.inv_lower_t(sm.cholesky(H)) * PROPOSAL_INFLATE  # (F, K, K)
    return jax.lax.map(
        lambda tk: _one_family_draws(tk[0], tk[1], center, mode0, dmode, scale, arrays, spec, n_families,
                                     n_proposals, n_out),
        (thetas, keys),
    )


def family_draws(thetas: np.ndarray, spec: ModelSpec, design, n_out: int, seed: int,
                 n_proposals: int | None = None, center: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Posterior draws of every family's α in ``design``: (S, F, n_out, K), and the importance
    sampling effective sample sizes (S, F) (of ``n_proposals``, default 4 × n_out). ``center``
    (default: the mean of ``thetas``; θ̂ in practice) is where the modes and their derivatives are
    computed; each parameter draw's proposal is centred at the mode linearized from there."""
    n_proposals = n_proposals or 4 * n_out
    thetas = np.asarray(thetas, float)
    center = thetas.mean(axis=0) if center is None else np.asarray(center, float)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(thetas))
    padded = design.padded()  # compiled once per size bucket, not once per table
    alpha, ess = _family_draws(jnp.asarray(center), jnp.asarray(thetas), keys, padded.arrays(), spec,
                               padded.n_families, n_proposals, n_out)
    F = design.n_families
    return np.asarray(alpha)[:, :F], np.asarray(ess)[:, :F]


def prior_draws(thetas: np.ndarray, spec: ModelSpec, n_out: int, seed: int) -> np.ndarray:
    """Draws of α from the prior N(0, Σ) of a family with no rows, for every parameter draw: (S, n_out, K)."""
    L = jax.vmap(lambda th: unpack(th, spec)["corr_chol"])(jnp.asarray(thetas))  # (S, K, K)
    z = jax.random.normal(jax.random.PRNGKey(seed), (len(thetas), n_out, spec.K))
    return np.asarray(jnp.einsum("skl,sml->smk", L, z))


@partial(jax.jit, static_argnames=("spec",))
def _expected_scores(thetas, alpha, X, spec):
    """μ (S, M, N, J) for N new models with skills α (S, M, N, K) and covariates X (N, p), and φ (S, J)."""
    floors = jnp.asarray(spec.floors)

    def one(theta, a):
        p = unpack(theta, spec)
        skills = (X @ p["B"])[None] + a  # (M, N, K)
        eta = jnp.clip(skills @ p["loadings"] + p["intercepts"], -ETA_BOUND, ETA_BOUND)
        return floors + (1.0 - floors) * jax.nn.sigmoid(eta), jnp.exp(p["log_precision"])

    return jax.vmap(one)(thetas, alpha)


def score_draws(thetas: np.ndarray, alpha: np.ndarray, X: np.ndarray, spec: ModelSpec,
                rng: np.random.Generator, n_rep: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Expected scores μ (S, M, N, J) and observed scores y ~ Beta(φμ, φ(1 − μ)), ``n_rep`` per μ
    (n_rep·S, M, N, J), for N new models with skills α (S, M, N, K) and covariates X (N, p).
    (NumPy's Beta sampler: many times faster than JAX's on CPU.)"""
    mu, phi = _expected_scores(jnp.asarray(thetas), jnp.asarray(alpha), jnp.asarray(X), spec)
    mu = np.asarray(mu)
    phi = np.asarray(phi)[:, None, None, :]
    a = np.maximum(phi * mu, 1e-12)
    b = np.maximum(phi * (1.0 - mu), 1e-12)
    y = rng.beta(a, b, size=(n_rep,) + mu.shape)
    return mu, y.reshape((n_rep * mu.shape[0],) + mu.shape[1:])
