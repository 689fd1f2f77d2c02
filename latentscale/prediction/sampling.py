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

from latentscale.config import device_array, float64, quick_jit, thread_map
from latentscale.errors import InputError
from latentscale.estimation import smallmat as sm
from latentscale.estimation.adaptive import mode_and_scale
from latentscale.estimation.residual import (
    cell_log_prior,
    cell_precisions,
    cell_sds,
    cell_solve,
    cell_system,
    inner_scale,
    joint_mode_and_scale,
    split_effects,
)
from latentscale.estimation.montecarlo import PROPOSAL_DF, PROPOSAL_INFLATE
from latentscale.estimation.optimize import difference_steps
from latentscale.model.observation import (
    LOG_2PI,
    eta_bound,
    family_loglik_at,
    link_shares,
    log_prior,
    mean_score,
    precisions,
    t_logpdf_std,
)
from latentscale.model.params import layout
from latentscale.model.spec import ModelSpec


def tails(level: float) -> tuple[float, float]:
    """The quantiles (lower, upper) of an equal-tailed interval at ``level``."""
    if not 0.0 < level < 1.0:
        raise InputError(f"level must be between 0 and 1 (exclusive), got {level}")
    return (1.0 - level) / 2.0, (1.0 + level) / 2.0


def pct(level: float) -> str:
    return f"{100 * level:g}"


def theta_draws(fit, n: int, seed: int, parameter_uncertainty: bool, se: str = "sandwich") -> np.ndarray:
    """Parameter draws from N(θ̂, Cov θ̂) with the covariance ``se`` (observed, opg, sandwich; the
    sandwich falls back to the observed information, with a warning, for a fit without per-family
    scores); ``parameter_uncertainty=False``: n copies of θ̂."""
    cov = None
    if parameter_uncertainty:
        if se == "sandwich" and fit.hessian is not None and fit.score_outer is None:
            import warnings

            warnings.warn("this fit carries no per-family scores, so the sandwich covariance is not available; "
                          "using the observed information for the parameter draws", UserWarning, stacklevel=3)
            se = "observed"
        cov = checked_covariance(fit, se, "--no-parameter-uncertainty; parameter_uncertainty=False", "se")
    return parameter_draws(fit.theta, cov, n, seed)


def checked_covariance(fit, kind: str, leave_out: str, python_name: str) -> np.ndarray:
    """The fit's covariance of θ̂ of ``kind`` (observed, opg, sandwich), or an error that says what
    to do: refit with standard errors, use the outer product of the family scores, or leave the
    uncertainty out (``leave_out``: how, on the command line and in Python; ``python_name``: the
    Python argument that names the covariance)."""
    if fit.hessian is None and kind != "opg":
        raise InputError(f"this fit carries no Hessian, so parameter uncertainty cannot be propagated; refit with "
                         f"standard errors, or leave it out ({leave_out})")
    cov = fit.cov_theta(kind)
    if not np.all(np.isfinite(cov)):
        raise InputError(f"the fit's {kind} covariance is not finite (its Hessian is not negative definite), so "
                         f"parameter uncertainty cannot be propagated with it; use the outer product of the family "
                         f"scores (--se opg; {python_name}='opg'), or leave it out ({leave_out})")
    return cov


def parameter_draws(theta: np.ndarray, cov: np.ndarray | None, n: int, seed: int) -> np.ndarray:
    """(n, d) draws of the unconstrained parameters from N(θ̂, cov); ``cov=None``: n copies of θ̂."""
    theta = np.asarray(theta, float)
    if cov is None:
        return np.repeat(theta[None], n, axis=0)
    w, V = np.linalg.eigh((cov + cov.T) / 2.0)
    root = V * np.sqrt(np.clip(w, 0.0, None))
    z = np.random.default_rng(seed).standard_normal((n, theta.size))
    return theta[None] + z @ root.T


