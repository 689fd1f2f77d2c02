"""What to train next: rank candidate (N, D) training runs of a family by the expected reduction
of a target's uncertainty per FLOP, the new model being evaluated on every benchmark (or on
those named).

Targets: ``"skill"`` (the family's skill at a target size and token count, (Bᵀx)_k + α_k) and
``"scores"`` (the expected scores of a model of the family at the target size and tokens), both
by reweighting the family's posterior draws (:mod:`latentscale.design.value`); ``"allocation"``
(the compute-optimal tokens per parameter D*/N* of a skill at a budget), which depends on the
population parameters B only and is scored by the expected Fisher information a run adds to the
fit's (:mod:`latentscale.design.information`): reweighting a few hundred parameter draws by one
new model's dozen scores degenerates to a handful of draws.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from latentscale.allocation.core import FLOPS_UNIT
from latentscale.data.validate import DataError, name_rows
from latentscale.design.draws import family_draws
from latentscale.design.evaluate import DesignResult, ranked_table
from latentscale.design.information import SplitDesign, split_and_gradient
from latentscale.design.value import DesignProblem, greedy_choice, greedy_design, score_moments
from latentscale.errors import InputError
from latentscale.prediction.predict import conditioning_frame
from latentscale.prediction.sampling import beta_scores

TRAIN_TARGETS = ("skill", "scores", "allocation")
TRAIN_COLUMNS = ("rank", "run", "size", "tokens", "flops", "variance_before", "expected_variance", "reduction",
                 "reduction_per_flop", "batch_order")


def check_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Validate candidate runs (size in billions, tokens in trillions; optional run name and flops)."""
    missing = [c for c in ("size", "tokens") if c not in runs.columns]
    if missing:
        raise DataError(f"the runs table lacks column(s) {missing}; it needs size (billions of parameters) and "
                        f"tokens (trillions), optionally run (a name) and flops; columns present: {list(runs.columns)}")
    out = runs.copy().reset_index(drop=True)
    for col in ("size", "tokens") + (("flops",) if "flops" in out.columns else ()):
        v = pd.to_numeric(out[col], errors="coerce")
        bad = ~(v > 0) | ~np.isfinite(v)
        if bad.any():
            raise DataError(f"runs table, column {col!r}: must be a positive number; bad in row(s) "
                            f"{name_rows(np.flatnonzero(bad.to_numpy()) + 2)} of the file")
        out[col] = v.astype(float)
    if "flops" not in out.columns:
        out["flops"] = 6.0 * (out["size"] * 1e9) * (out["tokens"] * 1e12)
    if "run" not in out.columns:
        out["run"] = [f"N={n:g}B,D={d:g}T" for n, d in zip(out["size"], out["tokens"])]
    out["run"] = out["run"].astype(str)
    return out


def _target_values(fit, draws, target: str, skill, at) -> tuple[np.ndarray, np.ndarray]:
    """(g1, g2) of the target per draw."""
    if target == "scores":
        mu, phi = draws.scores(fit, [at[0]], [at[1]])
        return score_moments(mu[:, 0, :], phi[:, 0, :])
    k = fit.spec.skills.index(skill)
    x = fit.scaler.transform(np.asarray([at[0]], float), np.asarray([at[1]], float), draws.covariates[None])[0]
    B = fit.layout.unpack_many(draws.thetas, ("B",))["B"]  # (n, p, K)
    g1 = (np.einsum("p,npk->nk", x, B) + draws.effects[:, : fit.spec.K])[:, [k]]
    return g1, g1**2


