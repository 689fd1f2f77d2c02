"""Covariates of the skills, standardized over the fitting sample (SPEC §1).

Three sets (``ModelSpec.covariates``):

- ``"paper"`` (default): x = (log N, log D, log N · log D), the paper's;
- ``"size-tokens"``: x = (log N, log D), no interaction;
- ``"flops"``: x = (log C), C = 6 · N · D FLOPs.

N is in billions of parameters and D in trillions of tokens, natural logs; every column is
centred and scaled by its standard deviation over the fitting sample, and coefficients are
reported on both the standardized and the raw log scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: FLOPs of one unit of N · D (N = 1 billion parameters, D = 1 trillion tokens): C = 6 · N · D.
FLOPS_UNIT = 6e21

COVARIATE_SETS: dict[str, tuple[str, ...]] = {
    "paper": ("log_size", "log_tokens", "log_size:log_tokens"),
    "size-tokens": ("log_size", "log_tokens"),
    "flops": ("log_flops",),
}
#: The paper's covariates (the default set).
COVARIATES = COVARIATE_SETS["paper"]


def check_covariate_set(name: str) -> str:
    if name not in COVARIATE_SETS:
        from latentscale.errors import InputError

        raise InputError(f"unknown covariate set {name!r}; choose one of {', '.join(COVARIATE_SETS)}")
    return name


def raw_covariates(size, tokens, covariates: str = "paper") -> np.ndarray:
    """(n, p) raw covariates of a set from size (billions) and tokens (trillions)."""
    ln = np.log(np.asarray(size, dtype=float))
    ld = np.log(np.asarray(tokens, dtype=float))
    if covariates == "paper":
        return np.column_stack([ln, ld, ln * ld])
    if covariates == "size-tokens":
        return np.column_stack([ln, ld])
    if covariates == "flops":
        return (np.log(FLOPS_UNIT) + ln + ld)[:, None]
    check_covariate_set(covariates)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class CovariateScaler:
    """Column means and standard deviations of the raw covariates in the fitting sample."""

    mean: np.ndarray
    scale: np.ndarray
    covariates: str = "paper"

    @classmethod
    def fit(cls, size, tokens, covariates: str = "paper") -> "CovariateScaler":
        raw = raw_covariates(size, tokens, covariates)
        mean = raw.mean(axis=0)
        scale = raw.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)  # a constant column stays centred, unscaled
        return cls(mean=mean, scale=scale, covariates=covariates)

    @property
    def names(self) -> tuple[str, ...]:
        return COVARIATE_SETS[self.covariates]

    def transform(self, size, tokens) -> np.ndarray:
        return (raw_covariates(size, tokens, self.covariates) - self.mean) / self.scale

    def to_raw(self, B):
        """Coefficients on the raw log scale: θ = B_rawᵀ x_raw + offset (offset per skill).
        Works on numpy and JAX arrays alike (the delta method differentiates it)."""
        B_raw = B / self.scale[:, None]
        offset = -(self.mean / self.scale) @ B
        return B_raw, offset

    def to_dict(self) -> dict:
        return {"mean": np.asarray(self.mean).tolist(), "scale": np.asarray(self.scale).tolist(),
                "covariates": self.covariates}

    @classmethod
    def from_dict(cls, d: dict) -> "CovariateScaler":
        return cls(mean=np.asarray(d["mean"], float), scale=np.asarray(d["scale"], float),
                   covariates=d.get("covariates", "paper"))
