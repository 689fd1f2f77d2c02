"""Model parameters: one declaration per block, and everything else derived from the declarations.

A :class:`ParamBlock` declares a block of parameters the way dynamax's ``ParameterProperties``
does: its axes (hence its shape and the names of its entries), the bijector between its
constrained value and the unconstrained coordinates the optimizers see, and the box those
coordinates are kept in. :class:`ParameterLayout` stacks the blocks of a
:class:`~latentscale.model.spec.ModelSpec` into one unconstrained vector θ and derives from the
declarations, in one place: packing and unpacking, parameter names, bounds, the number of free
parameters, the natural-scale parameter vector behind ``FitResult.params`` and the labels of the
labelled covariance and of the parameter table. Adding a block to the model is one declaration
(registered with :func:`register_block`) plus its use in the likelihood.

The core blocks, in the order of θ:

- ``B`` (p, K): effects of the covariates on the skills (identity);
- ``loadings`` (K, J): Λ; the coordinates are the free loadings of the non-anchor benchmarks
  (column by column) and then the logs of the K anchor loadings (anchor k loads only on skill k,
  positively);
- ``intercepts`` (J,): b (identity);
- ``precision`` (J,): φ, the Beta precisions (coordinates log φ);
- ``corr`` (K, K): the lower Cholesky factor of the skill correlation Σ; its K(K−1)/2 coordinates
  are the below-diagonal entries of a unit-diagonal lower-triangular M whose rows, normalized,
  are the rows of the factor (its natural-scale parameters are the correlations).

Each bijector also carries the paper's projection onto its constraints, used by the PSGA
estimator, which works on constrained values as the paper does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, NamedTuple

import numpy as np

from latentscale.errors import InputError
from latentscale.model.spec import ModelSpec

#: Positive floor of the paper's projection (precisions and anchor loadings after a PSGA step).
PROJECTION_FLOOR = 1e-6


def axis_values(spec: ModelSpec, axis: str) -> tuple[str, ...]:
    """The labels along a named axis: ``covariate``, ``skill`` or ``benchmark``."""
    if axis == "covariate":
        return spec.covariate_names
    if axis == "skill":
        return spec.skills
    if axis == "benchmark":
        return spec.benchmarks
    raise AssertionError(f"unknown axis {axis!r}")


def _xp(x):
    """The array module of ``x``: numpy for numpy arrays, else jax.numpy (imported here, so that
    reading a saved fit needs no JAX)."""
    if isinstance(x, np.ndarray):
        return np
    import jax.numpy as jnp

    return jnp


# ---- bijectors ------------------------------------------------------------------------------
class Bijector:
    """Map between a block's constrained value (an array of the block's shape) and its
    unconstrained coordinates (a vector). Methods take the array module ``xp`` of their input
    (numpy or jax.numpy), so the same code serves compiled likelihoods and plain numpy."""

    interval = "linear"  # the scale Wald intervals are formed on: linear, log (positive), logit (in (0, 1))

    def size(self, spec: ModelSpec, shape: tuple[int, ...]) -> int:
        return int(np.prod(shape))

    def forward(self, u, spec: ModelSpec, shape):
        return u.reshape(shape)

    def inverse(self, value, spec: ModelSpec, shape) -> np.ndarray:
        return np.asarray(value, float).reshape(-1)

    def natural(self, u, spec: ModelSpec, shape):
        """The block's parameters on their natural scale, one per coordinate."""
        return self.forward(u, spec, shape).reshape(-1)

    def from_natural(self, values: np.ndarray, spec: ModelSpec, shape):
        """The constrained value from the natural-scale parameters (inverse of :meth:`natural`)."""
        return np.asarray(values, float).reshape(shape)

    def labels(self, spec: ModelSpec, axes: tuple[str, ...]) -> list[tuple[str, str]]:
        """(row, column) of each coordinate (column "" for one-axis blocks)."""
        values = [axis_values(spec, a) for a in axes]
        if len(values) == 1:
            return [(r, "") for r in values[0]]
        return [(r, c) for r in values[0] for c in values[1]]

    def intervals(self, spec: ModelSpec, n: int) -> np.ndarray:
        """The interval scale of each coordinate's natural parameter."""
        return np.full(n, self.interval, dtype=object)

    def project(self, value, spec: ModelSpec, floor: float = PROJECTION_FLOOR):
        """The paper's projection of a constrained value onto the constraints (PSGA)."""
        return value


