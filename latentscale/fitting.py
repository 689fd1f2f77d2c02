"""Public entry point: fit the latent-variable scaling model to a score table."""

from __future__ import annotations

import sys
import time
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from latentscale._jax import release_compiled_if_crowded
from latentscale.data import ScoreData, from_frame, load_dataset
from latentscale.model.design import build_design
from latentscale.model.params import ModelSpec, parameter_bounds
from latentscale.results.fit_result import FitResult

METHODS = ("aghq", "laplace", "psga")


class LatentScalingModel:
    """The latent-variable scaling law of Cai, Cui, Maia Polo et al. (arXiv:2512.06553).

    Options are constructor arguments, data are :meth:`fit` arguments (scikit-learn style);
    :meth:`fit` returns a :class:`~latentscale.results.FitResult`.

    Parameters
    ----------
    k : number of latent skills K.
    anchors : K benchmark names; anchor k loads only on skill k (default: the first K benchmarks).
    method : ``"aghq"`` (default; adaptive Gauss–Hermite marginal likelihood), ``"laplace"``
        (one node per family: fast, less accurate) or ``"psga"`` (the paper's projected
        stochastic gradient ascent, for comparison).
    clip : scores are clipped to [low, high] before the Beta density (None: no clipping, then
        exact 0 or 1 is an error). Default (0.001, 0.999), as in the reference analysis.
    floors : random-guess floors by benchmark, overriding the known ones.
    points : quadrature nodes per skill dimension of the product rule (default by K).
    grid : the quadrature grid of ``aghq``: ``"auto"`` (product Gauss–Hermite up to K = 4,
        or whenever ``points`` is given; the degree-5 Smolyak sparse grid from K = 5),
        ``"product"`` or ``"sparse"`` (49 nodes at K = 4 instead of 256: about five times
        faster on very large data, log-likelihood within a few tenths on the paper data).
    n_starts : number of starting points (the moment-based one and fixed-seed perturbations).
    seed : seed of the perturbed starts (and of the Monte Carlo draws of ``psga``).
    method_options : extra options of the estimator (for ``psga``: steps, draws, ...).
    """

    def __init__(
        self,
        k: int = 4,
        anchors: Sequence[str] | None = None,
        *,
        method: str = "aghq",
        clip: tuple[float, float] | None = (0.001, 0.999),
        floors: dict[str, float] | None = None,
        points: int | None = None,
        grid: str = "auto",
        n_starts: int = 3,
        seed: int = 0,
        method_options: dict | None = None,
    ):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = k
        self.anchors = None if anchors is None else tuple(anchors)
        self.method = method
        self.clip = clip
        self.floors = floors
        if grid not in ("auto", "product", "sparse"):
            raise ValueError(f"unknown grid {grid!r}; choose auto, product or sparse")
        if grid == "sparse" and points is not None:
            raise ValueError("points sets the product grid; leave it out with grid='sparse'")
        self.points = points
        self.grid = grid
        self.n_starts = n_starts
        self.seed = seed
        self.method_options = dict(method_options or {})

    def spec_for(self, data: ScoreData) -> ModelSpec:
        """The model specification for a data set (anchors, floors, clipping)."""
        anchors = self.anchors if self.anchors is not None else tuple(data.benchmarks[: self.k])
        if len(anchors) != self.k:
            raise ValueError(f"k = {self.k} needs {self.k} anchors, got {len(anchors)}: {list(anchors)}")
        if self.k > len(data.benchmarks):
            raise ValueError(f"k = {self.k} exceeds the number of benchmarks ({len(data.benchmarks)})")
        floors = dict(data.floors)
        if self.floors:
            floors.update(self.floors)
        return ModelSpec(
            benchmarks=tuple(data.benchmarks),
            anchors=tuple(anchors),
            floors=tuple(float(floors[b]) for b in data.benchmarks),
            clip=self.clip,
        )

    def fit(self, data: ScoreData | pd.DataFrame | str, progress: Callable[[str], None] | bool | None = None,
            start_params: FitResult | np.ndarray | None = None, **frame_options) -> FitResult:
        """Fit by marginal maximum likelihood. ``data``: a ScoreData, a DataFrame (column
        mapping in ``frame_options``, see :func:`latentscale.data.from_frame`), or a registry
        name or file path. ``start_params``: where the optimizer starts instead of the
        moment-based start (a fit of the same K and benchmarks, or its unconstrained ``theta``);
        the other ``n_starts - 1`` starts perturb it."""
        if progress is True:
            progress = _print_progress
        elif progress is False:
            progress = None
        data = as_score_data(data, **frame_options)
        spec = self.spec_for(data)
        release_compiled_if_crowded()
        t0 = time.perf_counter()
        design, scaler = build_design(data, spec.benchmarks, spec.clip)
        start = _start_vector(start_params, spec, self.method)
        if self.method == "psga":
            from latentscale.estimation.psga import fit_psga

            outcome = fit_psga(design, spec, seed=self.seed, progress=progress, **self.method_options)
        else:
            from latentscale.estimation.mle import fit_mle

            from latentscale.estimation.quadrature import default_points, gauss_hermite_rule, sparse_rule

            points = 1 if self.method == "laplace" else self.points
            rule = None
            if self.method == "aghq" and self.grid == "sparse":
                rule = sparse_rule(self.k)
            elif self.method == "aghq" and self.grid == "product" and points is None:
                rule = gauss_hermite_rule(self.k, default_points(self.k))
            outcome = fit_mle(design, spec, points=points, rule=rule, n_starts=self.n_starts, seed=self.seed,
                              progress=progress, start=start, **self.method_options)
        diagnostics = dict(outcome.diagnostics)
        diagnostics["seconds"] = time.perf_counter() - t0
        diagnostics["start_given"] = start is not None
        return FitResult(
            spec=spec,
            scaler=scaler,
            theta=outcome.theta,
            log_likelihood=outcome.log_likelihood,
            method=self.method,
            n_obs=design.n_obs,
            n_models=design.n_models,
            n_families=design.n_families,
            families=design.families,
            models=design.models,
            data_name=data.name,
            options={
                "k": self.k, "anchors": list(spec.anchors), "clip": None if self.clip is None else list(self.clip),
                "points": self.points, "grid": self.grid, "n_starts": self.n_starts, "seed": self.seed,
                "method_options": self.method_options,
            },
            diagnostics=diagnostics,
            hessian=outcome.hessian,
            score_outer=getattr(outcome, "score_outer", None),
            data=data.frame.loc[list(design.models), ["family", "group", "size", "tokens", *spec.benchmarks]],
        )


