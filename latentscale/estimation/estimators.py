"""The estimators behind ``LatentScalingModel(method=...)``: one entry point that dispatches.

- ``"aghq"`` (default): deterministic marginal maximum likelihood on the fit's adaptive rule
  (:func:`latentscale.estimation.mle.fit_mle`);
- ``"laplace"``: the same with the one-node (Laplace) rule throughout;
- ``"psga"``: the paper's projected stochastic gradient ascent
  (:func:`latentscale.estimation.psga.fit_psga`), for side-by-side comparison.

Every estimator reports ℓ by the same :class:`~latentscale.estimation.likelihood.MarginalLikelihood`
(the fit's rule), so their values compare directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from latentscale.errors import InputError
from latentscale.estimation.quadrature import QuadratureSpec
from latentscale.model.design import Design
from latentscale.model.spec import ModelSpec

if TYPE_CHECKING:
    from latentscale.estimation.mle import EstimatorOutcome

METHODS = ("aghq", "laplace", "psga")


def method_quadrature(method: str, quadrature: QuadratureSpec) -> QuadratureSpec:
    """The rule a method integrates with (``laplace``: one node, whatever was asked)."""
    return QuadratureSpec("laplace") if method == "laplace" else quadrature


def estimate(method: str, design: Design, spec: ModelSpec, quadrature: QuadratureSpec, *, n_starts: int, seed: int,
             hessian: str | None, start: np.ndarray | None, progress: Callable[[str], None] | None,
             options: dict) -> EstimatorOutcome:
    """Run the estimator ``method`` on a design (see the module docstring)."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "psga":
        if spec.power_prior:
            raise InputError("power_prior (a penalized likelihood) applies to method 'aghq' or 'laplace', not psga")
        if start is not None:
            raise InputError("start_params applies to method 'aghq' or 'laplace'; psga starts from its own schedule")
        from latentscale.estimation.psga import fit_psga

        return fit_psga(design, spec, seed=seed, progress=progress, quadrature=quadrature, **options)
    from latentscale.estimation.mle import fit_mle  # (SciPy's optimizers: imported when a fit runs)

    return fit_mle(design, spec, quadrature=method_quadrature(method, quadrature), n_starts=n_starts, seed=seed,
                   hessian=hessian, progress=progress, start=start, **options)
