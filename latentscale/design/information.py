"""What to train next for a population quantity: the compute-optimal split D*/N* of a skill.

The split depends on the skill effects B only (:mod:`latentscale.allocation.core`), which a new
run of one family informs as one more model among all the fit's families. Its value is therefore
the Fisher information the run adds to the fit's, not a reweighting of posterior draws:

- the conditional score of a set A of new models of the family is
  s_A = ∇ℓ_f(rows ∪ A) − ∇ℓ_f(rows), the change of the family's marginal log-likelihood gradient
  at θ̂ (the score of log p(y_A | the family's rows; θ));
- its outer product averaged over fantasies of A's scores, drawn from the family's posterior
  predictive at θ̂ (all of A's models from the same draw of the family's effects), is the expected
  information of A given the rows, E[s_A s_Aᵀ] (the information identity);
- the target g(θ) = log(D*/N*) of the skill at the budget has the delta-method variance
  ∇gᵀΣ∇g before (Σ the fit's observed-information covariance) and ∇gᵀ(Σ⁻¹ + E[s_A s_Aᵀ])⁻¹∇g
  after (by Woodbury, so coordinates held on the boundary stay held).

Per-family gradients are central differences of the per-family log-likelihoods (the likelihood's
``"fd"`` scores) under the Laplace rule (one node: a hundred times cheaper than the fit's rule, and
within a few per cent of the information identity's other side in the tests); the fantasies of
every candidate are families of one design, so each greedy step is one pass of 2P likelihood
evaluations. The expected variance uses the expected information, (Σ⁻¹ + E[s sᵀ])⁻¹, the usual
linearization of Bayesian design; the estimate of E[s sᵀ] from M fantasies has rank ≤ M.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from latentscale.allocation.core import budget_log, budget_segment, line_optimum, resolve_box, target_coefficients
from latentscale.errors import InputError
from latentscale.estimation.optimize import difference_steps
from latentscale.estimation.quadrature import QuadratureSpec

#: The step of the central differences of g in θ (relative, as in the likelihood's fd Hessian).
_REL_STEP = 1e-5
#: The rule of the conditional scores: the Laplace approximation (one node), a hundred times
#: cheaper than the fit's rule on its 2P likelihood evaluations per greedy step.
LAPLACE = QuadratureSpec(grid="laplace")


def split_and_gradient(fit, skill: str, flops: float, box=None) -> tuple[float, np.ndarray]:
    """g = log(D*/N*) of ``skill``'s compute-optimal split at ``flops`` (D in tokens per parameter:
    log of 1000·D/N with N in billions and D in trillions) and its gradient in θ (central
    differences of the closed-form optimum). The optimum must be interior to the box: on an
    edge the box, not B, decides it and no run can inform it."""
    s = float(budget_log(flops))
    size_box, tokens_box = resolve_box(fit, box)
    lo, hi = budget_segment(s, size_box, tokens_box)
    if lo > hi:
        raise InputError(f"the budget {flops:.3g} FLOPs does not meet the box of sizes {size_box[0]:g}-"
                         f"{size_box[1]:g} B and tokens {tokens_box[0]:g}-{tokens_box[1]:g} T; choose another budget")
    theta = np.asarray(fit.theta, float)
    P = theta.size
    h = difference_steps(theta, _REL_STEP)
    thetas = np.vstack([theta, theta + np.diag(h), theta - np.diag(h)])
    coef = target_coefficients(fit, thetas, skill, "skill")[0]
    u, interior = line_optimum(coef, s, lo, hi)
    if not interior[0]:
        raise InputError(f"the compute-optimal split of {skill} at {flops:.3g} FLOPs sits on an edge of the box "
                         "(see `latentscale allocate`): the box decides it, and no run can inform it; choose a "
                         "budget where the optimum is interior")
    g = s - 2.0 * u + math.log(1000.0)
    return float(g[0]), (g[1:P + 1] - g[P + 1:]) / (2.0 * h)


def pseudo_families(rows: pd.DataFrame, family: str, new: list[pd.DataFrame]) -> pd.DataFrame:
    """One frame holding, for each frame of new models in ``new``, a copy of the family's ``rows``
    and those models as a family of its own (``family#i``), model names made unique."""
    group = rows["group"].iloc[0] if len(rows) else family
    parts = []
    for i, extra in enumerate(new):
        block = pd.concat([rows, extra.assign(group=group)])
        block = block.assign(family=f"{family}#{i}")
        block.index = [f"{m}#{i}" for m in block.index]
        parts.append(block)
    out = pd.concat(parts)
    out.index.name = "model"
    return out


def family_scores(fit, frame: pd.DataFrame, quadrature=LAPLACE) -> pd.DataFrame:
    """The gradient of each family's marginal log-likelihood at θ̂ (F, P), rows named by family,
    under ``quadrature`` (a :class:`QuadratureSpec`; ``None``: the fit's own rule)."""
    from latentscale.estimation.likelihood import MarginalLikelihood
    from latentscale.model.design import build_design
    from latentscale.prediction.predict import as_rows

    design, _ = build_design(as_rows(fit, frame), fit.spec.benchmarks, fit.spec.clip, scaler=fit.scaler)
    ml = MarginalLikelihood(fit.spec, design, fit.quadrature if quadrature is None else quadrature)
    _, S = ml.hessian_and_scores(fit.theta, method="fd")
    return pd.DataFrame(S, index=list(ml.families))


def variance_after(cov: np.ndarray, grad: np.ndarray, U: np.ndarray) -> float:
    """∇gᵀ(Σ⁻¹ + U Uᵀ)⁻¹∇g by Woodbury: ∇gᵀΣ∇g − (UᵀΣ∇g)ᵀ(I + UᵀΣU)⁻¹(UᵀΣ∇g)."""
    a = cov @ grad
    v = U.T @ a
    inner = np.eye(U.shape[1]) + U.T @ cov @ U
    return float(grad @ a - v @ np.linalg.solve(inner, v))


@dataclass(frozen=True)
class RunCandidates:
    """What the greedy choice needs to know of one family's candidate runs."""

    family: str
    labels: list
    cost: np.ndarray

    @property
    def n_candidates(self) -> int:
        return len(self.cost)


class SplitDesign:
    """Expected variance of log(D*/N*) after sets of new runs of one family (module docstring), in
    the interface of :func:`~latentscale.design.value.greedy_choice`.

    ``outcomes``: fantasies of every candidate run's scores (M, R, J), NaN where a run is not
    evaluated, all runs of fantasy m drawn with the same family effects."""

    def __init__(self, fit, family: str, rows: pd.DataFrame, runs: pd.DataFrame, outcomes: np.ndarray,
                 cov: np.ndarray, grad: np.ndarray, quadrature=LAPLACE):
        self.fit, self.family, self.rows, self.runs, self.quadrature = fit, family, rows, runs, quadrature
        self.outcomes, self.cov, self.grad = outcomes, cov, grad
        self.problem = RunCandidates(family, list(runs["run"]), runs["flops"].to_numpy(float))
        self.chosen: list[int] = []
        self.base = (family_scores(fit, rows, quadrature).loc[family].to_numpy() if len(rows)
                     else np.zeros(len(grad)))  # a family without rows: ℓ_f(∅) = 0
        self._value = float(grad @ cov @ grad)
        self._last: dict[int, float] = {}

    def value(self) -> float:
        """The target's variance after the chosen runs."""
        return self._value

    def _models(self, m: int, runs: list[int]) -> pd.DataFrame:
        out = pd.DataFrame(self.outcomes[m, runs], columns=list(self.fit.spec.benchmarks),
                           index=[f"{self.family}:run{r}" for r in runs])
        out.insert(0, "tokens", self.runs["tokens"].to_numpy()[runs])
        out.insert(0, "size", self.runs["size"].to_numpy()[runs])
        out.insert(0, "family", self.family)
        return out

    def values_with(self, candidates: np.ndarray) -> np.ndarray:
        """The variance after the chosen runs and each candidate in turn (one design for all)."""
        if len(candidates) and all(int(c) in self._last for c in candidates):  # same chosen set: known
            return np.array([self._last[int(c)] for c in candidates])
        S = self.conditional_scores([self.chosen + [int(c)] for c in candidates])
        M = S.shape[1]
        out = np.array([variance_after(self.cov, self.grad, s.T / math.sqrt(M)) for s in S])
        self._last.update(zip((int(c) for c in candidates), out))
        return out

    def conditional_scores(self, sets: list[list[int]]) -> np.ndarray:
        """s_A of each set A of runs (indices into the runs) in each fantasy: (len(sets), M, P)."""
        M = self.outcomes.shape[0]
        new = [self._models(m, runs) for runs in sets for m in range(M)]
        scores = family_scores(self.fit, pseudo_families(self.rows, self.family, new), self.quadrature)
        S = scores.loc[[f"{self.family}#{i}" for i in range(len(new))]].to_numpy() - self.base
        return S.reshape(len(sets), M, -1)

    def remaining(self) -> np.ndarray:
        return np.setdiff1d(np.arange(len(self.runs)), self.chosen)

    def choose(self, c: int) -> None:
        value = self._last[int(c)] if int(c) in self._last else float(self.values_with(np.array([c]))[0])
        self.chosen.append(int(c))
        self._value = value
        self._last = {}
