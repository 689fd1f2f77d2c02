"""Expected reduction of a target's posterior variance from evaluations not yet run (SPEC §4, design).

A family's posterior is represented by n weighted draws s of its random effects (and of the
parameters, when their uncertainty is carried): for every candidate cell c the draws give the
expected score μ_sc and the Beta precision φ_sc, and for the target the values g_st of its
quantities (the expected and second moments of an unevaluated score, a skill, the optimal
tokens per parameter, ...). Observing y_c reweights the draws by Beta(y_c; φμ, φ(1 − μ)), the
same update as the posterior's own importance weights, so

    V(A) = E_{y_A}[ Σ_t Var(g_t | data, y_A) ]

is estimated by R fantasies: a draw s_r from the current posterior, y_A from the model at s_r,
then the weighted variance over the other draws (leaving s_r out removes the bias its own
outcome would give it). Every candidate is scored with the same fantasies
(common random numbers), so differences between candidates carry little Monte Carlo noise.
Chosen score cells leave a score target: the variance that remains is that of the scores still
unevaluated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import betaln, logsumexp

from latentscale.errors import InputError
from latentscale.prediction.sampling import beta_scores


@dataclass
class DesignProblem:
    """One family's candidates and target, on n posterior draws.

    ``mu``, ``phi``: (n, E) expected score and precision of every cell per draw; a candidate is
    one cell, or with ``members`` the cells listed for it (a new model: its J benchmarks);
    ``g1``, ``g2``: (n, T) first and second moments of each target quantity per draw (for a
    score: μ and μ² + μ(1 − μ)/(1 + φ), so the variance is the predictive variance of the observed
    score); ``target_of``: (C,) the target column a candidate cell removes when it is observed
    (−1: none); ``cost``: (C,); ``logw``: (n,) log-weights of the draws (0: equally weighted)."""

    family: str
    mu: np.ndarray
    phi: np.ndarray
    g1: np.ndarray
    g2: np.ndarray
    target_of: np.ndarray
    cost: np.ndarray
    logw: np.ndarray | None = None
    labels: list = field(default_factory=list)
    members: list | None = None

    def __post_init__(self):
        n, E = self.mu.shape
        if self.phi.shape != (n, E) or self.g1.shape[0] != n or self.g2.shape != self.g1.shape:
            raise InputError("design problem arrays disagree in shape: mu/phi (n, C), g1/g2 (n, T)")
        self.logw = np.zeros(n) if self.logw is None else np.asarray(self.logw, float)
        self.target_of = np.asarray(self.target_of, int)
        self.cost = np.asarray(self.cost, float)
        if np.any(~(self.cost > 0)):
            raise InputError(f"family {self.family!r}: every candidate needs a positive cost")

    @property
    def n_candidates(self) -> int:
        return self.mu.shape[1] if self.members is None else len(self.members)


def score_moments(mu: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and second moments of an observed score y ~ Beta(φμ, φ(1 − μ)) given μ and φ:
    (μ, μ² + μ(1 − μ)/(1 + φ)), so their weighted variance is the predictive variance of y."""
    return mu, mu**2 + mu * (1.0 - mu) / (1.0 + phi)


