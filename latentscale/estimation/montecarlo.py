"""Monte Carlo estimates of the marginal log-likelihood, to check the quadrature.

- :func:`importance_loglik`: importance sampling from a multivariate t centred at each family's
  posterior mode (scale from the curvature there), with a standard error;
- :func:`prior_loglik`: brute force, draws of α from the prior N(0, Σ).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from latentscale.config import float64, quick_jit
from latentscale.estimation import smallmat as sm
from latentscale.estimation.adaptive import mode_and_scale
from latentscale.model.design import Design
from latentscale.model.observation import eta_bound, family_loglik_at, log_prior, t_logpdf_std
from latentscale.model.params import layout
from latentscale.model.spec import ModelSpec

#: Degrees of freedom and scale inflation of the t proposal (heavier tails than the posterior).
PROPOSAL_DF = 5.0
PROPOSAL_INFLATE = 1.2


@partial(quick_jit, static_argnames=("spec", "n_families"))
def _loglik_draws(alpha, theta, arrays, spec, n_families):
    """(S, F) log p(y_f | α_s) + log N(α_s; 0, Σ) for α of shape (S, F, K)."""
    params = layout(spec).unpack(theta)
    floors, bound = arrays["floors"], eta_bound(spec.logit_clip)
    ll = jax.lax.map(lambda a: family_loglik_at(a, params, arrays, floors, n_families, bound), alpha)
    return ll, log_prior(alpha, params["corr"])


@partial(quick_jit, static_argnames=("spec", "n_families"))
def _proposal(theta, arrays, spec, n_families):
    params = layout(spec).unpack(theta)
    K = spec.K
    mode, H = mode_and_scale(params, arrays, arrays["floors"], jnp.zeros((n_families, K)), n_families,
                             spec.J, eta_bound(spec.logit_clip))
    return mode, sm.inv_lower_t(sm.cholesky(H)), params["corr"]


def _accumulate(log_terms_chunks):
    """Per-family log of the mean of exp(terms) and its delta-method standard error."""
    terms = np.concatenate(log_terms_chunks, axis=0)  # (S, F)
    m = terms.max(axis=0)
    w = np.exp(terms - m)
    mean = w.mean(axis=0)
    se = w.std(axis=0, ddof=1) / np.sqrt(terms.shape[0]) / mean
    return m + np.log(mean), se


@float64
def importance_loglik(theta, spec: ModelSpec, design: Design, n_draws: int = 100_000, seed: int = 0,
                      df: float = PROPOSAL_DF, inflate: float = PROPOSAL_INFLATE, chunk: int = 2_000):
    """Importance-sampling log-likelihood: (total, its standard error, per-family values)."""
    arrays = {**design.arrays(), "floors": jnp.asarray(spec.floors)}
    F, K = design.n_families, spec.K
    th = jnp.asarray(np.asarray(theta, float))
    mode, S, _ = (np.asarray(a) for a in _proposal(th, arrays, spec.structure, F))
    S = S * inflate  # (F, K, K)
    logdet_S = np.log(np.abs(np.diagonal(S, axis1=1, axis2=2))).sum(axis=1)
    rng = np.random.default_rng(seed)
    chunks = []
    for start in range(0, n_draws, chunk):
        n = min(chunk, n_draws - start)
        z = rng.standard_normal((n, F, K))
        u = rng.chisquare(df, size=(n, F, 1)) / df
        t = z / np.sqrt(u)
        alpha = mode[None] + np.einsum("fkl,sfl->sfk", S, t)
        ll, lp = (np.asarray(a) for a in _loglik_draws(jnp.asarray(alpha), th, arrays, spec.structure, F))
        chunks.append(ll + lp - (t_logpdf_std(t, df) - logdet_S[None]))
    per_family, se = _accumulate(chunks)
    return float(per_family.sum()), float(np.sqrt(np.sum(se**2))), per_family


@float64
def prior_loglik(theta, spec: ModelSpec, design: Design, n_draws: int = 200_000, seed: int = 0, chunk: int = 5_000):
    """Brute-force Monte Carlo with α drawn from N(0, Σ): (total, standard error, per-family)."""
    arrays = {**design.arrays(), "floors": jnp.asarray(spec.floors)}
    F, K = design.n_families, spec.K
    theta = np.asarray(theta, float)
    L = np.asarray(layout(spec).unpack(theta)["corr"])
    th = jnp.asarray(theta)
    rng = np.random.default_rng(seed)
    chunks = []
    for start in range(0, n_draws, chunk):
        n = min(chunk, n_draws - start)
        alpha = rng.standard_normal((n, F, K)) @ L.T
        chunks.append(np.asarray(_loglik_draws(jnp.asarray(alpha), th, arrays, spec.structure, F)[0]))
    per_family, se = _accumulate(chunks)
    return float(per_family.sum()), float(np.sqrt(np.sum(se**2))), per_family
