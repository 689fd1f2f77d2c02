"""Model parameters and the bijection to an unconstrained vector.

Constrained parameters (a dict of arrays, the only form the likelihood sees):

- ``B`` (p, K): effect of the covariates on the skills;
- ``loadings`` (K, J): Λ; the anchor column of skill k has a single entry (k, k), > 0;
- ``intercepts`` (J,): b;
- ``log_precision`` (J,): log φ;
- ``corr_chol`` (K, K): lower Cholesky factor of the skill correlation Σ (unit-length rows).

The unconstrained vector stacks, in order: B (row-major), the free loadings of the
non-anchor benchmarks (column by column), the logs of the K anchor loadings, the
intercepts, the log precisions and the K(K−1)/2 below-diagonal entries of a unit-diagonal
lower-triangular M whose rows, normalized, are the rows of ``corr_chol``. Constraints live
here only (dynamax style): optimizers see unconstrained vectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np

N_COVARIATES = 3


@dataclass(frozen=True)
class ModelSpec:
    """Static description of a model: benchmarks, anchors, floors, clipping."""

    benchmarks: tuple[str, ...]
    anchors: tuple[str, ...]
    floors: tuple[float, ...]
    clip: tuple[float, float] | None = (0.001, 0.999)
    p: int = N_COVARIATES
    anchor_index: tuple[int, ...] = field(init=False)

    def __post_init__(self):
        missing = [a for a in self.anchors if a not in self.benchmarks]
        if missing:
            raise ValueError(
                f"anchor benchmark(s) {missing} are not among the benchmarks {list(self.benchmarks)}"
            )
        if len(set(self.anchors)) != len(self.anchors):
            raise ValueError(f"anchors must be distinct, got {list(self.anchors)}")
        if not 1 <= len(self.anchors) <= len(self.benchmarks):
            raise ValueError("need 1 <= K <= number of benchmarks")
        if self.clip is not None:  # any pair (a list from JSON, say) becomes a hashable tuple
            object.__setattr__(self, "clip", tuple(float(c) for c in self.clip))
        if self.clip is not None and (len(self.clip) != 2 or not (0.0 < self.clip[0] < self.clip[1] < 1.0)):
            raise ValueError(f"clip must satisfy 0 < low < high < 1, got {self.clip}")
        object.__setattr__(self, "anchor_index", tuple(self.benchmarks.index(a) for a in self.anchors))

    @property
    def K(self) -> int:
        return len(self.anchors)

    @property
    def J(self) -> int:
        return len(self.benchmarks)

    @property
    def skills(self) -> tuple[str, ...]:
        """Skills are named by their anchors."""
        return self.anchors

    @property
    def free_index(self) -> tuple[int, ...]:
        """Benchmarks whose loadings are all free (the non-anchors)."""
        return tuple(j for j in range(self.J) if j not in self.anchor_index)

    @property
    def n_params(self) -> int:
        K, J, p = self.K, self.J, self.p
        return K * (K - 1) // 2 + p * K + K + K * (J - K) + 2 * J

    def to_dict(self) -> dict:
        return {
            "benchmarks": list(self.benchmarks),
            "anchors": list(self.anchors),
            "floors": list(self.floors),
            "clip": None if self.clip is None else list(self.clip),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        return cls(
            benchmarks=tuple(d["benchmarks"]),
            anchors=tuple(d["anchors"]),
            floors=tuple(float(c) for c in d["floors"]),
            clip=None if d.get("clip") is None else tuple(d["clip"]),
        )


def _tril(K: int):
    return np.tril_indices(K, -1)


def corr_chol_from_free(m: jnp.ndarray, K: int) -> jnp.ndarray:
    """Rows of a unit-diagonal lower-triangular matrix with free entries ``m``, normalized."""
    M = jnp.eye(K)
    if K > 1:
        M = M.at[_tril(K)].set(m)
    return M / jnp.linalg.norm(M, axis=1, keepdims=True)


def unpack(theta: jnp.ndarray, spec: ModelSpec) -> dict:
    """Unconstrained vector → constrained parameter dict (differentiable)."""
    K, J, p = spec.K, spec.J, spec.p
    free, anchors = np.array(spec.free_index, dtype=int), np.array(spec.anchor_index, dtype=int)
    i = 0
    B = theta[i : i + p * K].reshape(p, K); i += p * K
    lam_free = theta[i : i + K * len(free)].reshape(len(free), K).T; i += K * len(free)
    log_anchor = theta[i : i + K]; i += K
    intercepts = theta[i : i + J]; i += J
    log_precision = theta[i : i + J]; i += J
    m = theta[i : i + K * (K - 1) // 2]
    loadings = jnp.zeros((K, J))
    if len(free):
        loadings = loadings.at[:, free].set(lam_free)
    loadings = loadings.at[jnp.arange(K), anchors].set(jnp.exp(log_anchor))
    return {
        "B": B,
        "loadings": loadings,
        "intercepts": intercepts,
        "log_precision": log_precision,
        "corr_chol": corr_chol_from_free(m, K),
    }


def pack(params: dict, spec: ModelSpec) -> np.ndarray:
    """Constrained parameter dict → unconstrained vector (inverse of :func:`unpack`)."""
    K = spec.K
    free, anchors = list(spec.free_index), list(spec.anchor_index)
    L = np.asarray(params["corr_chol"], float)
    lam = np.asarray(params["loadings"], float)
    anchor_vals = lam[np.arange(K), anchors]
    if np.any(anchor_vals <= 0):
        raise ValueError("anchor loadings must be positive")
    m = (L / np.diag(L)[:, None])[_tril(K)] if K > 1 else np.zeros(0)
    return np.concatenate(
        [
            np.asarray(params["B"], float).ravel(),
            lam[:, free].T.ravel(),
            np.log(anchor_vals),
            np.asarray(params["intercepts"], float),
            np.asarray(params["log_precision"], float),
            m,
        ]
    )


def parameter_names(spec: ModelSpec) -> list[str]:
    """Names of the free parameters, in the order of the unconstrained vector's blocks."""
    from latentscale.model.covariates import COVARIATES

    sk, bm = spec.skills, spec.benchmarks
    names = [f"B[{c},{s}]" for c in COVARIATES for s in sk]
    names += [f"loading[{s},{bm[j]}]" for j in spec.free_index for s in sk]
    names += [f"loading[{s},{bm[j]}]" for s, j in zip(sk, spec.anchor_index)]
    names += [f"intercept[{b}]" for b in bm]
    names += [f"precision[{b}]" for b in bm]
    names += [f"corr[{sk[a]},{sk[b]}]" for a, b in zip(*_tril(spec.K))]
    return names


def correlation(params: dict) -> jnp.ndarray:
    L = params["corr_chol"]
    return L @ L.T


#: Box the optimizers keep the unconstrained coordinates in (standardized covariates, so
#: skills are in units of the family-effect SD). Wide enough never to bind at a sensible
#: optimum; a fit that ends on a bound reports it in its diagnostics.
BOUNDS = {
    "B": (-10.0, 10.0),
    "loading": (-10.0, 10.0),
    "log_anchor_loading": (np.log(1e-3), np.log(20.0)),
    "intercept": (-25.0, 25.0),
    "log_precision": (-3.0, 12.0),
    "corr_free": (-20.0, 20.0),
}


def parameter_bounds(spec: ModelSpec) -> list[tuple[float, float]]:
    """(low, high) for every coordinate of the unconstrained vector, in its order."""
    K, J, p = spec.K, spec.J, spec.p
    sizes = [
        ("B", p * K),
        ("loading", K * len(spec.free_index)),
        ("log_anchor_loading", K),
        ("intercept", J),
        ("log_precision", J),
        ("corr_free", K * (K - 1) // 2),
    ]
    return [BOUNDS[name] for name, n in sizes for _ in range(n)]
