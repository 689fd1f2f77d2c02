"""Covariates of the skills, standardized over the fitting sample (SPEC §1).

Three sets (``ModelSpec.covariates``):

- ``"paper"`` (default): x = (log N, log D, log N · log D), the paper's;
- ``"size-tokens"``: x = (log N, log D), no interaction;
- ``"flops"``: x = (log C), C = 6 · N · D FLOPs.

Family covariates (``ModelSpec.family_covariates``: columns constant within a family, such as
whether the family is instruction-tuned) follow the set's columns: with them the family effect
is α_f ~ N(Γ z_f, Σ), which is the same model as θ = α'_f + Bᵀ(x, z_f) with α'_f ~ N(0, Σ), so Γ
is the rows of B for z and an unseen family is predicted from its kind.

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


def family_covariate_values(frame, names: tuple[str, ...], where: str = "the data") -> np.ndarray:
    """(n, q) values of the family covariates ``names`` in ``frame`` (true/false as 1/0), checked:
    every column present, every value a finite number, one value per family. Errors name the
    column and the rows or the family."""
    from latentscale.data.validate import DataError, check_family_attribute

    if not names:
        return np.zeros((len(frame), 0))
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise DataError(f"{where} lacks the family covariate column(s) {missing} the model uses; add them "
                        f"(one value per family, the same for each of its models)")
    try:
        return np.column_stack([check_family_attribute(frame, c).to_numpy(float) for c in names])
    except DataError as e:
        raise DataError(f"{where}: {e}") from None


@dataclass(frozen=True)
class CovariateScaler:
    """Column means and standard deviations of the raw covariates in the fitting sample: the
    set's columns, then the family covariates ``extra`` (their names)."""

    mean: np.ndarray
    scale: np.ndarray
    covariates: str = "paper"
    extra: tuple[str, ...] = ()

    @classmethod
    def fit(cls, size, tokens, covariates: str = "paper", extra_values=None,
            extra: tuple[str, ...] = ()) -> "CovariateScaler":
        raw = _stack(raw_covariates(size, tokens, covariates), extra_values, extra)
        mean = raw.mean(axis=0)
        scale = raw.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)  # a constant column stays centred, unscaled
        return cls(mean=mean, scale=scale, covariates=covariates, extra=tuple(extra))

    @property
    def names(self) -> tuple[str, ...]:
        return COVARIATE_SETS[self.covariates] + self.extra

    def transform(self, size, tokens, extra_values=None) -> np.ndarray:
        """Standardized covariates; ``extra_values`` (n, q): the family covariates, needed when
        the scaler has any."""
        raw = _stack(raw_covariates(size, tokens, self.covariates), extra_values, self.extra)
        return (raw - self.mean) / self.scale

    def transform_frame(self, frame, where: str = "the data") -> np.ndarray:
        """Standardized covariates of a frame's rows (size, tokens and the family covariate columns)."""
        return self.transform(frame["size"], frame["tokens"], family_covariate_values(frame, self.extra, where))

    def to_raw(self, B):
        """Coefficients on the raw log scale: θ = B_rawᵀ x_raw + offset (offset per skill).
        Works on numpy and JAX arrays alike (the delta method differentiates it)."""
        B_raw = B / self.scale[:, None]
        offset = -(self.mean / self.scale) @ B
        return B_raw, offset

    def to_dict(self) -> dict:
        return {"mean": np.asarray(self.mean).tolist(), "scale": np.asarray(self.scale).tolist(),
                "covariates": self.covariates, "family_covariates": list(self.extra)}

    @classmethod
    def from_dict(cls, d: dict) -> "CovariateScaler":
        return cls(mean=np.asarray(d["mean"], float), scale=np.asarray(d["scale"], float),
                   covariates=d.get("covariates", "paper"), extra=tuple(d.get("family_covariates", ())))


def _stack(raw: np.ndarray, extra_values, extra: tuple[str, ...]) -> np.ndarray:
    if not extra:
        return raw
    if extra_values is None:
        from latentscale.errors import InputError

        raise InputError(f"the model has family covariates {list(extra)}: give their values")
    extra_values = np.asarray(extra_values, dtype=float).reshape(raw.shape[0], len(extra))
    return np.column_stack([raw, extra_values])