class Identity(Bijector):
    """No constraint."""


class Exp(Bijector):
    """A positive block: coordinates are the logs."""

    interval = "log"

    def forward(self, u, spec, shape):
        return _xp(u).exp(u).reshape(shape)

    def inverse(self, value, spec, shape):
        v = np.asarray(value, float).reshape(-1)
        if np.any(v <= 0):
            raise InputError("a positive parameter (a precision or an SD) is zero or negative")
        return np.log(v)

    def project(self, value, spec, floor=PROJECTION_FLOOR):
        return _xp(value).maximum(value, floor)


class AnchoredLoadings(Bijector):
    """Λ (K, J) with anchor k loading only on skill k, positively: the coordinates are the free
    loadings of the non-anchor benchmarks (column by column) and the logs of the anchor loadings."""

    @staticmethod
    def _counts(spec):
        return spec.K * len(spec.free_index), spec.K

    def size(self, spec, shape):
        n_free, n_anchor = self._counts(spec)
        return n_free + n_anchor

    @staticmethod
    @lru_cache(maxsize=None)
    def _gather(spec: ModelSpec) -> np.ndarray:
        """Index into [free..., anchors..., 0] of every entry of Λ (row-major)."""
        K, J = spec.K, spec.J
        n_free = K * len(spec.free_index)
        idx = np.full((K, J), n_free + K, dtype=np.int32)  # structural zeros
        for i, j in enumerate(spec.free_index):
            idx[:, j] = i * K + np.arange(K)
        for k, j in enumerate(spec.anchor_index):
            idx[k, j] = n_free + k
        return idx.reshape(-1)

    def forward(self, u, spec, shape):
        xp = _xp(u)
        n_free, _ = self._counts(spec)
        full = xp.concatenate([u[:n_free], xp.exp(u[n_free:]), xp.zeros(1, dtype=u.dtype)])
        return full[self._gather(spec)].reshape(spec.K, spec.J)

    def inverse(self, value, spec, shape):
        lam = np.asarray(value, float)
        anchors = lam[np.arange(spec.K), list(spec.anchor_index)]
        if np.any(anchors <= 0):
            raise InputError("anchor loadings must be positive")
        return np.concatenate([lam[:, list(spec.free_index)].T.reshape(-1), np.log(anchors)])

    def natural(self, u, spec, shape):
        xp = _xp(u)
        n_free, _ = self._counts(spec)
        return xp.concatenate([u[:n_free], xp.exp(u[n_free:])])

    def from_natural(self, values, spec, shape):
        v = np.asarray(values, float)
        n_free, _ = self._counts(spec)
        full = np.concatenate([v, [0.0]])
        return full[self._gather(spec)].reshape(spec.K, spec.J)

    def labels(self, spec, axes):
        sk, bm = spec.skills, spec.benchmarks
        free = [(bm[j], s) for j in spec.free_index for s in sk]
        return free + [(bm[j], s) for s, j in zip(sk, spec.anchor_index)]

    def intervals(self, spec, n):
        n_free, n_anchor = self._counts(spec)
        return np.array(["linear"] * n_free + ["log"] * n_anchor, dtype=object)

    def project(self, value, spec, floor=PROJECTION_FLOOR):
        xp = _xp(value)
        K, J = spec.K, spec.J
        free = np.ones((K, J))
        anchor = np.zeros((K, J))
        for k, j in enumerate(spec.anchor_index):
            free[:, j] = 0.0
            free[k, j] = 1.0
            anchor[k, j] = 1.0
        lam = value * free  # structural zeros reset
        return xp.where(anchor > 0, xp.maximum(lam, floor), lam)


