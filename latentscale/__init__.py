"""latentscale: latent-variable scaling laws for LLM families and benchmarks.

Data flow: :mod:`latentscale.data` (registry, loading, validation) →
:mod:`latentscale.model` (covariates, parameters, likelihood) →
:mod:`latentscale.estimation` (marginal maximum likelihood) →
:mod:`latentscale.results` (fit results, save/load) → :mod:`latentscale.cli`.
"""

from latentscale._jax import enable_x64 as _enable_x64

_enable_x64()

__version__ = "0.1.0"

from latentscale.data import ScoreData, list_datasets, load_dataset, read_scores  # noqa: E402
from latentscale.fitting import LatentScalingModel, fit  # noqa: E402
from latentscale.results.fit_result import FitResult  # noqa: E402

__all__ = ["FitResult", "LatentScalingModel", "ScoreData", "fit", "list_datasets", "load_dataset", "read_scores"]