def beta_loglik(y: np.ndarray, mu: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """log Beta(y; φμ, φ(1 − μ)) (numpy, broadcasting)."""
    a = np.maximum(phi * mu, 1e-12)
    b = np.maximum(phi * (1.0 - mu), 1e-12)
    return (a - 1.0) * np.log(y) + (b - 1.0) * np.log1p(-y) - betaln(a, b)


def _weighted_variance(logw: np.ndarray, g1: np.ndarray, g2: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Σ_t over kept target columns of the weighted variance, for log-weights (..., n)."""
    w = np.exp(logw - logsumexp(logw, axis=-1, keepdims=True))
    m1 = w @ g1
    m2 = w @ g2
    return np.sum(np.maximum(m2 - m1**2, 0.0) * keep, axis=-1)


class Fantasies:
    """R joint fantasies of every candidate's outcome for one problem: draw indices s_r from the
    current posterior (systematic resampling of its weights) and y_rc ~ Beta at draw s_r."""

    def __init__(self, problem: DesignProblem, n_fantasies: int, seed: int):
        rng = np.random.default_rng(seed)
        w = np.exp(problem.logw - logsumexp(problem.logw))
        pos = (rng.uniform() + np.arange(n_fantasies)) / n_fantasies
        self.index = np.minimum(np.searchsorted(np.cumsum(w), pos), len(w) - 1)
        self.y = np.clip(beta_scores(rng, problem.mu[self.index], problem.phi[self.index]), 1e-9, 1 - 1e-9)  # (R, C)
        self.problem = problem

    def loglik(self, c: int | np.ndarray) -> np.ndarray:
        """log p(y_rc | draw s) for candidate(s) c: (R, n) or (len(c), R, n)."""
        p = self.problem
        if p.members is not None:
            if np.ndim(c) == 0:
                return self._cells(p.members[int(c)]).sum(axis=0)
            return np.stack([self._cells(p.members[int(i)]).sum(axis=0) for i in c])
        return self._cells([c])[0] if np.ndim(c) == 0 else self._cells(np.asarray(c))

    def _cells(self, e: np.ndarray) -> np.ndarray:
        """log p(y_re | draw s) of cells e: (len(e), R, n)."""
        p = self.problem
        e = np.asarray(e, int)
        return beta_loglik(self.y[:, e].T[:, :, None], p.mu.T[e][:, None, :], p.phi.T[e][:, None, :])


class FamilyDesign:
    """Greedy sequential choice inside one family: V of the chosen set and the expected value of
    adding each remaining candidate."""

    def __init__(self, problem: DesignProblem, n_fantasies: int = 128, seed: int = 0, chunk: int | None = None):
        self.problem = problem
        self.fantasies = Fantasies(problem, n_fantasies, seed)
        self.chosen: list[int] = []
        self.acc = np.broadcast_to(problem.logw, (n_fantasies, problem.logw.size)).copy()  # (R, n)
        # Leave the draw each fantasy came from out of its own posterior: otherwise that draw, which
        # explains its outcome best, takes extra weight and the expected variance is biased low.
        self.acc[np.arange(n_fantasies), self.fantasies.index] = -np.inf
        n = problem.logw.size
        self.chunk = chunk or max(1, int(2e7 // max(1, n_fantasies * n)))

    def keep(self, extra: np.ndarray | None = None) -> np.ndarray:
        """Target columns still counted: (T,) or (len(extra), T)."""
        p = self.problem
        keep = np.ones(p.g1.shape[1])
        gone = p.target_of[self.chosen]
        keep[gone[gone >= 0]] = 0.0
        if extra is None:
            return keep
        out = np.repeat(keep[None], len(extra), axis=0)
        t = p.target_of[extra]
        rows = np.nonzero(t >= 0)[0]
        out[rows, t[rows]] = 0.0
        return out

    def value(self) -> float:
        """V(chosen): the expected remaining target variance."""
        p = self.problem
        if not self.chosen:
            return float(_weighted_variance(p.logw, p.g1, p.g2, self.keep()))
        return float(np.mean(_weighted_variance(self.acc, p.g1, p.g2, self.keep())))

    def values_with(self, candidates: np.ndarray) -> np.ndarray:
        """V(chosen ∪ {c}) for each candidate c."""
        p = self.problem
        out = np.empty(len(candidates))
        for start in range(0, len(candidates), self.chunk):
            c = np.asarray(candidates[start:start + self.chunk])
            logw = self.acc[None] + self.fantasies.loglik(c)  # (m, R, n)
            var = _weighted_variance(logw, p.g1, p.g2, self.keep(c)[:, None, :])  # (m, R)
            out[start:start + len(c)] = var.mean(axis=1)
        return out

    def choose(self, c: int) -> None:
        self.chosen.append(int(c))
        self.acc = self.acc + self.fantasies.loglik(int(c))

    def remaining(self) -> np.ndarray:
        mask = np.ones(self.problem.n_candidates, bool)
        mask[self.chosen] = False
        return np.nonzero(mask)[0]


def greedy_design(problems: list[DesignProblem], batch: int = 1, n_fantasies: int = 128, seed: int = 0,
                  progress=None) -> tuple[list[dict], list[dict]]:
    """Rank every candidate of every family by the expected reduction of the target's variance per
    unit cost if it were run alone, and choose a batch of ``batch`` runs greedily (each next run
    scored given the runs already chosen, whose outcomes are integrated over).

    Returns (rows, batch_rows): one dict per candidate (family, label, cost, variance_before,
    expected_variance, reduction, reduction_per_cost) and one per chosen run in order (with the
    marginal reduction it adds to those chosen before it)."""
    if batch < 0:
        raise InputError(f"batch must be at least 0, got {batch}")
    designs = [FamilyDesign(p, n_fantasies, seed=[seed, i]) for i, p in enumerate(problems)]
    return greedy_choice(designs, batch, progress)


def greedy_choice(designs: list, batch: int = 1, progress=None) -> tuple[list[dict], list[dict]]:
    """The ranking and greedy batch of :func:`greedy_design` for any designs: objects with a
    ``problem`` (``family``, ``labels``, ``cost``, ``n_candidates``) and the methods ``value()``,
    ``values_with(candidates)``, ``remaining()`` and ``choose(c)`` of :class:`FamilyDesign`."""
    say = progress or (lambda msg: None)
    rows = []
    for fd in designs:
        p = fd.problem
        before = fd.value()
        after = fd.values_with(np.arange(p.n_candidates))
        for c in range(p.n_candidates):
            red = before - after[c]
            rows.append({"family": p.family, "candidate": c, "label": p.labels[c] if p.labels else c,
                         "cost": p.cost[c], "variance_before": before, "expected_variance": after[c],
                         "reduction": red, "reduction_per_cost": red / p.cost[c]})
    say(f"scored {len(rows)} candidate runs in {len(designs)} famil{'y' if len(designs) == 1 else 'ies'}")
    best_after = {i: None for i in range(len(designs))}
    chosen = []
    for step in range(min(batch, len(rows))):
        best = None
        for i, fd in enumerate(designs):
            rem = fd.remaining()
            if not rem.size:
                continue
            before = fd.value()
            after = fd.values_with(rem) if best_after[i] is None else best_after[i]
            gain = (before - after) / fd.problem.cost[rem]
            j = int(np.argmax(gain))
            best_after[i] = after
            if best is None or gain[j] > best[0]:
                best = (gain[j], i, int(rem[j]), before - after[j])
        if best is None:
            break
        _, i, c, red = best
        fd = designs[i]
        fd.choose(c)
        best_after[i] = None
        p = fd.problem
        chosen.append({"order": step + 1, "family": p.family, "candidate": c,
                       "label": p.labels[c] if p.labels else c, "cost": p.cost[c], "reduction": red,
                       "expected_variance": fd.value()})
        say(f"batch run {step + 1}/{batch}: {chosen[-1]['label']} (family {p.family})")
    return rows, chosen
