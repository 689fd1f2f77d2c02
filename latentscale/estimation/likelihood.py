"""The marginal log-likelihood of a design: the one object every estimator, check and user calls.

:class:`MarginalLikelihood` computes ℓ(θ) = Σ_f log ∫ p(y_f | α) N(α; 0, Σ) dα by the adaptive rule
of a :class:`~latentscale.estimation.quadrature.QuadratureSpec`, with the names statsmodels uses:
:meth:`~MarginalLikelihood.loglike`, :meth:`~MarginalLikelihood.loglikeobs` (per family),
:meth:`~MarginalLikelihood.score`, :meth:`~MarginalLikelihood.score_obs` (per family) and
:meth:`~MarginalLikelihood.hessian`. Parameters are the unconstrained vector θ of the model's
:class:`~latentscale.model.params.ParameterLayout` (``FitResult.theta``), a fit, a constrained
parameter dict, or the natural-scale ``FitResult.params`` Series; derivatives are with respect to θ.

Compiled once per (spec, data shape, rule): data arrays and nodes are arguments, never constants
baked into the trace, and designs are padded to a few sizes per octave, so refits on data of
similar shape (folds, restarts, bootstrap) reuse the compiled code. Large designs are cut into
chunks of whole families, padded to one common shape, evaluated one after the other and summed:
memory is bounded by the chunk and grows linearly with the number of observed scores. Each chunk
warm-starts its mode search from the modes of its last evaluation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from latentscale.config import (
    device_array, evaluation_threads, float64, opt_in_cache, quick_jit, release_compiled_if_crowded, thread_map,
)
from latentscale.errors import InputError
from latentscale.estimation.adaptive import converge_modes, family_loglik, adaptive_terms, posterior_weights
from latentscale.estimation.optimize import difference_steps
from latentscale.estimation.quadrature import QuadratureRule, QuadratureSpec
from latentscale.estimation.residual import residual_terms
from latentscale.model.design import Design
from latentscale.model.observation import eta_bound
from latentscale.model.params import layout
from latentscale.model.spec import ModelSpec

#: Default bound on observed scores × quadrature nodes per chunk (memory per chunk ~ 1–2 GB at most).
CHUNK_CELLS = 1 << 22
#: Parameter directions per forward pass of the exact Hessian (about; P is split evenly).
HESSIAN_BATCH = 26
#: At most this many observed scores per compiled call of the exact Hessian. On the XLA CPU runtime
#: of jaxlib 0.10.2 a call of its forward-over-reverse program over about 1,600 scores or more never
#: completes (every thread waits; with 1 node or 49 alike), while 800 run
#: (``benchmarks/hessian_hang.py``); the large fits' Hessians hung there.
HESSIAN_MAX_SCORES = 640


def direction_batch(n_params: int, target: int = HESSIAN_BATCH) -> int:
    """Directions per pass of the exact Hessian: P split into passes of at most ``target``,
    evenly (78 → 3 × 26; 89 → 4 × 23, padded to 92)."""
    passes = max(1, -(-n_params // target))
    return -(-n_params // passes)


# ---- compiled programs ----------------------------------------------------------------------
@partial(jax.jit, static_argnames=("spec", "n_families"))
def _modes(theta, arrays, alpha0, spec, n_families):
    params = layout(spec).unpack(theta)
    return converge_modes(params, arrays, arrays["floors"], alpha0, n_families, spec.J, eta_bound(spec.logit_clip))


def _total(theta, arrays, nodes, log_weights, signs, alpha_hat, spec, n_families, exact_second=False):
    params = layout(spec).unpack(theta)
    per = family_loglik(params, arrays, arrays["floors"], nodes, log_weights, signs, alpha_hat, n_families, spec.J,
                        eta_bound(spec.logit_clip), exact_second)
    return jnp.sum(per), per


# One compiled executable gives ℓ, the per-family values (aux) and the gradient ...
_value_and_grad = jax.jit(jax.value_and_grad(_total, has_aux=True), static_argnames=("spec", "n_families"))
# ... and a smaller one the values alone (loglike / loglikeobs without a gradient).
_value = jax.jit(_total, static_argnames=("spec", "n_families"))
# The same two, compiled quickly (config.quick_jit): for a multi-node rule over a design of one chunk,
# which a fit evaluates some ten times, so that its compilation outweighs its run time.
_value_and_grad_quick = quick_jit(jax.value_and_grad(_total, has_aux=True), static_argnames=("spec", "n_families"))
_value_quick = quick_jit(_total, static_argnames=("spec", "n_families"))


@partial(jax.jit, static_argnames=("spec", "n_families", "batch"))
def _hessian_and_scores(theta, arrays, nodes, log_weights, signs, alpha_hat, spec, n_families, batch):
    """Exact Hessian of ℓ (P, P) and per-family scores (F, P), by forward-mode derivatives of the
    reverse-mode gradient, ``batch`` directions at a time (two differentiated Newton steps from the
    converged modes keep the mode's second derivatives exact)."""

    def grad_and_per(th):
        g, per = jax.grad(lambda t: _total(t, arrays, nodes, log_weights, signs, alpha_hat, spec, n_families,
                                           exact_second=True), has_aux=True)(th)
        return g, per

    def directional(v):
        return jax.jvp(grad_and_per, (theta,), (v,))[1]

    P = theta.size
    n_dir = -(-P // batch) * batch  # padded with zero directions to whole batches: one vmapped body
    dirs = jnp.concatenate([jnp.eye(P, dtype=theta.dtype), jnp.zeros((n_dir - P, P), dtype=theta.dtype)])
    H, S = jax.lax.map(directional, dirs, batch_size=batch)
    H = H[:P]
    return (H + H.T) / 2.0, S[:P].T


@partial(jax.jit, static_argnames=("spec", "n_families"))
def _posterior_nodes(theta, arrays, nodes, log_weights, signs, alpha0, spec, n_families):
    """The modes (searched from ``alpha0``), the rule's nodes and their posterior weights: one
    program (a fresh process traces, lowers and loads it once)."""
    params = layout(spec).unpack(theta)
    bound = eta_bound(spec.logit_clip)
    alpha_hat = converge_modes(params, arrays, arrays["floors"], alpha0, n_families, spec.J, bound)
    alpha, alpha_q, terms, _ = adaptive_terms(params, arrays, arrays["floors"], nodes, log_weights, alpha_hat,
                                              n_families, spec.J, bound)
    return alpha, alpha_q, posterior_weights(terms, signs)


@partial(jax.jit, static_argnames=("spec", "n_families"))
def _residual_nodes(theta, arrays, nodes, log_weights, x_hat, spec, n_families):
    params = layout(spec).unpack(theta)
    out = residual_terms(params, arrays, arrays["floors"], nodes, log_weights, x_hat, n_families, spec.J,
                         eta_bound(spec.logit_clip))
    r_qr, inner = out[4], out[5]
    return r_qr, jax.nn.softmax(inner, axis=-1)


# ---- chunks ---------------------------------------------------------------------------------
def family_chunks(design: Design, max_obs: int, pad: bool | tuple[int, int, int] = True) -> list[tuple[Design, int]]:
    """Cut a design into chunks of consecutive whole families with at most ``max_obs`` observed
    scores each (a larger family gets a chunk of its own), all padded to one shape. Returns
    (padded chunk, number of its real families) pairs; one chunk if all fit, padded to the next
    bucket size when ``pad`` is True, or to ``pad`` = (scores, models, families) when it is a shape
    that holds the design (designs of one data set's folds then share one compiled shape)."""
    if design.n_obs <= max_obs:
        if isinstance(pad, tuple):
            N, M, F = pad
            if N >= design.n_obs and M >= design.n_models and F >= design.n_families:
                return [(design.padded(N, M, F), design.n_families)]
        return [(design.padded() if pad else design, design.n_families)]
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
class _Chunk:
    arrays: dict
    n_families: int  # padded
    n_real: int
    modes: jnp.ndarray  # warm start of the next mode search


@dataclass
class MarginalLikelihood:
    """ℓ(θ) of one design by adaptive quadrature (module docstring).

    spec : the model. design : the long-form data (:func:`~latentscale.model.design.build_design`).
    quadrature : a :class:`QuadratureSpec` (default: the default rule for K), a dict or grid name,
        or a :class:`QuadratureRule` to use as it is.
    chunk_cells : bound on observed scores × nodes per compiled call.
    pad : pad the design to one of a few sizes per octave (compiled code reused across designs), or
        to a given shape (scores, models, families) that holds it; False: no padding.
    """

    spec: ModelSpec
    design: Design
    quadrature: QuadratureSpec | QuadratureRule | dict | str | None = None
    chunk_cells: int = CHUNK_CELLS
    pad: bool | tuple[int, int, int] = True
    rule: QuadratureRule = field(init=False)
    _chunks: list = field(init=False, repr=False)
    # The last evaluation (θ, per-family values, gradient or None, ℓ): asking again at the same θ
    # costs nothing, and the stored modes are then the ones converged at θ.
    _last: tuple | None = field(init=False, repr=False, default=None)

    @float64
    def __post_init__(self):
        opt_in_cache()
        release_compiled_if_crowded()
        if isinstance(self.quadrature, QuadratureRule):
            self.rule = self.quadrature
        else:
            self.quadrature = QuadratureSpec.coerce(self.quadrature)
            self.rule = self.quadrature.rule(self.spec.K)
        self.layout = layout(self.spec)
        self._nodes = device_array(self.rule.nodes)
        self._log_w = device_array(self.rule.log_weights)
        self._signs = None if self.rule.signs is None else device_array(self.rule.signs)
        self._static = self.spec.structure  # compiled code is keyed on the structure, not the names
        self._shared = {"floors": device_array(self.spec.floors)}  # arrays every chunk passes with its data
        if self.spec.residual:  # the nested rule of the family × benchmark residuals
            m = self.spec.residual_terms
            inner = (self.quadrature.inner_rule(m) if isinstance(self.quadrature, QuadratureSpec)
                     else QuadratureSpec().inner_rule(m))
            self._shared.update(inner_nodes=device_array(inner.nodes), inner_log_weights=device_array(inner.log_weights))
        max_obs = max(1, self.chunk_cells // self.cells_per_score)
        self._chunks = [_Chunk({**c.arrays(), **self._shared}, c.n_families, n,
                               device_array(np.zeros((c.n_families, self.spec.n_effects))))
                        for c, n in family_chunks(self.design, max_obs, self.pad)]
        # Quick compilation for a multi-node rule over one chunk, unless the shape is fixed for reuse (pad given
        # as a shape: cross-validation's folds share the program, so its run time counts more than its compilation).
        quick = self.rule.size > 1 and len(self._chunks) == 1 and not isinstance(self.pad, tuple)
        self._programs = (_value_and_grad_quick, _value_quick) if quick else (_value_and_grad, _value)

    @property
    def cells_per_score(self) -> int:
        """Likelihood evaluations per observed score (nodes, × inner nodes with residuals)."""
        inner = self._shared["inner_nodes"].shape[0] if "inner_nodes" in self._shared else 1
        return self.rule.size * inner

    # ---- sizes and names -----------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return self.layout.size

    @property
    def param_names(self) -> list[str]:
        return list(self.layout.names)

    @property
    def n_families(self) -> int:
        return self.design.n_families

    @property
    def families(self) -> tuple[str, ...]:
        return self.design.families

    @property
    def n_chunks(self) -> int:
        return len(self._chunks)

    def reset(self) -> None:
        """Forget the warm-start modes (the next mode search starts from 0)."""
        self._last = None
        for c in self._chunks:
            c.modes = device_array(np.zeros(c.modes.shape))

    def fork(self) -> "MarginalLikelihood":
        """A twin sharing the data, rule and compiled programs, with its own warm-start modes and
        last evaluation (a copy of this one's): evaluations in another thread."""
        twin = copy.copy(self)
        twin._chunks = [replace(c) for c in self._chunks]
        return twin

    def warm_modes(self) -> list:
        """The modes the next evaluation's mode search starts from (one array per chunk)."""
        return [c.modes for c in self._chunks]

    def set_warm_modes(self, modes: list) -> None:
        """Start the next mode search from ``modes`` (as from :meth:`warm_modes`)."""
        self._last = None
        for c, m in zip(self._chunks, modes):
            c.modes = m

    # ---- parameters ----------------------------------------------------------------------
    def theta(self, params) -> np.ndarray:
        """The unconstrained vector θ of ``params``: θ itself, a fit (same model), a constrained
        parameter dict, or a natural-scale Series (``FitResult.params``)."""
        from latentscale.results.fit_result import FitResult

        if isinstance(params, FitResult):
            if params.spec != self.spec:
                raise InputError("the fit's model (benchmarks, anchors, options) differs from this likelihood's")
            return np.asarray(params.theta, float)
        if isinstance(params, dict):
            return self.layout.pack(params)
        if hasattr(params, "index") and hasattr(params, "to_numpy"):  # a pandas Series of natural parameters
            return self.layout.from_natural(params)
        theta = np.asarray(params, dtype=float)
        if theta.shape != (self.n_params,):
            raise InputError(f"expected {self.n_params} unconstrained parameters (θ, as in FitResult.theta), "
                             f"got shape {theta.shape}")
        return theta

    # ---- evaluation ------------------------------------------------------------------------
    def _cached(self, key: np.ndarray, need_grad: bool):
        last = self._last
        if last is None or (need_grad and last[2] is None) or not np.array_equal(last[0], key):
            return None
        return last

    @float64
    def _evaluate(self, key: np.ndarray, need_grad: bool = True):
        hit = self._cached(key, need_grad=need_grad)
        if hit is not None:
            return hit
        theta = jnp.asarray(key)
        value, grad, per_all = 0.0, np.zeros(key.size), []
        for c in self._chunks:
            modes = _modes(theta, c.arrays, c.modes, self._static, c.n_families)
            args = (theta, c.arrays, self._nodes, self._log_w, self._signs, modes, self._static, c.n_families)
            if need_grad:
                (v, per), g = self._programs[0](*args)
                g = np.asarray(g)
                grad += g
            else:
                v, per = self._programs[1](*args)
            per = np.asarray(per)[: c.n_real]
            if np.isfinite(per).all():  # finite values mean finite modes: keep them for the warm start
                c.modes = modes
            value += float(v)
            per_all.append(per)
        per = np.concatenate(per_all)
        pen, pen_grad = self.log_penalty(key)
        if pen_grad is not None:  # penalized likelihood: the objective every stage maximizes
            value += pen
            if need_grad:
                grad += pen_grad
        self._last = (key, per, grad if need_grad else None, value)
        return self._last

    def log_penalty(self, theta) -> tuple[float, np.ndarray | None]:
        """The log penalty at θ and its gradient ((0, None) without one): with ``spec.power_prior`` = s,
        −Σ_j (log γ_j)² / (2s²), a normal prior on the link powers' logs (their coordinates in θ). The
        values of :meth:`loglike` and the rest include it; the per-family values do not."""
        s = self.spec.power_prior
        if not s:
            return 0.0, None
        theta = np.asarray(theta, dtype=float)
        sl = self.layout.slices["link_power"]
        grad = np.zeros(theta.size)
        grad[sl] = -theta[sl] / s**2
        return float(-0.5 * np.sum(np.square(theta[sl] / s))), grad

    def penalty_hessian(self) -> np.ndarray | None:
        """The (constant, diagonal) Hessian of :meth:`log_penalty` in θ, or None without a penalty."""
        s = self.spec.power_prior
        if not s:
            return None
        H = np.zeros((self.layout.size, self.layout.size))
        idx = np.arange(self.layout.size)[self.layout.slices["link_power"]]
        H[idx, idx] = -1.0 / s**2
        return H

    def loglike_and_score(self, params) -> tuple[float, np.ndarray]:
        """ℓ and its gradient in θ (one compiled call per chunk)."""
        _, _, grad, value = self._evaluate(np.array(self.theta(params), dtype=float))
        return value, grad.copy()

    def loglike(self, params) -> float:
        """The marginal log-likelihood ℓ (no gradient computed unless it is at hand)."""
        return self._evaluate(np.array(self.theta(params), dtype=float), need_grad=False)[3]

    def score(self, params) -> np.ndarray:
        """The gradient of ℓ in θ."""
        return self.loglike_and_score(params)[1]

    def loglikeobs(self, params) -> np.ndarray:
        """The log marginal likelihood of each family (F,), in the order of :attr:`families`."""
        return self._evaluate(np.array(self.theta(params), dtype=float), need_grad=False)[1].copy()

    def value_grad_families(self, theta) -> tuple[float, np.ndarray, np.ndarray]:
        """ℓ, its gradient and the per-family values at θ."""
        _, per, grad, value = self._evaluate(np.array(theta, dtype=float))
        return value, grad.copy(), per.copy()

    def modes(self, params) -> np.ndarray:
        """Every family's posterior mode (F, K), converged at ``params`` (with residuals: the α
        part of the joint mode, see :meth:`joint_modes`)."""
        return self.joint_modes(params)[:, : self.spec.K]

    def joint_modes(self, params) -> np.ndarray:
        """Every family's joint posterior mode of all its random effects (F, ``spec.n_effects``):
        α, then the J residuals u_fj with ``residual`` (then the J slopes v_fj with ``residual_slope``)."""
        self._evaluate(np.array(self.theta(params), dtype=float), need_grad=False)
        return np.concatenate([np.asarray(c.modes)[: c.n_real] for c in self._chunks])

    # ---- second derivatives ----------------------------------------------------------------
    def hessian_and_scores(self, params, method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """The Hessian of ℓ in θ (P, P) and the per-family scores (F, P).

        ``"fd"``: central differences of the exact gradient (2P gradient calls, nothing more to
        compile); ``"exact"``: automatic differentiation, forward over reverse (one call per chunk,
        after a longer compilation); ``"auto"``: exact beyond 2,000 families, where 2P gradient
        calls cost more than that compilation.
        """
        theta = self.theta(params)
        if method == "auto":
            method = "exact" if self.n_families > 2000 else "fd"
        if method == "fd":
            # The differences start from modes converged at θ (fd_hessian evaluates θ first) from a
            # fixed start, so the result does not depend on what was evaluated before (the modes are
            # converged to ~1e-7, which the differences amplify to ~1e-5 relative).
            self.reset()
            return fd_hessian(self, theta, with_scores=True)
        if method != "exact":
            raise InputError(f"method must be 'fd', 'exact' or 'auto', got {method!r}")
        return self._exact_hessian_and_scores(theta)

    def hessian(self, params, method: str = "auto") -> np.ndarray:
        return self.hessian_and_scores(params, method)[0]

    def start_curvature(self, params) -> np.ndarray:
        """A cheap Hessian of ℓ for starting quasi-Newton steps: forward differences of the exact
        gradient (P gradient calls, half of ``"fd"``'s), symmetrized; its O(h) error (~1e-4
        relative) matters for a starting metric, not for standard errors."""
        theta = self.theta(params)
        self.reset()
        return fd_hessian(self, theta, central=False)

    def score_obs(self, params, method: str = "auto") -> np.ndarray:
        """Per-family gradients of ℓ_f in θ (F, P)."""
        return self.hessian_and_scores(params, method)[1]

    @float64
    def _exact_hessian_and_scores(self, theta: np.ndarray, batch: int | None = None):
        """The design is cut for the exact Hessian into chunks of whole families with at most
        ``chunk_cells`` scores × nodes × directions (and :data:`HESSIAN_MAX_SCORES` scores) each, so
        that each chunk's likelihood and reverse pass are computed once per batch of directions."""
        P = theta.size
        batch = int(batch or direction_batch(P))
        modes = self.joint_modes(theta)
        th = device_array(theta)
        max_obs = max(1, min(HESSIAN_MAX_SCORES, self.chunk_cells // (self.cells_per_score * batch)))
        H, S, start = np.zeros((P, P)), [], 0
        for chunk, n_real in family_chunks(self.design, max_obs, self.pad):
            alpha0 = np.zeros((chunk.n_families, modes.shape[1]))
            alpha0[:n_real] = np.asarray(modes[start:start + n_real])
            alpha0 = device_array(alpha0)
            arrays = {**chunk.arrays(), **self._shared}
            h, s = _hessian_and_scores(th, arrays, self._nodes, self._log_w, self._signs, alpha0, self._static,
                                       chunk.n_families, batch)
            H += np.asarray(h)
            S.append(np.asarray(s)[:n_real])
            start += n_real
        pen = self.penalty_hessian()
        return (H if pen is None else H + pen), np.concatenate(S)

    # ---- posterior ---------------------------------------------------------------------------
    @float64
    def posterior_nodes(self, params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every family's posterior mode (F, K), the rule's nodes α_fq (F, Q, K) and their
        normalized posterior weights (F, Q) at ``params`` (signed for a sparse grid)."""
        th = device_array(self.theta(params))
        out = []
        for c in self._chunks:
            alpha, alpha_q, w = _posterior_nodes(th, c.arrays, self._nodes, self._log_w, self._signs, c.modes,
                                                 self._static, c.n_families)
            out.append(tuple(np.asarray(x)[: c.n_real] for x in (alpha, alpha_q, w)))
        return tuple(np.concatenate([o[i] for o in out]) for i in range(3))

    @float64
    def residual_nodes(self, params) -> tuple[np.ndarray, np.ndarray]:
        """With residuals: the inner nodes r_fqjr (F, Q, J, R, m) of every family (the residual u, and
        the slope v with ``residual_slope``) and their posterior
        weights given the outer node (F, Q, J, R; each (f, q, j) sums to one), at ``params``; with
        :meth:`posterior_nodes` the nested rule's representation of the joint posterior."""
        if not self.spec.residual:
            raise InputError("this model has no family × benchmark residuals")
        th = device_array(self.theta(params))
        out = []
        for c in self._chunks:
            modes = _modes(th, c.arrays, c.modes, self._static, c.n_families)
            u, w = _residual_nodes(th, c.arrays, self._nodes, self._log_w, modes, self._static, c.n_families)
            out.append((np.asarray(u)[: c.n_real], np.asarray(w)[: c.n_real]))
        return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])


def fd_hessian(ml: MarginalLikelihood, theta: np.ndarray, rel_step: float = 1e-4, with_scores: bool = False,
               central: bool = True):
    """Hessian of ℓ by central differences of its exact gradient, symmetrized.

    Steps h_i = ``rel_step`` · max(1, |θ_i|): the truncation error (h²) and the rounding error of
    the gradient (~1e-12/h) are then both far below what standard errors need. With
    ``with_scores`` also returns the (F, P) per-family scores, by central differences of the
    per-family log-likelihoods at the same points (no extra evaluations). ``central=False``:
    forward differences from θ (P + 1 gradient calls instead of 2P; error O(h)).

    Every difference's mode search starts from the modes converged at θ, so the columns are
    independent of each other: they run on :func:`~latentscale.config.evaluation_threads` threads
    (each with a :meth:`~MarginalLikelihood.fork` of ``ml``), with the same result on any number.
    ``ml`` is left as evaluated at θ.
    """
    theta = np.asarray(theta, dtype=float)
    n = theta.size
    h = difference_steps(theta, rel_step)
    if not central and with_scores:
        raise InputError("per-family scores need central differences")
    _, g0, _ = ml.value_grad_families(theta)
    base = ml.warm_modes()

    def columns(block: np.ndarray) -> list:
        twin = ml.fork()
        out = []
        for i in block:
            e = np.zeros(n)
            e[i] = h[i]
            twin.set_warm_modes(base)
            _, g_plus, f_plus = twin.value_grad_families(theta + e)
            if not central:
                out.append(((g_plus - g0) / h[i], None))
                continue
            twin.set_warm_modes(base)
            _, g_minus, f_minus = twin.value_grad_families(theta - e)
            out.append(((g_plus - g_minus) / (2.0 * h[i]), (f_plus - f_minus) / (2.0 * h[i]) if with_scores else None))
        return out

    blocks = np.array_split(np.arange(n), min(n, evaluation_threads()))
    cols = [c for part in thread_map(columns, blocks) for c in part]
    H = np.stack([c[0] for c in cols], axis=1)
    H = (H + H.T) / 2.0
    if not with_scores:
        return H
    return H, np.stack([c[1] for c in cols], axis=1)
