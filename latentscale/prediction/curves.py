"""Scaling curves: predicted scores of a family against model size, with bands, as data and as a figure."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from latentscale.errors import InputError
from latentscale.prediction.predict import predict


def scaling_curve(fit, family: str, sizes: Sequence[float] | None = None, *, tokens: float | None = None,
                  tokens_per_param: float | None = None, n_points: int = 25,
                  levels: Sequence[float] = (0.5, 0.95), family_covariates: dict | None = None,
                  **predict_options) -> pd.DataFrame:
    """Predicted score of every benchmark against size for one family (its posterior, or the prior
    for a family the fit has not seen).

    Tokens are held at ``tokens`` (trillions; default: the family's median in the fit's data, else
    the data's median) or scale with size at ``tokens_per_param`` tokens per parameter (20 is the
    Chinchilla rule). ``sizes`` (billions) default to ``n_points`` log-spaced sizes over the range of
    the fit's data. Returns the :func:`~latentscale.prediction.predict` table plus ``size``,
    ``tokens`` and ``extrapolated`` (size or tokens outside the fit's data range; FLOPs for a fit on
    log FLOPs) columns. ``family_covariates``: the family's values of the fit's family covariates
    ({"Instruct": 1}), needed for a family the fit has not seen.
    """
    if tokens is not None and tokens_per_param is not None:
        raise InputError("give tokens= (fixed) or tokens_per_param= (scaled with size), not both")
    data = fit.data
    if sizes is None:
        if data is None:
            raise InputError("this fit carries no data to take the size range from; pass sizes=")
        sizes = np.geomspace(data["size"].min(), data["size"].max(), n_points)
    sizes = np.asarray(sizes, dtype=float)
    if sizes.ndim != 1 or not np.all(sizes > 0):
        raise InputError("sizes must be positive numbers (billions of parameters)")
    if tokens_per_param is not None:
        if not tokens_per_param > 0:
            raise InputError(f"tokens_per_param must be positive, got {tokens_per_param}")
        tok = sizes * tokens_per_param / 1000.0  # billions of parameters × ratio → trillions of tokens
    else:
        if tokens is None:
            if data is None:
                raise InputError("this fit carries no data to take the tokens from; pass tokens=")
            own = data.loc[data["family"] == family, "tokens"]
            tokens = float((own if len(own) else data["tokens"]).median())
        if not tokens > 0:
            raise InputError(f"tokens must be positive (trillions), got {tokens}")
        tok = np.full_like(sizes, float(tokens))
    models = pd.DataFrame({"model": [f"{family}@{s:.4g}B" for s in sizes], "family": family,
                           "size": sizes, "tokens": tok, **(family_covariates or {})})
    models = models.drop_duplicates("model")
    with warnings.catch_warnings():  # a curve may run past the data on purpose: the column flags it
        warnings.filterwarnings("ignore", message=".*outside the size or token range")
        table = predict(fit, models, levels, **predict_options)
    return table.merge(models[["model", "size", "tokens"]], on="model", how="left")


def plot_scaling_curve(fit, curve: pd.DataFrame, path: str | Path | None = None, *, expected: bool = False,
                       benchmarks: Sequence[str] | None = None, observed: bool = True):
    """One panel per benchmark: predictive mean against size (log axis) with a band per level
    (observed-score intervals, or expected-score ones with ``expected=True``) and the family's
    evaluated models as points. Returns the figure; saves it (atomically) when ``path`` is given."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    family = str(curve["family"].iloc[0])
    benchmarks = list(benchmarks or fit.spec.benchmarks)
    n = len(benchmarks)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharex=True)
    lo_col, hi_col = ("expected_lower", "expected_upper") if expected else ("lower", "upper")
    levels = sorted(curve["level"].unique(), reverse=True)
    own = None if fit.data is None else fit.data[fit.data["family"] == family]
    for ax, b in zip(axes.ravel(), benchmarks):
        sub = curve[curve["benchmark"] == b]
        for i, level in enumerate(levels):
            band = sub[sub["level"] == level].sort_values("size")
            ax.fill_between(band["size"], band[lo_col], band[hi_col], color="C0", alpha=0.15 + 0.15 * i,
                            lw=0, label=f"{100 * level:g}%")
        mid = sub[sub["level"] == levels[0]].sort_values("size")
        ax.plot(mid["size"], mid["mean"], color="C0", lw=1.5, label="mean")
        if observed and own is not None and len(own):
            ax.scatter(own["size"], own[b], color="k", s=12, zorder=3, label="evaluated")
        ax.set_xscale("log")
        ax.set_title(b, fontsize=9)
        ax.set_ylim(0, 1)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("parameters (B)")
    axes[0, 0].legend(fontsize=7, loc="best")
    kind = "expected score" if expected else "observed score"
    if not expected and "calibration_factor" in curve.columns and (curve["calibration_factor"] > 1).any():
        kind += " (calibrated bands)"
    fig.suptitle(f"{family}: predicted {kind} against size", fontsize=10)
    fig.tight_layout()
    if path is not None:
        from latentscale.results.io import atomic_write

        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120))
        plt.close(fig)
    return fig
