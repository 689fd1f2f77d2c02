"""Quadrature rules for E[g(z)], z ~ N(0, I_K), and the one specification that picks them.

A :class:`QuadratureSpec` is stored on every fit and used alike by the fit, the family
posteriors, prediction and evaluation. Its grids:

- ``"product"``: the product Gauss–Hermite rule with ``points`` nodes per skill (Q = points^K);
- ``"sparse"``: the Smolyak sparse grid from Gauss–Hermite rules with 1, 3, …, 2·level − 1 nodes,
  exact for polynomials of total degree 2·level − 1 (some weights negative);
- ``"laplace"``: one node at the mode (the Laplace approximation);
- ``"auto"`` (default): the product rule with :func:`default_points` per skill up to K = 4, or
  whenever ``points`` is given; the degree-5 sparse grid from K = 5 (71 nodes at K = 5, 161 at
  K = 8, where a product rule with 3 points has 243 and 6,561).

Rules are placed at each family's posterior mode and scaled by the curvature there
(:mod:`latentscale.estimation.adaptive`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import product as iproduct
from math import comb

import numpy as np

from latentscale.errors import InputError

GRIDS = ("auto", "product", "sparse", "laplace")
#: From this K on, the default rule is a sparse grid (the product grid has 3^K nodes or more).
SPARSE_FROM_K = 5


@dataclass(frozen=True)
class QuadratureRule:
    """Nodes z_q (Q, K) and log |weights| of a rule for E[g(z)], z ~ N(0, I_K); ``signs`` of
    the weights (±1) for rules with negative weights (sparse grids), else None."""

    nodes: np.ndarray
    log_weights: np.ndarray
    signs: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.nodes.shape[0])

    @property
    def weights(self) -> np.ndarray:
        w = np.exp(self.log_weights)
        return w if self.signs is None else w * self.signs


def default_points(K: int) -> int:
    """Nodes per dimension of the product rule by default: more in low dimension."""
    return {1: 15, 2: 9, 3: 6, 4: 4}.get(K, 3)


@dataclass(frozen=True)
class QuadratureSpec:
    """Which rule integrates the family effects (module docstring)."""

    grid: str = "auto"
    points: int | None = None
    level: int = 3
    inner_points: int = 7
    slope_points: int = 4

    def __post_init__(self):
        if self.grid not in GRIDS:
            raise InputError(f"unknown quadrature grid {self.grid!r}; choose one of {', '.join(GRIDS)}")
        if self.points is not None:
            if int(self.points) != self.points or self.points < 1:
                raise InputError(f"points must be a positive integer, got {self.points!r}")
            object.__setattr__(self, "points", int(self.points))
            if self.grid in ("sparse", "laplace"):
                raise InputError(f"points sets the product grid; leave it out with grid={self.grid!r}")
        if int(self.level) != self.level or self.level < 1:
            raise InputError(f"level must be a positive integer, got {self.level!r}")
        object.__setattr__(self, "level", int(self.level))
        if int(self.inner_points) != self.inner_points or self.inner_points < 1:
            raise InputError(f"inner_points must be a positive integer, got {self.inner_points!r}")
        object.__setattr__(self, "inner_points", int(self.inner_points))
        if int(self.slope_points) != self.slope_points or self.slope_points < 1:
            raise InputError(f"slope_points must be a positive integer, got {self.slope_points!r}")
        object.__setattr__(self, "slope_points", int(self.slope_points))

    def kind(self, K: int) -> str:
        """``product``, ``sparse`` or ``laplace``: the grid this spec gives at K."""
        if self.grid == "auto":
            return "product" if self.points is not None or K < SPARSE_FROM_K else "sparse"
        return self.grid

    def rule(self, K: int) -> QuadratureRule:
        kind = self.kind(K)
        if kind == "laplace":
            return gauss_hermite_rule(K, 1)
        if kind == "product":
            return gauss_hermite_rule(K, self.points or default_points(K))
        return sparse_rule(K, self.level)

    def inner_rule(self, dims: int = 1) -> QuadratureRule:
        """The rule of each family × benchmark cell's effects, nested in the outer rule: one-dimensional
        with ``inner_points`` nodes for the residual u; with a random slope (``dims=2``) the product
        rule of ``slope_points`` nodes per dimension; one node, the Laplace approximation, when the
        outer rule is the Laplace one."""
        if self.grid == "laplace":
            return gauss_hermite_rule(dims, 1)
        return gauss_hermite_rule(dims, self.inner_points if dims == 1 else self.slope_points)

    def describe(self, K: int, residual: bool | int = False) -> str:
        """One line naming the rule; ``residual``: the effects per family × benchmark cell (1: u; 2: u and
        a slope)."""
        kind, size = self.kind(K), self.rule(K).size
        cells = int(residual)
        if kind == "laplace":
            return "Laplace (1 node)" + ((", in (α, u)" if cells == 1 else ", in (α, u, v)") if cells else "")
        inner = ("" if not cells else f"; {self.inner_points} Gauss-Hermite nodes per family × benchmark residual"
                 if cells == 1 else f"; {self.slope_points}^2 Gauss-Hermite nodes per family × benchmark "
                 "residual and slope")
        if kind == "product":
            q = self.points or default_points(K)
            return f"product Gauss-Hermite, {q}^{K} = {size} nodes{inner}"
        return f"sparse Smolyak grid, degree {2 * self.level - 1}, {size} nodes{inner}"

    def to_dict(self) -> dict:
        return {"grid": self.grid, "points": self.points, "level": self.level, "inner_points": self.inner_points,
                "slope_points": self.slope_points}

    @classmethod
    def from_dict(cls, d: dict | None) -> "QuadratureSpec":
        if not d:
            return cls()
        return cls(grid=d.get("grid", "auto"), points=d.get("points"), level=d.get("level", 3),
                   inner_points=d.get("inner_points", 7), slope_points=d.get("slope_points", 4))

    @classmethod
    def coerce(cls, value) -> "QuadratureSpec":
        """A spec from a spec, a dict, a grid name, or None (the default)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls.from_dict(value)
        if isinstance(value, str):
            return cls(grid=value)
        raise InputError(f"quadrature must be a QuadratureSpec, a dict or a grid name, got {value!r}")


