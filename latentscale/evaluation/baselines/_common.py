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
from scipy.special import expit


def log_flops(frame: pd.DataFrame) -> np.ndarray:
    """log C, C = 6 · N · D FLOPs (N parameters, D tokens)."""
    return np.log(6.0) + np.log(frame["size"].to_numpy(float) * 1e9) + np.log(frame["tokens"].to_numpy(float) * 1e12)


def log_size_tokens(frame: pd.DataFrame) -> np.ndarray:
    """(n, 3): log N, log D, log N · log D (N in billions, D in trillions; SPEC §1)."""
    ln = np.log(frame["size"].to_numpy(float))
    ld = np.log(frame["tokens"].to_numpy(float))
    return np.column_stack([ln, ld, ln * ld])


class Standardizer:
    """Column means and SDs of a training matrix (constant columns left unscaled)."""

    def __init__(self, X: np.ndarray):
        X = np.atleast_2d(np.asarray(X, float).T).T
        self.mean = X.mean(axis=0)
        sd = X.std(axis=0)
        self.sd = np.where(sd > 0, sd, 1.0)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, float).T).T
        return (X - self.mean) / self.sd


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


def scores(train: pd.DataFrame, benchmarks: Sequence[str]) -> np.ndarray:
    """(n, J) training scores; refuses missing or out-of-range values, naming the cell."""
    missing = [b for b in benchmarks if b not in train.columns]
    if missing:
        raise ValueError(f"training rows lack benchmark column(s) {missing}")
    Y = train[list(benchmarks)].to_numpy(float)
    bad = ~np.isfinite(Y) | (Y < 0) | (Y > 1)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"training score {train.index[i]!r} / {benchmarks[j]!r} is {Y[i, j]!r}; the baselines "
                         "need complete scores in [0, 1] (keep complete cases)")
    return Y


def floor_array(benchmarks: Sequence[str], floors: Mapping[str, float]) -> np.ndarray:
    return np.array([float(floors[b]) for b in benchmarks])


def floor_logit(Y: np.ndarray, c: np.ndarray, eps: float = 0.02) -> np.ndarray:
    """logit of the floor-corrected scores (Y − c)/(1 − c), clipped into [eps, 1 − eps]: starting values."""
    frac = np.clip((Y - c) / (1.0 - c), eps, 1.0 - eps)
    return np.log(frac / (1.0 - frac))


def sigmoid(x):
    return expit(x)