class UnitRowCholesky(Bijector):
    """Lower Cholesky factor L of a correlation matrix (rows of unit length): the coordinates are
    the below-diagonal entries of a unit-diagonal lower-triangular M with L = rows of M normalized;
    the natural-scale parameters are the correlations (L Lᵀ below the diagonal)."""

    def size(self, spec, shape):
        return spec.K * (spec.K - 1) // 2

    @staticmethod
    @lru_cache(maxsize=None)
    def _gather(K: int) -> np.ndarray:
        n = K * (K - 1) // 2
        idx = np.full((K, K), n, dtype=np.int32)  # upper triangle: 0
        idx[np.tril_indices(K, -1)] = np.arange(n)
        idx[np.diag_indices(K)] = n + 1  # diagonal: 1
        return idx.reshape(-1)

    def forward(self, u, spec, shape):
        xp = _xp(u)
        K = spec.K
        full = xp.concatenate([u, xp.zeros(1, dtype=u.dtype), xp.ones(1, dtype=u.dtype)])
        M = full[self._gather(K)].reshape(K, K)
        return M / xp.sqrt(xp.sum(M * M, axis=1, keepdims=True))

    def inverse(self, value, spec, shape):
        """From any factor L of a correlation matrix (even with negative diagonal entries, as a
        PSGA iterate can have): the Cholesky factor of L Lᵀ renormalized to unit diagonal."""
        K = spec.K
        L = np.asarray(value, float)
        if K == 1:
            return np.zeros(0)
        S = L @ L.T
        S = 0.5 * (S + S.T)
        d = np.sqrt(np.clip(np.diag(S), 1e-300, None))
        S = S / np.outer(d, d)
        try:
            C = np.linalg.cholesky(S)
        except np.linalg.LinAlgError:
            C = np.linalg.cholesky(S + 1e-10 * np.eye(K))
            C = C / np.linalg.norm(C, axis=1, keepdims=True)
        return (C / np.diag(C)[:, None])[np.tril_indices(K, -1)]

    def natural(self, u, spec, shape):
        L = self.forward(u, spec, shape)
        return (L @ L.T)[np.tril_indices(spec.K, -1)]

    def from_natural(self, values, spec, shape):
        K = spec.K
        R = np.eye(K)
        R[np.tril_indices(K, -1)] = np.asarray(values, float)
        R = R + np.tril(R, -1).T
        try:
            return np.linalg.cholesky(R)
        except np.linalg.LinAlgError:
            raise InputError("the skill correlations do not form a positive definite matrix") from None

    def labels(self, spec, axes):
        sk = spec.skills
        return [(sk[a], sk[b]) for a, b in zip(*np.tril_indices(spec.K, -1))]

    def project(self, value, spec, floor=PROJECTION_FLOOR):
        xp = _xp(value)
        L = xp.tril(value)
        return L / xp.maximum(xp.sqrt(xp.sum(L * L, axis=1, keepdims=True)), 1e-300)


class Logistic(Bijector):
    """A block in (0, 1): coordinates are the logits."""

    interval = "logit"

    def forward(self, u, spec, shape):
        xp = _xp(u)
        return (1.0 / (1.0 + xp.exp(-u))).reshape(shape)

    def inverse(self, value, spec, shape):
        v = np.asarray(value, float).reshape(-1)
        if np.any((v <= 0) | (v >= 1)):
            raise InputError("a share (a ceiling share) must lie strictly between 0 and 1")
        return np.log(v / (1.0 - v))

    def project(self, value, spec, floor=PROJECTION_FLOOR):
        return _xp(value).clip(value, floor, 1.0 - floor)


IDENTITY = Identity()


# ---- blocks ---------------------------------------------------------------------------------
class Derived(NamedTuple):
    """A reported quantity computed from the parameters (not a parameter itself)."""

    label: str
    rows: list[tuple[str, str]]
    values: Any  # 1-D, differentiable in θ
    interval: np.ndarray  # the scale of each value's Wald interval (linear, log, logit)


