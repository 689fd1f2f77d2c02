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
#: Parameter directions per forward pass of the exact Hessian (about; P is split evenly).
HESSIAN_BATCH = 26


def direction_batch(n_params: int, target: int = HESSIAN_BATCH) -> int:
    """Directions per pass of the exact Hessian: P split into passes of at most ``target``,
    evenly (78 → 3 × 26; 89 → 4 × 23, padded to 92)."""
    passes = max(1, -(-n_params // target))
    return -(-n_params // passes)


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

    P = theta.size
    n_dir = -(-P // batch) * batch  # padded with zero directions to whole batches: one vmapped body
    dirs = jnp.concatenate([jnp.eye(P, dtype=theta.dtype), jnp.zeros((n_dir - P, P), dtype=theta.dtype)])
    H, S = jax.lax.map(directional, dirs, batch_size=batch)
    H = H[:P]
    return (H + H.T) / 2.0, S[:P].T


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
    # The last evaluation (θ, per-family values, gradient or None): asking again at the same θ
    # costs nothing, and the stored modes are then the ones converged at θ.
    _last: tuple | None = field(init=False, repr=False, default=None)

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
        self._last = None
        for c in self._chunks:
            c["modes"] = jnp.zeros_like(c["modes"])

    def _cached(self, theta: np.ndarray, need_grad: bool):
        last = self._last
        if last is None or (need_grad and last[2] is None) or not np.array_equal(last[0], theta):
            return None
        return last

    def _args(self, c):
        return c["arrays"], c["nodes"], c["log_weights"], c["modes"]

    def _keep_modes(self, c, modes):
        if bool(jnp.all(jnp.isfinite(modes))):
            c["modes"] = modes

    def per_family(self, theta) -> np.ndarray:
        """Log marginal likelihood of each family, (F,)."""
        key = np.array(theta, dtype=float)
        hit = self._cached(key, need_grad=False)
        if hit is not None:
            return hit[1].copy()
        theta = jnp.asarray(key)
        out = []
        for c in self._chunks:
            per, modes = _family_ll(theta, *self._args(c), self.spec, c["n_families"])
            self._keep_modes(c, modes)
            out.append(np.asarray(per)[: c["n_real"]])
        per = np.concatenate(out)
        self._last = (key, per, None)
        return per.copy()

    def value(self, theta) -> float:
        return float(self.per_family(theta).sum())

    def value_and_grad(self, theta) -> tuple[float, np.ndarray]:
        v, g, _ = self.value_grad_families(theta)
        return v, g

    def value_grad_families(self, theta) -> tuple[float, np.ndarray, np.ndarray]:
        """ℓ, its gradient and the (F,) per-family log-likelihoods (one compiled call per chunk)."""
        key = np.array(theta, dtype=float)
        hit = self._cached(key, need_grad=True)
        if hit is not None:
            return hit[3], hit[2].copy(), hit[1].copy()
        theta = jnp.asarray(key)
        value, grad, per_all = 0.0, np.zeros(theta.size), []
        for c in self._chunks:
            (v, (per, modes)), g = _value_and_grad(theta, *self._args(c), self.spec, c["n_families"])
            self._keep_modes(c, modes)
            value += float(v)
            grad += np.asarray(g)
            per_all.append(np.asarray(per)[: c["n_real"]])
        per = np.concatenate(per_all)
        self._last = (key, per, grad, value)
        return value, grad.copy(), per.copy()

    def hessian_and_scores(self, theta, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The exact Hessian of ℓ (P, P) and the per-family scores (F, P) at ``theta``, by
        automatic differentiation (forward over reverse), ``batch`` parameter directions per
        pass (default :func:`direction_batch`). The design is cut for it into chunks of whole
        families with at most ``chunk_cells`` scores × nodes × directions each, so that each
        chunk's likelihood and reverse pass are computed once per batch of directions (one
        chunk of all the data with a few directions per pass recomputed them for every batch:
        about a third slower)."""
        theta = jnp.asarray(theta)
        P = theta.size
        batch = int(batch or direction_batch(P))
        modes = self.converged_modes(theta)
        max_obs = max(1, self.chunk_cells // (self.rule.size * batch))
        nodes, log_weights = self._chunks[0]["nodes"], self._chunks[0]["log_weights"]
        H, S, start = np.zeros((P, P)), [], 0
        for chunk, n_real in family_chunks(self.design, max_obs):
            alpha0 = jnp.zeros((chunk.n_families, self.spec.K)).at[:n_real].set(modes[start:start + n_real])
            h, s = _hessian_and_scores(theta, chunk.arrays(), nodes, log_weights, alpha0, self.spec,
                                       chunk.n_families, batch)
            H += np.asarray(h)
            S.append(np.asarray(s)[:n_real])
            start += n_real
        return H, np.concatenate(S)

    def converged_modes(self, theta) -> np.ndarray:
        """Every family's posterior mode (F, K) at ``theta``, converged there."""
        self.per_family(theta)  # free when the last evaluation was at theta
        return np.concatenate([np.asarray(c["modes"])[: c["n_real"]] for c in self._chunks])
