"""The marginal log-likelihood as jit-compiled functions of the unconstrained parameter vector.

Functions are compiled once per (spec, data shape, rule size): the data arrays and quadrature
nodes are arguments, never constants baked into the trace, so refits on data of the same
shape (folds, restarts, bootstrap) reuse the compiled code.

Large designs are cut into chunks of whole families, padded to one common shape (one
compilation), evaluated one after the other and summed: memory is bounded by the chunk, not by
the data, and grows linearly with the number of observed scores. Each chunk keeps the family
modes of its last evaluation and warm-starts the next mode search from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from latentscale.estimation.quadrature import QuadratureRule, default_rule, family_loglik, gauss_hermite_rule
from latentscale.model.design import Design
from latentscale.model.params import ModelSpec, unpack

#: Default bound on observed scores × quadrature nodes per chunk (memory per chunk ~ 1–2 GB at most).
CHUNK_CELLS = 1 << 22


def _family_ll_modes(theta, arrays, nodes, log_weights, alpha0, spec, n_families, tracked_steps=1, search=True):
    params = unpack(theta, spec)
    floors = jnp.asarray(spec.floors)
    log_w, signs = log_weights  # signs: None for positive rules
    return family_loglik(params, arrays, floors, nodes, log_w, n_families, spec.J, alpha0, tracked_steps,
                         search, signs)


_family_ll = jax.jit(_family_ll_modes, static_argnames=("spec", "n_families", "tracked_steps"))


def _total_and_aux(theta, arrays, nodes, log_weights, alpha0, spec, n_families):
    per, modes = _family_ll_modes(theta, arrays, nodes, log_weights, alpha0, spec, n_families)
    return jnp.sum(per), (per, modes)


# One compiled executable gives ℓ, its gradient, the per-family values and the modes (aux).
_value_and_grad = jax.jit(jax.value_and_grad(_total_and_aux, has_aux=True), static_argnames=("spec", "n_families"))


@partial(jax.jit, static_argnames=("spec", "n_families", "batch"))
def _hessian_and_scores(theta, arrays, nodes, log_weights, alpha0, spec, n_families, batch):
    """Exact Hessian of ℓ (P, P) and per-family scores (F, P), by forward-mode derivatives of
    the reverse-mode gradient, ``batch`` directions at a time. ``alpha0`` must be the converged
    modes at ``theta``: two tracked Newton steps from them keep the mode's second derivatives
    exact, and the mode search is left out of the differentiated program."""

    def grad_and_per(th):
        def total(t):
            per, _ = _family_ll_modes(t, arrays, nodes, log_weights, alpha0, spec, n_families, tracked_steps=2,
                                      search=False)
            return jnp.sum(per), per

        g, per = jax.grad(total, has_aux=True)(th)
        return g, per

    def directional(v):
        return jax.jvp(grad_and_per, (theta,), (v,))[1]

    H, S = jax.lax.map(directional, jnp.eye(theta.size, dtype=theta.dtype), batch_size=batch)
    return (H + H.T) / 2.0, S.T


def family_chunks(design: Design, max_obs: int) -> list[tuple[Design, int]]:
    """Cut a design into chunks of consecutive whole families with at most ``max_obs`` observed
    scores each (a larger family gets a chunk of its own), all padded to one shape. Returns
    (padded chunk, number of its real families) pairs; one unpadded chunk if all fit."""
    if design.n_obs <= max_obs:
        return [(design, design.n_families)]
    per_family = np.bincount(design.obs_family, minlength=design.n_families)
    bounds, start, count = [], 0, 0
    for f, n in enumerate(per_family):
        if count + n > max_obs and f > start:
            bounds.append((start, f))
            start, count = f, 0
        count += n
    bounds.append((start, design.n_families))
    pieces = [design.family_slice(a, b) for a, b in bounds]
    F = max(p.n_families for p in pieces)
    M = max(p.n_models for p in pieces)
    N = max(p.n_obs for p in pieces)
    return [(p.padded(N, M, F), p.n_families) for p in pieces]


@dataclass
class MarginalLikelihood:
    """ℓ(θ) = Σ_f log ∫ p(y_f | α) N(α; 0, Σ) dα for one design, by adaptive Gauss–Hermite quadrature.

    ``chunk_cells`` bounds observed scores × nodes per compiled call (the design is cut into
    chunks of whole families beyond it).
    """

    spec: ModelSpec
    design: Design
    rule: QuadratureRule
    chunk_cells: int = CHUNK_CELLS
    _chunks: list = field(init=False, repr=False)

    @classmethod
    def build(cls, spec: ModelSpec, design: Design, points: int | None = None, prune: float = 0.0,
              chunk_cells: int = CHUNK_CELLS, rule: QuadratureRule | None = None):
        """With ``rule`` None: the default rule for K (:func:`default_rule`), or the product
        Gauss–Hermite rule with ``points`` nodes per dimension."""
        if rule is None:
            rule = default_rule(spec.K) if points is None else gauss_hermite_rule(spec.K, points, prune)
        return cls(spec, design, rule, chunk_cells)

    def __post_init__(self):
        nodes = jnp.asarray(self.rule.nodes)
        signs = None if self.rule.signs is None else jnp.asarray(self.rule.signs)
        log_weights = (jnp.asarray(self.rule.log_weights), signs)
        max_obs = max(1, self.chunk_cells // self.rule.size)
        self._chunks = []
        for chunk, n_real in family_chunks(self.design, max_obs):
            zeros = jnp.zeros((chunk.n_families, self.spec.K))
            self._chunks.append({"arrays": chunk.arrays(), "n_families": chunk.n_families, "n_real": n_real,
                                 "nodes": nodes, "log_weights": log_weights, "modes": zeros})

    @property
    def n_chunks(self) -> int:
        return len(self._chunks)

    def reset(self) -> None:
        """Forget the warm-start modes (the next mode search starts from 0)."""
        for c in self._chunks:
            c["modes"] = jnp.zeros_like(c["modes"])

    def _args(self, c):
        return c["arrays"], c["nodes"], c["log_weights"], c["modes"]

    def _keep_modes(self, c, modes):
        if bool(jnp.all(jnp.isfinite(modes))):
            c["modes"] = modes

    def per_family(self, theta) -> np.ndarray:
        """Log marginal likelihood of each family, (F,)."""
        theta = jnp.asarray(theta)
        out = []
        for c in self._chunks:
            per, modes = _family_ll(theta, *self._args(c), self.spec, c["n_families"])
            self._keep_modes(c, modes)
            out.append(np.asarray(per)[: c["n_real"]])
        return np.concatenate(out)

    def value(self, theta) -> float:
        return float(self.per_family(theta).sum())

    def value_and_grad(self, theta) -> tuple[float, np.ndarray]:
        v, g, _ = self.value_grad_families(theta)
        return v, g

    def value_grad_families(self, theta) -> tuple[float, np.ndarray, np.ndarray]:
        """ℓ, its gradient and the (F,) per-family log-likelihoods (one compiled call per chunk)."""
        theta = jnp.asarray(theta)
        value, grad, per_all = 0.0, np.zeros(theta.size), []
        for c in self._chunks:
            (v, (per, modes)), g = _value_and_grad(theta, *self._args(c), self.spec, c["n_families"])
            self._keep_modes(c, modes)
            value += float(v)
            grad += np.asarray(g)
            per_all.append(np.asarray(per)[: c["n_real"]])
        return value, grad, np.concatenate(per_all)

    def hessian_and_scores(self, theta, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The exact Hessian of ℓ (P, P) and the per-family scores (F, P) at ``theta``, by
        automatic differentiation (forward over reverse), ``batch`` parameter directions at a
        time (default: as many as keep a chunk's working set near ``chunk_cells``)."""
        theta = jnp.asarray(theta)
        P = theta.size
        H, S = np.zeros((P, P)), []
        self.per_family(theta)  # the converged modes at theta, for every chunk
        for c in self._chunks:
            b = batch or self._batch(c, P)
            h, s = _hessian_and_scores(theta, *self._args(c), self.spec, c["n_families"], b)
            H += np.asarray(h)
            S.append(np.asarray(s)[: c["n_real"]])
        return H, np.concatenate(S)

    def _batch(self, c, n_params: int) -> int:
        """Parameter directions per forward pass of the Hessian: as many as keep the working set
        near ``chunk_cells`` (all of them on small data)."""
        cells = c["arrays"]["y"].shape[0] * self.rule.size
        return int(np.clip(self.chunk_cells // max(cells, 1), 1, n_params))
