"""Methods of the head-to-head evaluation (SPEC §5), one fit/predict interface for all.

Baselines: ``flops-global``, ``flops-family``, ``size-tokens-family`` (:mod:`.flops`),
``pca-flops`` (:mod:`.pca`), ``sloth-basic-d1`` … ``sloth-basic-d4`` ("Sloth basic", :mod:`.sloth`;
``sloth-dN`` is accepted for it too); and this project's
model, ``latent-k1`` … ``latent-k4`` (:mod:`.latent`). The interface is described in
:mod:`._common`: ``fit(train, benchmarks, floors)`` then ``predict(models)`` → (n, J) mean scores.
"""

from latentscale.errors import InputError
from latentscale.evaluation.baselines.flops import FlopsFamily, FlopsGlobal, SizeTokensFamily
from latentscale.evaluation.baselines.latent import LatentMethod
from latentscale.evaluation.baselines.pca import PCAFlops
from latentscale.evaluation.baselines.sloth import Sloth

BASELINES = ("flops-global", "flops-family", "size-tokens-family", "pca-flops", "sloth-basic-d1", "sloth-basic-d2",
             "sloth-basic-d3", "sloth-basic-d4")


def make_baseline(name: str):
    """A fresh baseline by method name (``sloth-basic-dN``, or its older name ``sloth-dN``, for any N ≥ 1)."""
    simple = {"flops-global": FlopsGlobal, "flops-family": FlopsFamily, "size-tokens-family": SizeTokensFamily,
              "pca-flops": PCAFlops}
    if name in simple:
        return simple[name]()
    for prefix in ("sloth-basic-d", "sloth-d"):
        rest = name[len(prefix):]
        if name.startswith(prefix) and rest.isdigit() and int(rest) >= 1:
            return Sloth(int(rest))
    raise InputError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")


__all__ = ["BASELINES", "FlopsFamily", "FlopsGlobal", "LatentMethod", "PCAFlops", "SizeTokensFamily", "Sloth",
           "make_baseline"]