@dataclass(frozen=True)
class ParamBlock:
    """Declaration of one block of parameters.

    name : key of the block in the constrained parameter dict (and in the registry).
    label : prefix of its parameter names (``label[row,column]``) and its block in tables.
    axes : named axes of the constrained value (``covariate``, ``skill``, ``benchmark``).
    bijector : constrained value ↔ unconstrained coordinates (:class:`Bijector`).
    bounds : (low, high) of every coordinate, or a function of the spec giving (low, high) arrays.
    derived : optional function (constrained value, spec, scaler) → list of :class:`Derived`
        quantities reported next to the block (e.g. B on the raw log scale).
    """

    name: str
    label: str
    axes: tuple[str, ...]
    bijector: Bijector = IDENTITY
    bounds: tuple[float, float] | Callable[[ModelSpec], tuple[np.ndarray, np.ndarray]] = (-np.inf, np.inf)
    derived: Callable | None = None
    doc: str = ""

    def shape(self, spec: ModelSpec) -> tuple[int, ...]:
        return tuple(len(axis_values(spec, a)) for a in self.axes)

    def size(self, spec: ModelSpec) -> int:
        return self.bijector.size(spec, self.shape(spec))

    def box(self, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
        n = self.size(spec)
        if callable(self.bounds):
            lo, hi = self.bounds(spec)
            return np.asarray(lo, float), np.asarray(hi, float)
        return np.full(n, float(self.bounds[0])), np.full(n, float(self.bounds[1]))


def _raw_B(B, spec, scaler):
    """B on the raw log scale and the per-skill offset (θ = B_rawᵀ x_raw + offset)."""
    B_raw, offset = scaler.to_raw(B)
    cov, sk = spec.covariate_names, spec.skills
    return [
        Derived("B_raw", [(c, s) for c in cov for s in sk], B_raw.reshape(-1), np.full(len(cov) * len(sk), "linear")),
        Derived("offset", [("offset", s) for s in sk], offset, np.full(len(sk), "linear")),
    ]


def _loading_bounds(spec):
    n_free = spec.K * len(spec.free_index)
    lo = np.r_[np.full(n_free, -10.0), np.full(spec.K, np.log(1e-3))]
    hi = np.r_[np.full(n_free, 10.0), np.full(spec.K, np.log(20.0))]
    return lo, hi


#: Registered blocks by name. The boxes are wide enough never to bind at a sensible optimum
#: (covariates are standardized, so skills are in units of the family-effect SD); a fit that ends
#: on one reports it (``FitResult.at_bounds``).
BLOCKS: dict[str, ParamBlock] = {}


def register_block(block: ParamBlock) -> ParamBlock:
    """Make a block available to :class:`~latentscale.model.spec.ModelSpec` (``blocks=...``)."""
    BLOCKS[block.name] = block
    return block


for _block in (
    ParamBlock("B", "B", ("covariate", "skill"), IDENTITY, (-10.0, 10.0), _raw_B,
               "effects of the standardized covariates on the skills"),
    ParamBlock("loadings", "loading", ("skill", "benchmark"), AnchoredLoadings(), _loading_bounds, None,
               "loadings Λ of the benchmarks on the skills"),
    ParamBlock("intercepts", "intercept", ("benchmark",), IDENTITY, (-25.0, 25.0), None,
               "intercepts b of the linear predictors"),
    ParamBlock("precision", "precision", ("benchmark",), Exp(), (-3.0, 12.0), None,
               "Beta precisions φ (coordinates log φ)"),
    ParamBlock("corr", "corr", ("skill", "skill"), UnitRowCholesky(), (-20.0, 20.0), None,
               "Cholesky factor of the skill correlations Σ (coordinates: free entries of M)"),
    ParamBlock("precision_slope", "precision_slope", ("covariate", "benchmark"), IDENTITY, (-5.0, 5.0), None,
               "effects γ of the standardized covariates on log φ (heteroscedastic precision)"),
    ParamBlock("residual_sd", "residual_sd", ("benchmark",), Exp(), (float(np.log(1e-2)), float(np.log(20.0))), None,
               "SDs τ of the family × benchmark residual effects (coordinates log τ)"),
    ParamBlock("slope_sd", "slope_sd", ("benchmark",), Exp(), (float(np.log(1e-2)), float(np.log(20.0))), None,
               "SDs ω of the family × benchmark random slopes in the first covariate (coordinates log ω)"),
    ParamBlock("ceiling", "ceiling", ("benchmark",), Logistic(), (-3.0, 8.0), None,
               "ceiling shares κ: the expected score is c + (1 − c)·κ·sigmoid(η) (coordinates logit κ)"),
    ParamBlock("link_power", "link_power", ("benchmark",), Exp(), (float(np.log(0.5)), float(np.log(10.0))), None,
               "link powers γ: the expected score is c + (1 − c)·κ·sigmoid(η + log γ)^γ (coordinates log γ)"),
):
    register_block(_block)

CORE_BLOCKS = ("B", "loadings", "intercepts", "precision", "corr")


def default_block_names(spec: ModelSpec) -> tuple[str, ...]:
    """The blocks the spec's options call for: the core ones, ``precision_slope`` with
    ``hetero_precision``, ``residual_sd`` with ``residual``, ``slope_sd`` with ``residual_slope``,
    ``ceiling`` with ``ceiling`` and ``link_power`` with ``link_power``."""
    return (CORE_BLOCKS + (("precision_slope",) if spec.hetero_precision else ())
            + (("residual_sd",) if spec.residual else ()) + (("slope_sd",) if spec.residual_slope else ())
            + (("ceiling",) if spec.ceiling else ()) + (("link_power",) if spec.link_power else ()))


# ---- the layout -----------------------------------------------------------------------------
class ParameterLayout:
    """The unconstrained vector θ of a spec: the blocks stacked in order (see the module docstring)."""

    def __init__(self, spec: ModelSpec, blocks: tuple[ParamBlock, ...] | None = None):
        if blocks is None:
            unknown = [b for b in spec.block_names if b not in BLOCKS]
            if unknown:
                raise InputError(f"parameter block(s) {unknown} are not registered; known: {', '.join(BLOCKS)}")
            blocks = tuple(BLOCKS[b] for b in spec.block_names)
        self.spec = spec
        self.blocks = tuple(blocks)
        self.slices: dict[str, slice] = {}
        start = 0
        names, labels, lo, hi, interval = [], [], [], [], []
        for b in self.blocks:
            n = b.size(spec)
            self.slices[b.name] = slice(start, start + n)
            start += n
            rows = b.bijector.labels(spec, b.axes)
            if len(rows) != n:
                raise AssertionError(f"block {b.name!r}: {len(rows)} labels for {n} coordinates")
            labels += [(b.label, r, c) for r, c in rows]
            names += [f"{b.label}[{r},{c}]" if c else f"{b.label}[{r}]" for r, c in rows]
            low, high = b.box(spec)
            lo.append(low)
            hi.append(high)
            interval.append(b.bijector.intervals(spec, n))
        self.size = start
        self.names: list[str] = names
        self.labels: list[tuple[str, str, str]] = labels
        self.lower = np.concatenate(lo) if lo else np.zeros(0)
        self.upper = np.concatenate(hi) if hi else np.zeros(0)
        self.interval = np.concatenate(interval) if interval else np.zeros(0, dtype=object)

    @property
    def bounds(self) -> list[tuple[float, float]]:
        return list(zip(self.lower.tolist(), self.upper.tolist()))

    def block(self, name: str) -> ParamBlock:
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(name)

    def unpack(self, theta) -> dict:
        """θ → constrained parameter dict (differentiable; numpy in, numpy out)."""
        spec = self.spec
        return {b.name: b.bijector.forward(theta[self.slices[b.name]], spec, b.shape(spec)) for b in self.blocks}

    def unpack_many(self, thetas: np.ndarray, blocks: tuple[str, ...] | None = None) -> dict:
        """Constrained values of many parameter vectors (S, P) in numpy, stacked: {name: (S, ...)}."""
        thetas = np.atleast_2d(np.asarray(thetas, float))
        spec = self.spec
        out = {}
        for b in self.blocks:
            if blocks is not None and b.name not in blocks:
                continue
            sl, shape = self.slices[b.name], b.shape(spec)
            out[b.name] = np.stack([b.bijector.forward(t[sl], spec, shape) for t in thetas])
        return out

    def pack(self, params: dict) -> np.ndarray:
        """Constrained parameter dict → θ (inverse of :meth:`unpack`)."""
        spec = self.spec
        missing = [b.name for b in self.blocks if b.name not in params]
        if missing:
            raise InputError(f"parameters lack block(s) {missing}; this model has {[b.name for b in self.blocks]}")
        return np.concatenate([b.bijector.inverse(params[b.name], spec, b.shape(spec)) for b in self.blocks])

    def natural(self, theta):
        """The parameters on their natural scale, one per coordinate of θ (names :attr:`names`)."""
        xp = _xp(theta)
        spec = self.spec
        parts = [b.bijector.natural(theta[self.slices[b.name]], spec, b.shape(spec)) for b in self.blocks]
        return xp.concatenate(parts) if parts else xp.zeros(0)

    def from_natural(self, values) -> np.ndarray:
        """θ from the natural-scale parameters (a Series indexed by :attr:`names`, or a vector in
        their order): the inverse of :meth:`natural`."""
        if hasattr(values, "index") and hasattr(values, "reindex"):
            missing = [n for n in self.names if n not in values.index]
            if missing:
                raise InputError(f"parameters missing: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
            values = values.reindex(self.names).to_numpy(dtype=float)
        values = np.asarray(values, float)
        if values.shape != (self.size,):
            raise InputError(f"expected {self.size} parameters, got shape {values.shape}")
        spec = self.spec
        params = {b.name: b.bijector.from_natural(values[self.slices[b.name]], spec, b.shape(spec))
                  for b in self.blocks}
        return self.pack(params)

    def reported(self, theta, scaler):
        """Every reported quantity as one vector (natural parameters, each block followed by its
        derived quantities) and its labels (block, row, column, interval scale, parameter name or "")."""
        xp = _xp(theta)
        spec = self.spec
        values, rows = [], []
        for b in self.blocks:
            sl = self.slices[b.name]
            u = theta[sl]
            values.append(b.bijector.natural(u, spec, b.shape(spec)))
            for (lab, r, c), name, scale in zip(self.labels[sl], self.names[sl], self.interval[sl]):
                rows.append((lab, r, c, str(scale), name))
            if b.derived is not None:
                for d in b.derived(b.bijector.forward(u, spec, b.shape(spec)), spec, scaler):
                    values.append(d.values)
                    rows += [(d.label, r, c, str(v), "") for (r, c), v in zip(d.rows, d.interval)]
        return xp.concatenate(values), rows

    def project(self, params: dict, floor: float = PROJECTION_FLOOR) -> dict:
        """The paper's projection of constrained parameters onto the constraints (PSGA)."""
        return {b.name: b.bijector.project(params[b.name], self.spec, floor) for b in self.blocks}

    def index(self, name: str) -> int:
        return self.names.index(name)


@lru_cache(maxsize=256)
def layout(spec: ModelSpec) -> ParameterLayout:
    """The parameter layout of a spec (cached: specs are hashable)."""
    return ParameterLayout(spec)


def unpack(theta, spec: ModelSpec) -> dict:
    """θ → constrained parameter dict (see :meth:`ParameterLayout.unpack`)."""
    return layout(spec).unpack(theta)


def pack(params: dict, spec: ModelSpec) -> np.ndarray:
    """Constrained parameter dict → θ (see :meth:`ParameterLayout.pack`)."""
    return layout(spec).pack(params)


def parameter_names(spec: ModelSpec) -> list[str]:
    return list(layout(spec).names)


def parameter_bounds(spec: ModelSpec) -> list[tuple[float, float]]:
    return layout(spec).bounds
