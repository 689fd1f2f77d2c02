"""The paper's estimator: projected stochastic gradient ascent (PSGA) on a Monte Carlo likelihood.

This is the procedure of arXiv:2512.06553 (SPEC §3), offered so that it can be compared side
by side with the default deterministic estimator (:mod:`latentscale.estimation.mle`).

Parameters are held in the *constrained* space, as the paper does: the constrained values of
the model's parameter blocks (:mod:`latentscale.model.params`) — ``B`` (p, K), ``loadings`` (K, J),
the full matrix with structural zeros, ``intercepts`` (J,), ``precision`` φ (J,) itself, and
``corr`` L (K, K), a lower-triangular factor of the skill correlation Σ = L Lᵀ.

Each step draws fresh z_s ~ N(0, I_K), s = 1..S, shared by all families, sets α_s = L z_s and
computes the Monte Carlo log-likelihood

    ℓ̂ = Σ_f log (1/S) Σ_s Π_{i∈f, j obs} Beta(y_ij | α_s)

with log-sum-exp, vectorized over families and observations; draws are processed in chunks
(``draw_chunk``, gradient-checkpointed) so memory stays at (observations × chunk). Adam (optax
``scale_by_adam``) takes a step on −ℓ̂, then the iterate is projected back onto the constraints by
the blocks' own projections (:meth:`~latentscale.model.params.ParameterLayout.project`, the
paper's): L is kept lower-triangular with rows renormalized to unit length (unit-diagonal Σ), φ
and the anchor loadings are clipped at a small positive floor (1e-6, so logs stay finite), and the
structural zeros are reset to zero. The paper clips φ and the anchor loadings at 0. The projected iterates of the last
``average_last`` fraction of steps are averaged (the average is projected once more: its L rows
are renormalized).

Restarts run over the grid learning rates × schedules × seeds. Schedules:

- ``"constant"``: the learning rate stays fixed;
- ``"plateau"``: ``optax.contrib.reduce_on_plateau`` on the (noisy) Monte Carlo loss, averaged
  over windows of ``plateau_window`` steps (default max(20, steps // 50)); when 4 windows in a
  row (8 % of the run) fail to improve the best window average by 0.1 nat, the rate is halved,
  down to 1/100 of its initial value.

Seed index 0 starts from the moment-based start (:func:`latentscale.estimation.init.initial_params`),
seed index r > 0 from a Gaussian perturbation (sd ``init_scale``) of it in the unconstrained
parametrization; each restart has its own stream of Monte Carlo draws. The restart kept is the
one whose averaged iterate has the highest *accurate* log-likelihood
(:class:`~latentscale.estimation.likelihood.MarginalLikelihood` with the fit's quadrature), which is
also the log-likelihood reported, so both estimators are compared on the same yardstick.

Everything is deterministic given ``seed``. The step is jit-compiled once per (data shape, K,
draws, chunking, steps per report): all restarts reuse it (learning rate, schedule switch,
averaging window and keys are runtime arguments).
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from latentscale.config import float64
from latentscale.errors import InputError
from latentscale.estimation.init import start_points
from latentscale.estimation.likelihood import MarginalLikelihood
from latentscale.estimation.mle import EstimatorOutcome
from latentscale.model.design import Design
from latentscale.model.observation import beta_logpdf, eta_bound, expand, fixed_eta, obs_terms
from latentscale.model.params import layout
from latentscale.model.spec import ModelSpec

Progress = Callable[[str], None]

SCHEDULES = ("constant", "plateau")
_PLATEAU_FACTOR = 0.5
_PLATEAU_PATIENCE = 4
_PLATEAU_ATOL = 0.1
_PLATEAU_MIN_SCALE = 0.01


# ---------------------------------------------------------------------------------------------
# Monte Carlo log-likelihood
# ---------------------------------------------------------------------------------------------


def mc_loglik(params: dict, z, valid, arrays: dict, floors, n_families: int, bound: float,
              dtype=jnp.float32, checkpoint: bool = False):
    """Σ_f log mean_s p(y_f | α_s), α_s = L z_s, for z of shape (n_chunks, chunk, K) and a
    (n_chunks, chunk) mask of the draws that count (padding when S is not a multiple of chunk).

    The (observations × draws) work runs in ``dtype``; the result is returned in float64.
    ``checkpoint`` recomputes each chunk in the backward pass (memory ∝ one chunk).
    """
    L = params["corr"]
    fam = arrays["obs_family"]
    c_obs, log_phi_obs, lam_obs, kappa = obs_terms(params, arrays, floors)  # (n,), (n,), (n, K), (n,) or None
    base = fixed_eta(params, arrays)
    const = jax.ops.segment_sum(jax.scipy.special.gammaln(jnp.exp(log_phi_obs)), fam, num_segments=n_families)
    c = c_obs[:, None].astype(dtype)
    log_phi = log_phi_obs[:, None].astype(dtype)
    kappa_d = jax.tree_util.tree_map(lambda k: k.astype(dtype), expand(kappa, 1))
    log_y = arrays["log_y"][:, None].astype(dtype)
    log1m_y = arrays["log1m_y"][:, None].astype(dtype)
    base_d = base[:, None].astype(dtype)
    lam_d = lam_obs.astype(dtype)
    L_d = L.astype(dtype)

    def chunk(zc, vc):
        alpha = zc.astype(dtype) @ L_d.T  # (m, K)
        eta = base_d + lam_d @ alpha.T  # (n, m)
        ll = beta_logpdf(eta, log_y, log1m_y, c, log_phi, bound, normalized=False, kappa=kappa_d)
        per = jax.ops.segment_sum(ll, fam, num_segments=n_families)  # (F, m)
        per = jnp.where(vc[None, :], per, -jnp.inf)
        return jax.scipy.special.logsumexp(per, axis=1).astype(const.dtype)  # (F,)

    if checkpoint:
        chunk = jax.checkpoint(chunk)
    if z.shape[0] == 1:
        per_chunk = chunk(z[0], valid[0])[None]
    else:
        per_chunk = jax.lax.map(lambda a: chunk(*a), (z, valid))  # (n_chunks, F)
    n_draws = jnp.sum(valid)
    per_family = jax.scipy.special.logsumexp(per_chunk, axis=0) - jnp.log(n_draws) + const
    return jnp.sum(per_family)


# ---------------------------------------------------------------------------------------------
# The jit-compiled run of a block of steps
# ---------------------------------------------------------------------------------------------


def _plateau(window: int):
    return optax.contrib.reduce_on_plateau(
        factor=_PLATEAU_FACTOR, patience=_PLATEAU_PATIENCE, rtol=0.0, atol=_PLATEAU_ATOL,
        accumulation_size=window, min_scale=_PLATEAU_MIN_SCALE,
    )


def _zeros_like(tree):
    return jax.tree_util.tree_map(jnp.zeros_like, tree)


@partial(jax.jit, static_argnames=("spec", "n_families", "n_chunks", "chunk", "block", "window", "mc_dtype"))
def _run_block(carry, hyper, arrays, *, spec, n_families, n_chunks, chunk, block, window, mc_dtype):
    """``block`` steps of PSGA (steps at or beyond ``hyper['total']`` are no-ops).

    carry: params, adam state, plateau state, sum and count of averaged iterates, step counter.
    hyper: key, lr, use_plateau (0/1), avg_start, total, n_draws.
    """
    adam = optax.scale_by_adam()
    plateau = _plateau(window)
    lay = layout(spec)
    floors = arrays["floors"]
    valid = (jnp.arange(n_chunks * chunk) < hyper["n_draws"]).reshape(n_chunks, chunk)

    def neg(params, z):
        return -mc_loglik(params, z, valid, arrays, floors, n_families, eta_bound(spec.logit_clip),
                          dtype=jnp.dtype(mc_dtype), checkpoint=n_chunks > 1)

    value_and_grad = jax.value_and_grad(neg)

    def do_step(c):
        params, s_adam, s_plat, avg, n_avg, t = c
        z = jax.random.normal(jax.random.fold_in(hyper["key"], t), (n_chunks, chunk, spec.K))
        loss, g = value_and_grad(params, z)
        g = jax.tree_util.tree_map(lambda x: jnp.where(jnp.isfinite(x), x, 0.0), g)
        u, s_adam = adam.update(g, s_adam, params)
        u = jax.tree_util.tree_map(lambda x: -hyper["lr"] * x, u)
        u_plat, s_plat = plateau.update(u, s_plat, params, value=jnp.where(jnp.isfinite(loss), loss, 1e300))
        u = jax.tree_util.tree_map(lambda a, b: jnp.where(hyper["use_plateau"] > 0, b, a), u, u_plat)
        params = lay.project(optax.apply_updates(params, u))
        take = (t >= hyper["avg_start"]).astype(params["B"].dtype)
        avg = jax.tree_util.tree_map(lambda a, p: a + take * p, avg, params)
        return (params, s_adam, s_plat, avg, n_avg + take, t + 1), -loss

    def body(c, _):
        active = c[-1] < hyper["total"]
        return jax.lax.cond(active, do_step, lambda cc: (cc, jnp.full((), jnp.nan, floors.dtype)), c)

    return jax.lax.scan(body, carry, None, length=block)


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------


def _check_options(steps, draws, seeds, learning_rates, schedules, average_last, mc_dtype):
    bad = [s for s in schedules if s not in SCHEDULES]
    if bad:
        raise InputError(f"unknown schedule(s) {bad}; choose from {SCHEDULES}")
    if steps < 1 or draws < 1 or seeds < 1 or not learning_rates or not schedules:
        raise InputError("steps, draws, seeds must be >= 1 and learning_rates, schedules non-empty")
    if not 0.0 < average_last <= 1.0:
        raise InputError(f"average_last must be in (0, 1], got {average_last}")
    if mc_dtype not in ("float32", "float64"):
        raise InputError(f"mc_dtype must be 'float32' or 'float64', got {mc_dtype!r}")


def _run_restart(r, lr, schedule, params, arrays, root, statics, steps, avg_start, draws, say, n):
    """One restart: blocks of steps until ``steps``; returns the averaged (projected) iterate,
    the Monte Carlo trace and the final plateau scale."""
    adam, plateau = optax.scale_by_adam(), _plateau(statics["window"])
    carry = (params, adam.init(params), plateau.init(params), _zeros_like(params),
             jnp.zeros((), params["B"].dtype), jnp.zeros((), jnp.int32))
    hyper = {
        "key": jax.random.fold_in(root, r),
        "lr": jnp.asarray(float(lr)),
        "use_plateau": jnp.asarray(1 if schedule == "plateau" else 0),
        "avg_start": jnp.asarray(avg_start, jnp.int32),
        "total": jnp.asarray(steps, jnp.int32),
        "n_draws": jnp.asarray(draws, jnp.int32),
    }
    trace, done = [], 0
    while done < steps:
        carry, lls = _run_block(carry, hyper, arrays, **statics)
        lls = np.asarray(lls)
        done = min(done + statics["block"], steps)
        trace.append(float(np.nanmean(lls)) if np.any(np.isfinite(lls)) else float("nan"))
        say(f"restart {r + 1}/{n} (lr {lr:g}, {schedule}): step {done}/{steps}, MC log-likelihood {trace[-1]:.3f}")
    averaged = jax.tree_util.tree_map(lambda a: a / carry[4], carry[3])
    scale = float(carry[2].scale) if schedule == "plateau" else 1.0
    return averaged, trace, scale


def _run_grid(grid, starts, arrays, root, statics, steps, avg_start, draws, accurate, say):
    """Every restart of the grid (learning rate, schedule, seed index); each averaged iterate is
    scored by the accurate likelihood. Returns the restarts' records and the best
    (log-likelihood, θ, restart index, Monte Carlo trace)."""
    lay = accurate.layout
    restarts, best = [], None
    for r, (lr, sch, s) in enumerate(grid):
        t0 = time.perf_counter()
        averaged, trace, scale = _run_restart(r, lr, sch, starts[s], arrays, root, statics, steps, avg_start, draws,
                                              say, len(grid))
        theta = lay.pack({k: np.asarray(v) for k, v in lay.project(averaged).items()})
        ll = accurate.loglike(theta)
        ll = ll if np.isfinite(ll) else -np.inf
        restarts.append({"learning_rate": float(lr), "schedule": sch, "seed_index": s, "log_likelihood": float(ll),
                         "mc_log_likelihood_last": trace[-1], "final_lr_scale": scale,
                         "seconds": time.perf_counter() - t0})
        say(f"restart {r + 1}/{len(grid)}: log-likelihood {ll:.3f} of the averaged iterate "
            f"({restarts[-1]['seconds']:.1f} s)")
        if best is None or ll > best[0]:
            best = (ll, theta, r, trace)
    return restarts, best


@float64
def fit_psga(
    design: Design,
    spec: ModelSpec,
    *,
    steps: int = 20000,
    draws: int = 10000,
    learning_rates: Sequence[float] = (0.1, 0.05, 0.01),
    schedules: Sequence[str] = SCHEDULES,
    seeds: int = 5,
    average_last: float = 0.2,
    seed: int = 0,
    progress: Progress | None = None,
    draw_chunk: int | None = None,
    mc_dtype: str = "float32",
    report_every: int = 100,
    plateau_window: int | None = None,
    init_scale: float = 0.3,
    quadrature=None,
) -> EstimatorOutcome:
    """Projected stochastic gradient ascent (the paper's estimator); see the module docstring.

    steps, draws: Adam steps per restart and fresh Monte Carlo draws of α per step.
    learning_rates × schedules × seeds: the restart grid (3 × 2 × 5 = 30 by default).
    average_last: fraction of final steps whose projected iterates are averaged.
    seed: base seed of the perturbed starts and of the Monte Carlo draws.
    draw_chunk: draws evaluated at once (default: all); when smaller than ``draws`` the chunks are
        recomputed in the backward pass, so memory ∝ observations × draw_chunk (slower).
    mc_dtype: floating type of the (observations × draws) Monte Carlo work: "float32" (default,
        about twice as fast; its rounding is far below the Monte Carlo noise) or "float64".
        Parameters, Adam state and the accurate log-likelihood are always float64.
    report_every: steps per compiled block and per progress message.
    plateau_window: steps averaged by the plateau schedule (default max(20, steps // 50)).
    init_scale: sd of the perturbation of the start for seed indices > 0.
    quadrature: the rule of the accurate log-likelihood that picks the restart (the fit's).
    """
    say = progress or (lambda msg: None)
    schedules = tuple(schedules)
    _check_options(steps, draws, seeds, learning_rates, schedules, average_last, mc_dtype)
    t_start = time.perf_counter()
    lay = layout(spec)
    arrays = {**design.arrays(), "floors": jnp.asarray(spec.floors)}
    n_chunks = 1 if not draw_chunk else max(1, math.ceil(draws / draw_chunk))
    chunk = math.ceil(draws / n_chunks)
    block = max(1, min(report_every, steps))
    window = plateau_window or max(20, steps // 50)
    n_avg_steps = max(1, int(round(average_last * steps)))
    statics = dict(spec=spec.structure, n_families=design.n_families, n_chunks=n_chunks, chunk=chunk, block=block,
                   window=window, mc_dtype=mc_dtype)
    accurate = MarginalLikelihood(spec, design, quadrature)

    # Starts: seed index 0 is the moment-based start, others perturb it (unconstrained space).
    starts = [lay.project({k: jnp.asarray(v) for k, v in lay.unpack(jnp.asarray(x)).items()})
              for x in start_points(design, spec, seeds, seed, init_scale)]
    grid = [(lr, sch, s) for lr in learning_rates for sch in schedules for s in range(seeds)]
    restarts, best = _run_grid(grid, starts, arrays, jax.random.PRNGKey(seed), statics, steps, steps - n_avg_steps,
                               draws, accurate, say)
    ll, theta, r_best, trace = best
    if not np.isfinite(ll):
        raise RuntimeError(f"all {len(grid)} PSGA restarts diverged (non-finite log-likelihood); lower the "
                           "learning rates")
    diagnostics = {
        "estimator": "psga", "steps": int(steps), "draws": int(draws), "draw_chunks": [int(n_chunks), int(chunk)],
        "mc_dtype": mc_dtype, "learning_rates": [float(x) for x in learning_rates], "schedules": list(schedules),
        "seeds": int(seeds), "seed": int(seed), "average_last": float(average_last),
        "averaged_steps": int(n_avg_steps),
        "plateau": {"window": int(window), "patience": _PLATEAU_PATIENCE, "factor": _PLATEAU_FACTOR,
                    "atol": _PLATEAU_ATOL, "min_scale": _PLATEAU_MIN_SCALE},
        "restarts": restarts, "restart_log_likelihoods": [x["log_likelihood"] for x in restarts],
        "best_restart": int(r_best), "mc_trace_best": trace, "quadrature_nodes": accurate.rule.size,
        "iterations": int(steps) * len(grid), "converged": None,
        "seconds_optimize": time.perf_counter() - t_start,
    }
    return EstimatorOutcome(theta=np.asarray(theta), log_likelihood=float(ll), diagnostics=diagnostics)
