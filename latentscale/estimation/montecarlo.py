"""Monte Carlo estimates of the marginal log-likelihood, to check the quadrature.

- :func:`importance_loglik`: importance sampling from a multivariate t centred at each
  family's posterior mode (scale from the curvature there), with a standard error;
- :func:`prior_loglik`: brute force, draws of α from the prior N(0, Σ).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from latentscale.estimation import smallmat as sm
from latentscale.estimation.quadrature import family_modes
from latentscale.model.design import Design
from latentscale.model.likelihood import family_loglik_at, log_prior
from latentscale.model.params import ModelSpec, unpack


@partial(jax.jit, static_argnames=("n_families",))
def _loglik_draws(alpha, params, arrays, floors, n_families):
    """(S, F) log p(y_f | α_s) for α of shape (S, F, K)."""
    return jax.lax.map(lambda a: family_loglik_at(a, params, arrays, floors, n_families), alpha)


def _accumulate(log_terms_chunks):
    """Per-family log of the mean of exp(terms) and its delta-method standard error."""
    terms = np.concatenate(log_terms_chunks, axis=0)  # (S, F)
    m = terms.max(axis=0)
    w = np.exp(terms - m)
    mean = w.mean(axis=0)
    se = w.std(axis=0, ddof=1) / np.sqrt(terms.shape[0]) / mean
    return m + np.log(mean), se


def importance_loglik(theta, spec: ModelSpec, design: Design, n_draws: int = 100_000, seed: int = 0,
                      df: float = 5.0, inflate: float = 1.2, chunk: int = 2_000):
    """Importance-sampling log-likelihood: (total, its standard error, per-family values)."""
    params = unpack(jnp.asarray(theta), spec)
    arrays = design.arrays()
    floors = jnp.asarray(spec.floors)
    F, K = design.n_families, spec.K
    mode, H = family_modes(params, arrays, floors, F, spec.J)
    S = np.asarray(sm.inv_lower_t(sm.cholesky(H))) * inflate  # (F, K, K)
    mode = np.asarray(mode)
    logdet_S = np.log(np.abs(np.diagonal(S, axis1=1, axis2=2))).sum(axis=1)
    rng = np.random.default_rng(seed)
    from scipy.special import gammaln

    chunks = []
    for start in range(0, n_draws, chunk):
        n = min(chunk, n_draws - start)
        z = rng.standard_normal((n, F, K))
        u = rng.chisquare(df, size=(n, F, 1)) / df
        t = z / np.sqrt(u)
        alpha = mode[None] + np.einsum("fkl,sfl->sfk", S, t)
        ll = np.asarray(_loglik_draws(jnp.asarray(alpha), params, arrays, floors, F))
        lp = np.asarray(log_prior(jnp.asarray(alpha), params["corr_chol"]))
        # log density of the multivariate t proposal
        q = np.sum(t**2, axis=2)
        log_t = (gammaln((df + K) / 2) - gammaln(df / 2) - 0.5 * K * np.log(df * np.pi)
                 - 0.5 * (df + K) * np.log1p(q / df)) - logdet_S[None]
        chunks.append(ll + lp - log_t)
    per_family, se = _accumulate(chunks)
    return float(per_family.sum()), float(np.sqrt(np.sum(se**2))), per_family


def prior_loglik(theta, spec: ModelSpec, design: Design, n_draws: int = 200_000, seed: int = 0, chunk: int = 5_000):
    """Brute-force Monte Carlo with α drawn from N(0, Σ): (total, standard error, per-family)."""
    params = unpack(jnp.asarray(theta), spec)
    arrays = design.arrays()
    floors = jnp.asarray(spec.floors)
    F, K = design.n_families, spec.K
    L = np.asarray(params["corr_chol"])
    rng = np.random.default_rng(seed)
    chunks = []
    for start in range(0, n_draws, chunk):
        n = min(chunk, n_draws - start)
        alpha = rng.standard_normal((n, F, K)) @ L.T
        chunks.append(np.asarray(_loglik_draws(jnp.asarray(alpha), params, arrays, floors, F)))
    per_family, se = _accumulate(chunks)
    return float(per_family.sum()), float(np.sqrt(np.sum(se**2))), per_family
