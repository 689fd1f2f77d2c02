"""latentscale: latent-variable scaling laws for LLM families and benchmarks.

Data flow: :mod:`latentscale.data` (registry, loading, validation) → :mod:`latentscale.model`
(covariates, parameter blocks, observation model, design, simulation) →
:mod:`latentscale.estimation` (the marginal likelihood and its estimators) →
:mod:`latentscale.results` (fit results, inference, save/load) → :mod:`latentscale.prediction`,
:mod:`latentscale.allocation`, :mod:`latentscale.design`, :mod:`latentscale.evaluation` →
:mod:`latentscale.cli` and :mod:`latentscale.report`.

Importing the package changes no global setting: JAX runs in float64 inside latentscale's own
calls only (:mod:`latentscale.config`). Names are imported lazily, so ``import latentscale`` is cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_EXPORTS = {
    "ScoreData": "latentscale.data",
    "list_datasets": "latentscale.data",
    "load_dataset": "latentscale.data",
    "read_scores": "latentscale.data",
    "DataError": "latentscale.data",
    "InputError": "latentscale.errors",
    "LatentScalingModel": "latentscale.fitting",
    "fit": "latentscale.fitting",
    "FitResult": "latentscale.results.fit_result",
    "ModelSpec": "latentscale.model.spec",
    "QuadratureSpec": "latentscale.estimation.quadrature",
    "MarginalLikelihood": "latentscale.estimation.likelihood",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'latentscale' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