def _one_family_draws(theta, key, chi, center, mode0, dmode, scale, fisher, arrays, spec: ModelSpec, n_families: int,
                      n_proposals: int, n_out: int):
    """Draws of every family's random effects (F, n_out, ``spec.n_effects``): α, then the
    residuals u with ``spec.residual`` (then the slopes v with ``spec.residual_slope``); and the
    effective sample sizes (F,), for one parameter vector.

    The proposal of α is a multivariate t centred at the mode linearized in θ (the mode at θ̂ plus
    its derivative times θ − θ̂), with the curvature at θ̂ for scale: no mode search per draw; with
    residuals, each cell's effects r_fj = u_fj (, v_fj) given α are proposed from a normal at their
    conditional mode predicted linearly from the joint mode (scale from the cells' Fisher information
    ``fisher`` (F, J, m, m) at θ̂). The importance weights make the draws exact for this θ."""
    params = layout(spec).unpack(theta)
    floors = arrays["floors"]
    K = spec.K
    mode = mode0 + jnp.einsum("fkd,d->fk", dmode, theta - center)
    k_z, _, k_r, k_e = jax.random.split(key, 4)
    z = jax.random.normal(k_z, (n_families, n_proposals, K))
    t = z / jnp.sqrt(chi)  # chi: χ²_ν / ν draws (F, n_proposals, 1), made by NumPy
    alpha = mode[:, None, :K] + jnp.einsum("fkl,fml->fmk", scale, t)  # (F, M, K)
    bound = eta_bound(spec.logit_clip)
    log_q = t_logpdf_std(t, PROPOSAL_DF) - jnp.sum(jnp.log(jnp.abs(jnp.diagonal(scale, axis1=1, axis2=2))),
                                                    axis=1)[:, None]
    if spec.residual:  # the cells' effects r_fj (u, and the slope v) given α: normal proposals
        m = spec.residual_terms
        rho = cell_precisions(params)  # (J, m)
        D, _ = cell_system(fisher, rho)
        gain = cell_solve(D, fisher[..., 0, :])  # (F, J, m)
        Sc, log_det_c = inner_scale(D)  # S Sᵀ = D⁻¹
        shift = jnp.einsum("fmk,kj->fmj", alpha - mode[:, None, :K], params["loadings"])  # (F, M, J)
        centre = split_effects(mode, K, m)[1][:, None] - gain[:, None] * shift[..., None]  # (F, M, J, m)
        e = jax.random.normal(k_e, centre.shape)
        r = centre + PROPOSAL_INFLATE * jnp.einsum("fjab,fmjb->fmja", Sc, e)
        log_q = log_q + jnp.sum(-0.5 * e**2 - 0.5 * LOG_2PI, axis=(-2, -1)) - jnp.sum(
            log_det_c + m * jnp.log(PROPOSAL_INFLATE), axis=-1)[:, None]
        log_p_u = jnp.sum(cell_log_prior(r, rho), axis=-1)
        r_arg = r[..., 0] if m == 1 else r
        ll = jax.vmap(lambda a, rr: family_loglik_at(a, params, arrays, floors, n_families, bound, rr), in_axes=1,
                      out_axes=1)(alpha, r_arg)
        effects = jnp.concatenate([alpha, jnp.swapaxes(r, -2, -1).reshape(*r.shape[:2], -1)], axis=-1)
    else:
        log_p_u = 0.0
        ll = jax.vmap(lambda a: family_loglik_at(a, params, arrays, floors, n_families, bound), in_axes=1,
                      out_axes=1)(alpha)
        effects = alpha
    logw = ll + log_prior(alpha, params["corr"]) + log_p_u - log_q
    logw = jnp.where(jnp.isfinite(logw), logw, -jnp.inf)
    w = jax.nn.softmax(logw, axis=1)  # (F, M)
    ess = 1.0 / jnp.sum(w**2, axis=1)
    # Systematic resampling: one uniform per family, n_out evenly spaced positions.
    pos = (jax.random.uniform(k_r, (n_families, 1)) + jnp.arange(n_out)[None, :]) / n_out
    cdf = jnp.cumsum(w, axis=1)
    idx = jax.vmap(lambda c, p: jnp.searchsorted(c, p))(cdf / cdf[:, -1:], pos)
    idx = jnp.minimum(idx, n_proposals - 1)
    return jnp.take_along_axis(effects, idx[:, :, None], axis=1), ess


