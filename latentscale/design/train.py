"""What to train next: rank candidate (N, D) training runs of a family by the expected reduction
of a target's uncertainty per FLOP, the new model being evaluated on every benchmark (or on
those named).

Targets: ``"skill"`` (the family's skill at a target size and token count, (Bᵀx)_k + α_k) and
``"scores"`` (the expected scores of a model of the family at the target size and tokens).

Not a target: the compute-optimal D*/N* of a skill. It depends on the population parameters B
only, which a family's new run informs as one more model among all the fit's families; scoring it
by reweighting joint (θ, α) draws, as the targets above are scored, was tried and gives
meaningless reductions (a few hundred parameter draws, reweighted by a new model's dozen scores,
degenerate to a handful). It needs the run's expected Fisher information added to the fit's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from latentscale.data.validate import DataError, name_rows
from latentscale.design.draws import family_draws
from latentscale.design.evaluate import DesignResult, ranked_table
from latentscale.design.value import DesignProblem, greedy_design, score_moments
from latentscale.errors import InputError
from latentscale.prediction.predict import conditioning_frame

TRAIN_TARGETS = ("skill", "scores")
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
    x = fit.scaler.transform(np.asarray([at[0]], float), np.asarray([at[1]], float))[0]
    B = fit.layout.unpack_many(draws.thetas, ("B",))["B"]  # (n, p, K)
    g1 = (np.einsum("p,npk->nk", x, B) + draws.effects[:, : fit.spec.K])[:, [k]]
    return g1, g1**2


def design_training(fit, family: str, runs: pd.DataFrame, target: str = "skill", *, skill: str | None = None,
                    at: tuple[float, float] | None = None,
                    benchmarks: list[str] | None = None, batch: int = 1, n_draws: int = 2000,
                    n_fantasies: int = 128, seed: int = 0, parameter_uncertainty: bool = False,
                    rows=None, progress=None) -> DesignResult:
    """Rank candidate training runs of ``family`` (a frame with size, tokens, optionally run and
    flops; FLOPs default to 6·N·D) by the expected reduction of the target's variance per FLOP.

    ``target``: ``"skill"`` (``skill`` of the family at ``at`` = (size, tokens), default the largest
    candidate run) or ``"scores"`` (the expected scores of a model of the family at ``at``).
    ``benchmarks``: what each new model will be evaluated on (default every benchmark of the fit).
    The draws are at θ̂ (the family's uncertainty given θ̂) unless ``parameter_uncertainty``."""
    if target not in TRAIN_TARGETS:
        raise InputError(f"unknown target {target!r}; choose one of {', '.join(TRAIN_TARGETS)}")
    if target == "skill" and skill not in fit.spec.skills:
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
    table = ranked_table(rows_, chosen).join(runs[["size", "tokens", "flops"]], on="candidate")
    table["run"] = table["label"]
    table["reduction_per_flop"] = table["reduction_per_cost"]
    batch_table = pd.DataFrame(chosen, columns=["order", "family", "candidate", "label", "cost", "reduction",
                                                "expected_variance"]).rename(columns={"label": "run", "cost": "flops"})
    what = {"skill": f"skill {skill} of {family} at N = {at[0]:g}B, D = {at[1]:g}T",
            "scores": f"the expected scores of a {family} model at N = {at[0]:g}B, D = {at[1]:g}T"}[target]
    return DesignResult(table=table[list(TRAIN_COLUMNS)],
                        batch=batch_table.drop(columns=["candidate"]), target=what)
