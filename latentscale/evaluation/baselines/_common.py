"""Shared pieces of the baselines: the fit/predict interface, covariates and family codes.

Every method of the head-to-head evaluation (the baselines and the latent-variable model) is a
small class with the same interface, in the scikit-learn style (options in the constructor,
data in :meth:`fit`, fitted state in attributes with a trailing underscore):

- ``fit(train, benchmarks, floors)``: ``train`` is a DataFrame indexed by model with the columns
  ``family``, ``size`` (billions of parameters), ``tokens`` (trillions) and one score column in
  [0, 1] per benchmark (complete cases); ``floors`` maps benchmarks to random-guess floors.
  Returns the fitted method.
- ``predict(models)``: ``models`` is a DataFrame with ``family``, ``size`` and ``tokens`` (score
  columns, if any, are never read); returns the predicted mean scores, an (n, J) array in the
  order of ``benchmarks``.

A family that ``fit`` never saw is predicted with the average of the fitted family effects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from latentscale.errors import InputError
from latentscale.model.covariates import CovariateScaler


def covariates(frame: pd.DataFrame, scaler: CovariateScaler | None = None, kind: str = "paper"):
    """Standardized covariates of a frame (size, tokens) of a covariate set (``paper``: log N, log D,
    log N · log D; ``flops``: log C), with the scaler of the training rows (fitted when None)."""
    if scaler is None:
        scaler = CovariateScaler.fit(frame["size"].to_numpy(float), frame["tokens"].to_numpy(float), kind)
    return scaler.transform(frame["size"].to_numpy(float), frame["tokens"].to_numpy(float)), scaler


class FamilyCodes:
    """Integer codes of the training families; unseen families get −1."""

    def __init__(self, families: Sequence[str]):
        self.names = list(pd.unique(np.asarray(families, dtype=object)))
        self.index = {f: i for i, f in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def __call__(self, families: Sequence[str]) -> np.ndarray:
        return np.array([self.index.get(f, -1) for f in families], dtype=int)


def family_effect(effects: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Rows of ``effects`` (F, ...) by family code; code −1 (unseen family) gets their mean."""
    out = effects[np.clip(codes, 0, None)]
    if np.any(codes < 0):
        out[codes < 0] = effects.mean(axis=0)
    return out


def scores(train: pd.DataFrame, benchmarks: Sequence[str], missing_ok: bool = False) -> np.ndarray:
    """(n, J) training scores; refuses out-of-range values, and missing ones unless ``missing_ok``
    (then NaN), naming the cell."""
    missing = [b for b in benchmarks if b not in train.columns]
    if missing:
        raise InputError(f"training rows lack benchmark column(s) {missing}")
    Y = train[list(benchmarks)].to_numpy(float)
    bad = (~np.isfinite(Y) & ~(missing_ok & np.isnan(Y))) | (Y < 0) | (Y > 1)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(f"training score {train.index[i]!r} / {benchmarks[j]!r} is {Y[i, j]!r}; the baselines "
                         "need complete scores in [0, 1] (keep complete cases)")
    return Y


def floor_array(benchmarks: Sequence[str], floors: Mapping[str, float]) -> np.ndarray:
    return np.array([float(floors[b]) for b in benchmarks])
