"""Covariates x = (log N, log D, log N · log D), standardized over the fitting sample (SPEC §1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COVARIATES = ("log_size", "log_tokens", "log_size:log_tokens")


def raw_covariates(size, tokens) -> np.ndarray:
    """(n, 3) raw log covariates: natural logs of size (billions) and tokens (trillions) and their product."""
    ln = np.log(np.asarray(size, dtype=float))
    ld = np.log(np.asarray(tokens, dtype=float))
    return np.column_stack([ln, ld, ln * ld])


@dataclass(frozen=True)
class CovariateScaler:
    """Column means and standard deviations of the raw covariates in the fitting sample."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, size, tokens) -> "CovariateScaler":
        raw = raw_covariates(size, tokens)
        mean = raw.mean(axis=0)
        scale = raw.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)  # a constant column stays centred, unscaled
        return cls(mean=mean, scale=scale)

    def transform(self, size, tokens) -> np.ndarray:
        return (raw_covariates(size, tokens) - self.mean) / self.scale

    def to_raw(self, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients on the raw log scale: θ = B_rawᵀ x_raw + offset (offset per skill)."""
        B_raw = B / self.scale[:, None]
        offset = -(self.mean / self.scale) @ B
        return B_raw, offset

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "CovariateScaler":
        return cls(mean=np.asarray(d["mean"], float), scale=np.asarray(d["scale"], float))