def _start_vector(start_params, spec: ModelSpec, method: str) -> np.ndarray | None:
    """The unconstrained start vector from a FitResult or an array (None: the default start)."""
    if start_params is None:
        return None
    if method == "psga":
        raise ValueError("start_params applies to method 'aghq' or 'laplace'; psga starts from its own schedule")
    if isinstance(start_params, FitResult):
        other = start_params.spec
        if (other.benchmarks, other.anchors) != (spec.benchmarks, spec.anchors):
            raise ValueError(
                f"start_params is a fit with K = {other.K}, anchors {list(other.anchors)} and benchmarks "
                f"{list(other.benchmarks)}; this fit has K = {spec.K}, anchors {list(spec.anchors)} and benchmarks "
                f"{list(spec.benchmarks)}: start from a fit of the same K, anchors and benchmarks")
        return np.asarray(start_params.theta, dtype=float)
    theta = np.asarray(start_params, dtype=float)
    n = len(parameter_bounds(spec))
    if theta.shape != (n,):
        raise ValueError(f"start_params must be a FitResult or {n} numbers (the unconstrained parameter vector for "
                         f"K = {spec.K} and {spec.J} benchmarks, as in FitResult.theta), got shape {theta.shape}")
    return theta


def _print_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def as_score_data(data, **frame_options) -> ScoreData:
    """A ScoreData from a ScoreData, a DataFrame, a registry name or a file path."""
    if isinstance(data, ScoreData):
        return data
    if isinstance(data, pd.DataFrame):
        return from_frame(data, **frame_options)
    return load_dataset(str(data), **frame_options)


def fit(data, k: int = 4, anchors: Sequence[str] | None = None, **options) -> FitResult:
    """Shorthand for ``LatentScalingModel(k, anchors, **options).fit(data)``."""
    progress = options.pop("progress", None)
    return LatentScalingModel(k, anchors, **options).fit(data, progress=progress)