@lru_cache(maxsize=64)
def gauss_hermite_rule(K: int, points: int) -> QuadratureRule:
    """Product Gauss–Hermite rule with ``points`` nodes per dimension (weights normalized)."""
    x, w = np.polynomial.hermite_e.hermegauss(points)
    w = w / w.sum()
    grids = np.meshgrid(*([x] * K), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    logw = np.sum(np.log(np.stack(np.meshgrid(*([w] * K), indexing="ij"), -1).reshape(-1, K)), axis=1)
    return QuadratureRule(nodes=nodes, log_weights=logw)


@lru_cache(maxsize=64)
def sparse_rule(K: int, level: int = 3) -> QuadratureRule:
    """The Smolyak rule of :func:`smolyak_rule` as a :class:`QuadratureRule`."""
    nodes, w = smolyak_rule(K, level)
    return QuadratureRule(nodes=nodes, log_weights=np.log(np.abs(w)), signs=np.sign(w))


def smolyak_rule(K: int, level: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse-grid (Smolyak) rule for E[g(z)], z ~ N(0, I_K), from Gauss–Hermite rules with
    1, 3, 5, … nodes: exact for polynomials of total degree 2·level − 1. Returns nodes (Q, K)
    and weights (Q,), some negative, summing to 1."""
    one_d = []
    for i in range(1, level + 1):
        x, w = np.polynomial.hermite_e.hermegauss(2 * i - 1)
        one_d.append((x, w / w.sum()))
    q = level + K - 1
    acc: dict[tuple, float] = {}
    for idx in iproduct(range(1, level + 1), repeat=K):
        s = sum(idx)
        if not max(K, q - K + 1) <= s <= q:
            continue
        coef = (-1) ** (q - s) * comb(K - 1, q - s)
        grids = [one_d[i - 1] for i in idx]
        for combo in iproduct(*[range(len(g[0])) for g in grids]):
            node = tuple(round(float(grids[d][0][c]), 12) for d, c in enumerate(combo))
            w = coef * float(np.prod([grids[d][1][c] for d, c in enumerate(combo)]))
            acc[node] = acc.get(node, 0.0) + w
    nodes = np.array([n for n, w in acc.items() if abs(w) > 1e-15])
    weights = np.array([w for w in acc.values() if abs(w) > 1e-15])
    return nodes, weights