def design_training(fit, family: str, runs: pd.DataFrame, target: str = "skill", *, skill: str | None = None,
                    at: tuple[float, float] | None = None,
                    benchmarks: list[str] | None = None, batch: int = 1, n_draws: int = 2000,
                    n_fantasies: int = 128, seed: int = 0, parameter_uncertainty: bool = False,
                    rows=None, flops: float | None = None, box=None, progress=None) -> DesignResult:
    """Rank candidate training runs of ``family`` (a frame with size, tokens, optionally run and
    flops; FLOPs default to 6·N·D) by the expected reduction of the target's variance per FLOP.

    ``target``: ``"skill"`` (``skill`` of the family at ``at`` = (size, tokens), default the largest
    candidate run), ``"scores"`` (the expected scores of a model of the family at ``at``) or
    ``"allocation"`` (log of the compute-optimal tokens per parameter of ``skill`` at ``flops``,
    default the FLOPs of ``at``, within ``box`` as in :func:`~latentscale.allocation.allocate`;
    its variance is the delta method's, so it needs the fit's Hessian).
    ``benchmarks``: what each new model will be evaluated on (default every benchmark of the fit).
    The draws are at θ̂ (the family's uncertainty given θ̂) unless ``parameter_uncertainty``."""
    if target not in TRAIN_TARGETS:
        raise InputError(f"unknown target {target!r}; choose one of {', '.join(TRAIN_TARGETS)}")
    if target in ("skill", "allocation") and skill not in fit.spec.skills:
        raise InputError(f"target {target!r} needs a skill (skill=, --skill), one of {', '.join(fit.spec.skills)}; "
                         f"got {skill!r}")
    runs = check_runs(runs)
    if at is None:
        big = runs["flops"].idxmax()
        at = (float(runs.loc[big, "size"]), float(runs.loc[big, "tokens"]))
    if len(at) != 2 or not all(np.isfinite(v) and v > 0 for v in at):
        raise InputError(f"at must be (size in billions, tokens in trillions), both positive; got {at!r}")
    benchmarks = list(fit.spec.benchmarks) if benchmarks is None else list(benchmarks)
    unknown = [b for b in benchmarks if b not in fit.spec.benchmarks]
    if unknown:
        raise InputError(f"benchmark(s) {', '.join(map(repr, unknown))} not in the fit; its benchmarks are "
                         f"{', '.join(fit.spec.benchmarks)}")
    frame = conditioning_frame(fit, rows)
    if target == "allocation":
        return _allocation_design(fit, family, runs, frame, skill, flops or FLOPS_UNIT * at[0] * at[1], box,
                                  benchmarks, batch, n_fantasies, seed, progress)
    draws = family_draws(fit, frame, [family], n_draws=n_draws, seed=seed,
                         parameter_uncertainty=parameter_uncertainty)[family]
    mu, phi = draws.scores(fit, runs["size"], runs["tokens"])  # (n, R, J)
    cols = [fit.spec.benchmarks.index(b) for b in benchmarks]
    J = len(cols)
    n = mu.shape[0]
    mu, phi = mu[:, :, cols].reshape(n, -1), phi[:, :, cols].reshape(n, -1)
    g1, g2 = _target_values(fit, draws, target, skill, at)
    problem = DesignProblem(family, mu, phi, g1, g2, np.full(len(runs), -1), runs["flops"].to_numpy(),
                            labels=list(runs["run"]), members=[np.arange(r * J, (r + 1) * J) for r in range(len(runs))])
    rows_, chosen = greedy_design([problem], batch=batch, n_fantasies=n_fantasies, seed=seed, progress=progress)
    what = {"skill": f"skill {skill} of {family} at N = {at[0]:g}B, D = {at[1]:g}T",
            "scores": f"the expected scores of a {family} model at N = {at[0]:g}B, D = {at[1]:g}T"}[target]
    return _result(rows_, chosen, runs, what)


def _allocation_design(fit, family, runs, frame, skill, flops, box, benchmarks, batch, n_fantasies, seed,
                       progress) -> DesignResult:
    """The ``"allocation"`` target (:mod:`latentscale.design.information`)."""
    if fit.hessian is None:
        raise InputError("target 'allocation' needs the fit's Hessian (the variance of D*/N* is the delta "
                         "method's); refit with standard errors")
    cov = fit.cov_theta("observed")
    if not np.all(np.isfinite(cov)):
        raise InputError("the fit's observed-information covariance is not finite (information matrix not positive "
                         "definite), so the variance of D*/N* is undefined; refit, or choose another target")
    g, grad = split_and_gradient(fit, skill, flops, box)
    M = int(n_fantasies)
    if progress:
        progress(f"expected information of {len(runs)} runs × {M} fantasies ({2 * grad.size} likelihood "
                 "evaluations per greedy step, Laplace rule)")
    draws = family_draws(fit, frame, [family], n_draws=M, seed=seed)[family]
    mu, phi = draws.scores(fit, runs["size"], runs["tokens"])  # (M, R, J)
    rng = np.random.default_rng([seed, 1])
    y = beta_scores(rng, mu, phi)
    skip = [j for j, b in enumerate(fit.spec.benchmarks) if b not in benchmarks]
    y[:, :, skip] = np.nan
    design = SplitDesign(fit, family, frame[frame["family"] == family], runs, y, cov, grad)
    rows_, chosen = greedy_choice([design], batch=batch, progress=progress)
    what = (f"log of the compute-optimal tokens per parameter of {skill} at {flops:.3g} FLOPs "
            f"(D*/N* = {math.exp(g):.4g} at the estimate; delta-method variance)")
    return _result(rows_, chosen, runs, what)


def _result(rows_: list[dict], chosen: list[dict], runs: pd.DataFrame, what: str) -> DesignResult:
    """The ranked runs and the greedy batch."""
    table = ranked_table(rows_, chosen).join(runs[["size", "tokens", "flops"]], on="candidate")
    table["run"] = table["label"]
    table["reduction_per_flop"] = table["reduction_per_cost"]
    batch_table = pd.DataFrame(chosen, columns=["order", "family", "candidate", "label", "cost", "reduction",
                                                "expected_variance"]).rename(columns={"label": "run", "cost": "flops"})
    return DesignResult(table=table[list(TRAIN_COLUMNS)], batch=batch_table.drop(columns=["candidate"]), target=what)