@partial(quick_jit, static_argnames=("spec", "n_families"))
def _proposal_centre(theta, arrays, alpha0, spec, n_families):
    """Every family's posterior mode at θ (searched from ``alpha0``), the proposal's curvature there
    and, with residuals, the Fisher information of each (family, benchmark) cell in its effects
    (F, J, m, m) (else an empty array)."""
    params = layout(spec).unpack(theta)
    floors = arrays["floors"]
    bound = eta_bound(spec.logit_clip)
    if spec.residual:
        return joint_mode_and_scale(params, arrays, floors, alpha0, n_families, spec.J, bound)
    return (*mode_and_scale(params, arrays, floors, alpha0, n_families, spec.J, bound),
            jnp.zeros((n_families, 0), dtype=theta.dtype))


def _linearized_modes(center: jnp.ndarray, arrays: dict, spec, n_families: int, rel_step: float = 1e-4):
    """The proposal centre at θ̂ (modes, curvature, Fisher) and the modes' derivative in θ (F,
    n_effects, P), by central differences of the compiled mode search (each warm-started at θ̂'s
    modes): the linearization only places the proposals (the importance weights make the draws exact
    for each θ), so differences serve as well as automatic ones and need no further program to compile."""
    zeros = device_array(np.zeros((n_families, spec.n_effects)), dtype=center.dtype)
    mode0, H, fisher = _proposal_centre(center, arrays, zeros, spec, n_families)
    theta = np.asarray(center)
    h = difference_steps(theta, rel_step)

    def column(d: int) -> np.ndarray:
        e = np.zeros_like(theta)
        e[d] = h[d]
        plus = _proposal_centre(jnp.asarray(theta + e), arrays, mode0, spec, n_families)[0]
        minus = _proposal_centre(jnp.asarray(theta - e), arrays, mode0, spec, n_families)[0]
        return (np.asarray(plus) - np.asarray(minus)) / (2.0 * h[d])

    dmode = np.stack(thread_map(column, range(theta.size)), axis=-1)  # independent columns: on the threads
    # a family whose mode search did not settle at a neighbour gets no linear move (its proposal stays at θ̂'s mode)
    return mode0, H, fisher, device_array(np.where(np.isfinite(dmode), dmode, 0.0))


@partial(quick_jit, static_argnames=("spec", "n_families", "n_proposals", "n_out"))
def _family_draws(center, thetas, keys, chis, arrays, mode0, dmode, H, fisher, spec, n_families, n_proposals, n_out):
    scale = sm.inv_lower_t(sm.cholesky(H)) * PROPOSAL_INFLATE  # (F, K, K)
    return jax.lax.map(
        lambda tk: _one_family_draws(tk[0], tk[1], tk[2], center, mode0, dmode, scale, fisher, arrays, spec, n_families,
                                     n_proposals, n_out),
        (thetas, keys, chis),
    )


@float64
def family_draws(thetas: np.ndarray, spec: ModelSpec, design, n_out: int, seed: int,
                 n_proposals: int | None = None, center: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Posterior draws of every family's random effects in ``design``: (S, F, n_out, ``spec.n_effects``)
    (α, then the residuals u with ``spec.residual``), and the importance
    sampling effective sample sizes (S, F) (of ``n_proposals``, default 4 × n_out). ``center``
    (default: the mean of ``thetas``; θ̂ in practice) is where the modes and their derivatives are
    computed; each parameter draw's proposal is centred at the mode linearized from there."""
    n_proposals = n_proposals or 4 * n_out
    thetas = np.asarray(thetas, float)
    center = thetas.mean(axis=0) if center is None else np.asarray(center, float)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(thetas))
    padded = design.padded()  # compiled once per size bucket, not once per table
    arrays = {**padded.arrays(), "floors": device_array(spec.floors)}
    center = device_array(center)
    mode0, H, fisher, dmode = _linearized_modes(center, arrays, spec.structure, padded.n_families)
    # The t proposals' χ² variables come from NumPy: JAX's gamma sampler (a rejection loop) took a third of
    # this program's compilation and 40 % of its run time.
    chis = np.random.default_rng([seed, 11]).chisquare(PROPOSAL_DF, (len(thetas), padded.n_families, n_proposals, 1))
    alpha, ess = _family_draws(center, device_array(thetas), keys, device_array(chis / PROPOSAL_DF), arrays, mode0,
                               dmode, H, fisher, spec.structure, padded.n_families, n_proposals, n_out)
    F = design.n_families
    return np.asarray(alpha)[:, :F], np.asarray(ess)[:, :F]


