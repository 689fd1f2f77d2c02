"""The marginal log-likelihood as jit-compiled functions of the unconstrained parameter vector.

Functions are compiled once per (spec, data shape, rule size): the data arrays and quadrature
nodes are arguments, never constants baked into the trace, so refits on data of the same
shape (folds, restarts, bootstrap) reuse the compiled code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from latentscale.estimation.quadrature import QuadratureRule, default_points, family_loglik, gauss_hermite_rule
from latentscale.model.design import Design
from latentscale.model.params import ModelSpec, unpack


@partial(jax.jit, static_argnames=("spec", "n_families"))
def _family_ll(theta, arrays, nodes, log_weights, spec, n_families):
    params = unpack(theta, spec)
    floors = jnp.asarray(spec.floors)
    return family_loglik(params, arrays, floors, nodes, log_weights, n_families, spec.J)


def _total(theta, arrays, nodes, log_weights, spec, n_families):
    return jnp.sum(_family_ll(theta, arrays, nodes, log_weights, spec, n_families))


def _total_and_families(theta, arrays, nodes, log_weights, spec, n_families):
    per = _family_ll(theta, arrays, nodes, log_weights, spec, n_families)
    return jnp.sum(per), per


# One compiled executable gives ℓ, its gradient and the per-family values (aux output), so
# finite-difference Hessians and per-family scores come from the same evaluations.
_value_and_grad = jax.jit(jax.value_and_grad(_total_and_families, has_aux=True),
                          static_argnames=("spec", "n_families"))
_family_jac = jax.jit(jax.jacrev(_family_ll), static_argnames=("spec", "n_families"))


@dataclass
class MarginalLikelihood:
    """ℓ(θ) = Σ_f log ∫ p(y_f | α) N(α; 0, Σ) dα for one design, by adaptive Gauss–Hermite quadrature."""

    spec: ModelSpec
    design: Design
    rule: QuadratureRule

    @classmethod
    def build(cls, spec: ModelSpec, design: Design, points: int | None = None, prune: float = 0.0):
        points = default_points(spec.K) if points is None else points
        return cls(spec, design, gauss_hermite_rule(spec.K, points, prune))

    def __post_init__(self):
        self._cached = (
            self.design.arrays(),
            jnp.asarray(self.rule.nodes),
            jnp.asarray(self.rule.log_weights),
        )

    def _args(self):
        return self._cached

    def per_family(self, theta) -> np.ndarray:
        """Log marginal likelihood of each family, (F,)."""
        return np.asarray(_family_ll(jnp.asarray(theta), *self._args(), self.spec, self.design.n_families))

    def value(self, theta) -> float:
        return float(self.per_family(theta).sum())

    def value_and_grad(self, theta) -> tuple[float, np.ndarray]:
        v, g, _ = self.value_grad_families(theta)
        return v, g

    def value_grad_families(self, theta) -> tuple[float, np.ndarray, np.ndarray]:
        """ℓ, its gradient and the (F,) per-family log-likelihoods, from one compiled call."""
        (v, per), g = _value_and_grad(jnp.asarray(theta), *self._args(), self.spec, self.design.n_families)
        return float(v), np.asarray(g), np.asarray(per)

    def family_scores(self, theta) -> np.ndarray:
        """(F, n_params) gradients of each family's log-likelihood (for the sandwich estimator)."""
        return np.asarray(_family_jac(jnp.asarray(theta), *self._args(), self.spec, self.design.n_families))
