"""Deterministic marginal maximum likelihood: the default estimator's stages.

1. **Screening.** Several starts (a moment-based one, or the caller's, and fixed-seed
   perturbations of it), each run for ``screen_iter`` L-BFGS-B iterations on the Laplace
   approximation (one node per family: cheap), within the parameter blocks' box; with more than
   ``screen_families`` families, on an evenly spread subset of them (the best start is then taken
   to that subset's optimum, whose curvature, scaled to all families, starts the next stages).
2. **Laplace.** From each of the ``laplace_starts`` best screened starts (the best only with a
   screening subset; a start that screened more than :data:`START_GAP` nats below the best
   failed its screening and is left out), projected quasi-Newton steps on the Laplace objective to its optimum
   (curvature from forward differences of the exact gradient at the best start, shared by the
   starts, then BFGS updates), at most ``laplace_maxiter`` of them (these steps cost a few
   milliseconds, the next stage's 30–110 times more with a 256 × 7-node rule: a Laplace stage stopped short
   leaves its steps to the quadrature stage); the best
   optimum goes on (the Laplace surface can have several local optima: lvf-paper at K = 2 has two,
   0.26 apart, whose quadrature optima differ by 0.17).
3. **Quadrature.** The same on the fit's adaptive rule, whose optimum lies close, starting from
   the Laplace curvature at the Laplace optimum (skipped when the rule is the Laplace one). With
   the logit clamp the objective is only piecewise smooth (its gradient jumps where a node crosses
   the clamp), BFGS curvature goes stale at the kinks and the steps stop short: the steps are
   then restarted from the rule's own curvature (central differences of its gradient) while a
   restart gains at least ``polish_gain`` nats, at most ``polish_rounds`` times (lvf-paper K = 3:
   +0.61 nats by importance sampling from the first restart; the second gained nothing).
4. **Curvature.** The Hessian of ℓ and the per-family scores at the optimum (for the observed,
   OPG and sandwich covariances): of the Laplace objective by default (``hessian="laplace"``,
   fast; the full one is used anyway when it is not negative definite), of the fit's rule with
   ``hessian="full"``, or none with ``hessian=None`` (no standard errors: cross-validation refits).

Each objective warm-starts its mode search from its previous evaluation's modes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.optimize import minimize

from latentscale.config import float64, thread_map
from latentscale.errors import InputError
from latentscale.estimation.init import start_points
from latentscale.estimation.likelihood import MarginalLikelihood
from latentscale.estimation.optimize import convergence_diagnostics, negated, negative_definite_free, quasi_newton
from latentscale.estimation.quadrature import QuadratureSpec
from latentscale.model.design import Design
from latentscale.model.params import layout
from latentscale.model.spec import ModelSpec

Progress = Callable[[str], None]
HESSIAN_KINDS = ("laplace", "full", None)
#: Nats below the best screened start beyond which a start is not taken to a Laplace optimum.
START_GAP = 100.0


@dataclass
class EstimatorOutcome:
    """What an estimator hands back: the unconstrained optimum, ℓ there, diagnostics, and the
    Hessian of ℓ and Σ_f s_f s_fᵀ of the per-family scores at the optimum (None when not computed)."""

    theta: np.ndarray
    log_likelihood: float
    diagnostics: dict = field(default_factory=dict)
    hessian: np.ndarray | None = None
    score_outer: np.ndarray | None = None


def screen_subset(design: Design, n: int) -> Design | None:
    """An evenly spread subset of ``n`` families (every k-th), or None when there are not more."""
    if design.n_families <= n:
        return None
    return design.subset_families(np.linspace(0, design.n_families - 1, n).round().astype(int))


def _screen(screen: MarginalLikelihood, starts, bounds, screen_iter, gtol, say, on):
    """L-BFGS-B from every start on the (subset's) Laplace objective; the results that ran. Each start
    has its own :meth:`~MarginalLikelihood.fork` (mode searches from 0 at its first point), checked for
    a finite value here and run on the evaluation threads."""
    runs = []
    for s, x0 in enumerate(starts):
        twin = screen.fork()
        twin.reset()
        if not np.isfinite(twin.loglike_and_score(x0)[0]):  # in turn: the first call compiles
            say(f"start {s + 1}/{len(starts)}: not finite, skipped")
            continue
        runs.append((s, x0, twin))

    def run(item):
        _, x0, twin = item
        return minimize(negated(twin), x0, jac=True, method="L-BFGS-B", bounds=bounds,
                        options={"maxiter": screen_iter, "gtol": gtol, "ftol": 1e-13, "maxcor": 30})

    results = thread_map(run, runs)
    for (s, _, _), r in zip(runs, results):
        say(f"start {s + 1}/{len(starts)}: Laplace log-likelihood {-r.fun:.3f}{on} after {r.nit} iterations")
    if not results:
        raise RuntimeError("no starting point gave a finite likelihood; check the data")
    return results


def _polish(full: MarginalLikelihood, theta, lo, hi, gtol, maxiter, rounds: int, min_gain: float, say):
    """Restarts (``rounds`` ≥ 1) of the quadrature stage's steps from the rule's own curvature (see stage 3)."""
    steps, curv = 0, None
    value = start_value = full.loglike(theta)
    for r in range(1, rounds + 1):
        H = full.hessian(theta, "fd")
        new, new_curv, n = quasi_newton(full, theta, H, lo, hi, gtol, maxiter)
        steps += n
        new_value = full.loglike(new)
        gain = new_value - value
        say(f"restart {r} from the rule's curvature: {new_value:.3f} ({gain:+.3f}, {n} steps)")
        if gain > 0:
            theta, curv, value = new, new_curv, new_value
        if gain < min_gain:
            break
    return theta, curv, steps, {"curvature_restarts": r, "restart_gain": float(value - start_value)}


def _curvature(laplace, full, theta, hessian, how, lo, hi, say):
    """Hessian and per-family scores at the optimum (step 4 of the module docstring)."""
    if hessian is None:
        return None, None, None
    curvature = full if hessian == "full" else laplace
    H, S = curvature.hessian_and_scores(theta, how)
    if hessian == "laplace" and full.rule.size > 1:
        grad = full.score(theta)
        if not negative_definite_free(H, theta, grad, lo, hi):
            # The Laplace surface can be flat or bent the wrong way in a weakly identified
            # direction where the quadrature objective is not: use the full Hessian then.
            say("the Laplace Hessian is not negative definite at the optimum; computing the full one")
            H, S = full.hessian_and_scores(theta, how)
            hessian = "full"
    return H, S, hessian



def _starts(design, spec, n_starts, seed, start_scale, start) -> list[np.ndarray]:
    """The starting points (the caller's ``start`` or the moment-based one, and perturbations), in the box."""
    lay = layout(spec)
    lo, hi = lay.lower, lay.upper
    if start is not None:
        start = np.asarray(start, dtype=float)
        if start.shape != lo.shape or not np.all(np.isfinite(start)):
            raise InputError(f"start must be {lo.size} finite numbers (the unconstrained parameter vector of "
                             f"this model), got shape {start.shape}")
    return [np.clip(x, lo, hi) for x in start_points(design, spec, n_starts, seed, start_scale, start)]


def _start_stage(design, spec, laplace, starts, screen_families, screen_iter, gtol, maxiter, n_best, say):
    """Stage 1: the ``n_best`` best screened starts, each with the curvature that starts stage 2
    (with many families: the best start taken to the subset's optimum, its curvature scaled to
    all families). Returns [(θ, H)], the screening results, iterations and the subset (or None)."""
    lay = layout(spec)
    lo, hi = lay.lower, lay.upper
    subset = screen_subset(design, screen_families)
    screen = laplace if subset is None else MarginalLikelihood(spec, subset, "laplace")
    on = "" if subset is None else f" (on {subset.n_families} of {design.n_families} families)"
    results = _screen(screen, starts, lay.bounds, screen_iter, gtol, say, on)
    ranked = sorted(results, key=lambda r: r.fun)
    iterations = int(sum(r.nit for r in results))
    if subset is None:
        # A start that screened far below the best failed its screening (lvf-paper K = 8: two of three
        # stopped after one iteration, thousands of nats below) and is not taken further; starts
        # that lead to different optima screen within a few nats of each other (2 to 6 on lvf-paper
        # and sloth K = 1..7).
        top = ranked[:n_best]
        kept = [r for r in top if r.fun <= ranked[0].fun + START_GAP]
        if len(kept) < len(top):
            say(f"{len(top) - len(kept)} of the {len(top)} best starts screened more than {START_GAP:g} below "
                "the best: not taken further")
        # one starting curvature (at the best start) serves every candidate: it only starts the metric
        H = laplace.start_curvature(ranked[0].x)
        return [(r.x, H) for r in kept], results, iterations, None
    best = ranked[0]
    say(f"best start: Laplace log-likelihood {-best.fun:.3f}{on}; quasi-Newton steps to its optimum")
    theta, B_sub, n_sub = quasi_newton(screen, best.x, screen.start_curvature(best.x), lo, hi, gtol, maxiter)
    return [(theta, -(design.n_families / subset.n_families) * B_sub)], results, iterations + n_sub, subset


def _laplace_stage(laplace, candidates, lo, hi, gtol, maxiter, say):
    """Stage 2: quasi-Newton steps to the Laplace optimum from each candidate (each with its own
    :meth:`~MarginalLikelihood.fork`, mode searches from 0, on the evaluation threads); the best one."""

    def run(candidate):
        theta, H_start = candidate
        twin = laplace.fork()
        twin.reset()
        theta, curv, n = quasi_newton(twin, theta, H_start, lo, hi, gtol, maxiter, ftol=1e-6)
        return theta, curv, twin.loglike_and_score(theta)[0], n

    best, steps = None, 0
    for i, (theta, curv, value, n) in enumerate(thread_map(run, candidates)):
        steps += n
        if len(candidates) > 1:
            say(f"Laplace optimum from start {i + 1} of the {len(candidates)} best: {value:.3f} ({n} steps)")
        if best is None or value > best[2]:
            best = (theta, curv, value)
    return best[0], best[1], best[2], steps


@float64
def fit_mle(
    design: Design,
    spec: ModelSpec,
    *,
    quadrature: QuadratureSpec | None = None,
    n_starts: int = 3,
    seed: int = 0,
    maxiter: int = 200,
    laplace_maxiter: int = 1000,
    screen_iter: int = 50,
    gtol: float = 1e-6,
    hessian: str | None = "laplace",
    screen_families: int = 2000,
    progress: Progress | None = None,
    start: np.ndarray | None = None,
    start_scale: float = 0.3,
    laplace_starts: int = 2,
    pad: bool | tuple[int, int, int] = True,
    polish_rounds: int | None = None,
    polish_gain: float = 0.05,
) -> EstimatorOutcome:
    """Maximize the marginal log-likelihood by the stages of the module docstring.

    ``maxiter`` bounds the quasi-Newton steps of stage 3 (and of the screening subset's),
    ``laplace_maxiter`` those of stage 2; ``gtol`` is the largest
    gradient entry accepted as converged in them. ``start`` (unconstrained θ) replaces the
    moment-based start; the other starts perturb it by normal steps of sd ``start_scale``.
    ``laplace_starts``: how many of the best screened starts are taken to a Laplace optimum (the
    best optimum goes on; the Laplace surface can have several). ``pad``: the likelihoods' padding
    (:class:`~latentscale.estimation.likelihood.MarginalLikelihood`; a fixed shape lets refits on
    subsets of one data set, such as cross-validation folds, share compiled code).
    ``polish_rounds``: restarts of stage 3 from the rule's curvature (stage 3 of the module
    docstring); None: 3 with the logit clamp, else 0. ``polish_gain``: the smallest gain (nats) of
    a restart that earns another.
    """
    if hessian not in HESSIAN_KINDS:
        raise InputError(f"hessian must be 'laplace', 'full' or None, got {hessian!r}")
    say = progress or (lambda msg: None)
    quadrature = QuadratureSpec.coerce(quadrature)
    lay = layout(spec)
    lo, hi = lay.lower, lay.upper
    starts = _starts(design, spec, n_starts, seed, start_scale, start)
    laplace = MarginalLikelihood(spec, design, "laplace", pad=pad)
    full = laplace if quadrature.kind(spec.K) == "laplace" else MarginalLikelihood(spec, design, quadrature, pad=pad)
    how = "exact" if design.n_families > screen_families else "fd"  # the AD Hessian pays off with many families

    # Stage 1: screening, on a subset when there are many families.
    candidates, results, iterations, subset = _start_stage(design, spec, laplace, starts, screen_families,
                                                           screen_iter, gtol, maxiter, laplace_starts, say)

    # Stage 2: the Laplace optimum (the best of those reached from the best screened starts).
    say(f"Laplace: quasi-Newton steps{' on all families' if subset is not None else ''}")
    theta, curv, ll_lap, n_lap = _laplace_stage(laplace, candidates, lo, hi, gtol, laplace_maxiter, say)
    iterations += n_lap

    # Stage 3: the quadrature optimum (restarted from the rule's curvature with the clamp).
    polished: dict = {}
    n_full = 0
    if full is not laplace:
        say(f"Laplace optimum {ll_lap:.3f} ({n_lap} steps); refining with {quadrature.describe(spec.K, spec.residual_terms)}")
        # the Laplace curvature at the Laplace optimum (with a screening subset: the subset's, scaled)
        # central differences: the quadrature stage's steps are dear, and a weakly identified
        # direction needs the curvature's small eigenvalues right (forward differences cost
        # sloth K = 4 24 more quadrature evaluations)
        H_start = laplace.hessian(theta, "fd") if subset is None else candidates[0][1]
        theta, curv, n_full = quasi_newton(full, theta, H_start, lo, hi, gtol, maxiter)
        iterations += n_full
        rounds = (3 if spec.logit_clip is not None else 0) if polish_rounds is None else int(polish_rounds)
        if rounds > 0:
            theta, polished_curv, n_pol, polished = _polish(full, theta, lo, hi, gtol, maxiter, rounds, polish_gain,
                                                            say)
            curv = curv if polished_curv is None else polished_curv
            iterations += n_pol
            n_full += n_pol
    value, grad = full.loglike_and_score(theta)
    penalty = full.log_penalty(theta)[0]  # 0 without a penalty: ℓ is the objective less it

    # Stage 4: curvature for the standard errors.
    if hessian is not None:
        say(f"log-likelihood {value - penalty:.3f}{f' (penalized {value:.3f})' if penalty else ''} "
            f"({iterations} iterations in all); Hessian "
            f"{'by automatic differentiation' if how == 'exact' else 'by differences of the gradient'}")
    H, S, hessian_kind = _curvature(laplace, full, theta, hessian, how, lo, hi, say)
    # Without a Hessian (no standard errors asked for) the last stage's BFGS curvature stands in
    # for it in the Newton decrement.
    diagnostics = {
        **convergence_diagnostics(theta, grad, H if H is not None else -curv, lo, hi, lay.names),
        "iterations": iterations,
        "laplace_steps": n_lap,
        "quadrature_steps": n_full,  # with the restarts from the rule's curvature
        "hessian_kind": hessian_kind,
        "start_log_likelihoods": [float(-r.fun) for r in results],
        "laplace_log_likelihood": float(ll_lap if full is laplace else laplace.loglike_and_score(theta)[0]) - penalty,
        "quadrature_nodes": full.rule.size,
        **polished,
    }
    if spec.power_prior:
        diagnostics.update(penalized_log_likelihood=float(value), log_penalty=float(penalty))
    return EstimatorOutcome(theta=theta, log_likelihood=float(value - penalty), diagnostics=diagnostics, hessian=H,
                            score_outer=None if S is None else S.T @ S)