@float64
def prior_draws(thetas: np.ndarray, spec: ModelSpec, n_out: int, seed: int) -> np.ndarray:
    """Draws of the random effects of a family with no rows, for every parameter draw:
    (S, n_out, ``spec.n_effects``): α from N(0, Σ) (and u_j from N(0, τ_j²) with residuals)."""
    params = layout(spec).unpack_many(thetas, blocks=("corr", "residual_sd", "slope_sd"))
    # NumPy's normals: JAX's eager sampler compiled a program of its own (0.5 s of a cold prediction).
    z = np.random.default_rng([seed, 13]).standard_normal((len(thetas), n_out, spec.n_effects))
    alpha = np.einsum("skl,sml->smk", params["corr"], z[..., :spec.K])
    if not spec.residual:
        return alpha
    sd = np.swapaxes(cell_sds(params), -1, -2).reshape(len(thetas), -1)  # (S, m·J): τ, then ω
    return np.concatenate([alpha, z[..., spec.K:] * sd[:, None, :]], axis=-1)


@partial(quick_jit, static_argnames=("spec",))
def _expected_scores(thetas, alpha, X, floors, spec):
    """μ (S, M, N, J) for N new models with random effects (S, M, N, n_effects) (α, and the
    residuals u with ``spec.residual``) and covariates X (N, p), and φ (S, N, J)."""
    bound = eta_bound(spec.logit_clip)

    def one(theta, a):
        p = layout(spec).unpack(theta)
        skills = (X @ p["B"])[None] + a[..., :spec.K]  # (M, N, K)
        eta = skills @ p["loadings"] + p["intercepts"]
        if spec.residual:
            eta = eta + a[..., spec.K:spec.K + spec.J]
        if spec.residual_slope:  # v_fj·z of the new models
            eta = eta + a[..., spec.K + spec.J:] * X[:, :1]
        return mean_score(eta, floors, bound, link_shares(p)), precisions(p, X)

    return jax.vmap(one)(thetas, alpha)


@float64
def expected_scores(thetas: np.ndarray, alpha: np.ndarray, X: np.ndarray, spec: ModelSpec
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Expected scores μ (S, M, N, J) and Beta precisions φ (S, N, J) of N models with covariates
    X (N, p) and random effects ``alpha`` (S, M, N, ``spec.n_effects``), per parameter draw (numpy)."""
    mu, phi = _expected_scores(device_array(thetas), device_array(alpha), device_array(X), device_array(spec.floors),
                               spec.structure)
    return np.asarray(mu), np.asarray(phi)


@float64
def score_draws(thetas: np.ndarray, alpha: np.ndarray, X: np.ndarray, spec: ModelSpec,
                rng: np.random.Generator, n_rep: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Expected scores μ (S, M, N, J) and observed scores y ~ Beta(φμ, φ(1 − μ)), ``n_rep`` per μ
    (n_rep·S, M, N, J), for N new models with random effects (S, M, N, n_effects) (their family's
    α, and its residuals with ``spec.residual``) and covariates X (N, p).
    (NumPy's Beta sampler: many times faster than JAX's on CPU.)"""
    mu, phi = expected_scores(thetas, alpha, X, spec)
    y = beta_scores(rng, mu, phi[:, None, :, :], size=(n_rep,) + mu.shape)
    return mu, y.reshape((n_rep * mu.shape[0],) + mu.shape[1:])


def beta_scores(rng: np.random.Generator, mu: np.ndarray, phi: np.ndarray, size=None) -> np.ndarray:
    """Observed scores y ~ Beta(φμ, φ(1 − μ)) (NumPy, broadcasting; both shapes kept above 1e-12)."""
    return rng.beta(np.maximum(phi * mu, 1e-12), np.maximum(phi * (1.0 - mu), 1e-12), size=size)
