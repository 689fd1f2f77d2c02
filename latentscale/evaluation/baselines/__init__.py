"""Methods of the head-to-head evaluation (SPEC §5), one fit/predict interface for all.

Baselines: ``flops-global``, ``flops-family``, ``size-tokens-family`` (:mod:`.flops`),
``pca-flops`` (:mod:`.pca`), ``sloth-d1`` … ``sloth-d4`` (:mod:`.sloth`); and this project's
model, ``latent-k1`` … ``latent-k4`` (:mod:`.latent`). The interface is described in
:mod:`._common`: ``fit(train, benchmarks, floors)`` then ``predict(models)`` → (n, J) mean scores.
"""

from latentscale.errors import InputError
from latentscale.evaluation.baselines.flops import FlopsFamily, FlopsGlobal, SizeTokensFamily
from latentscale.evaluation.baselines.latent import LatentMethod
from latentscale.evaluation.baselines.pca import PCAFlops
from latentscale.evaluation.baselines.sloth import Sloth

BASELINES = ("flops-global", "flops-family", "size-tokens-family", "pca-flops", "sloth-d1", "sloth-d2",
             "sloth-d3", "sloth-d4")


def make_baseline(name: str):
    """A fresh baseline by method name (``sloth-dN`` for any N ≥ 1)."""
    simple = {"flops-global": FlopsGlobal, "flops-family": FlopsFamily, "size-tokens-family": SizeTokensFamily,
              "pca-flops": PCAFlops}
    if name in simple:
        return simple[name]()
    if name.startswith("sloth-d") and name[7:].isdigit() and int(name[7:]) >= 1:
        return Sloth(int(name[7:]))
    raise InputError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")


__all__ = ["BASELINES", "FlopsFamily", "FlopsGlobal", "LatentMethod", "PCAFlops", "SizeTokensFamily", "Sloth",
           "make_baseline"]
