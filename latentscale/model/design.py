"""Arrays the likelihood consumes: observed scores in long form, covariates and family index."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from latentscale.errors import InputError
from latentscale.model.covariates import CovariateScaler, family_covariate_values
from latentscale.model.spec import DEFAULT_CLIP


@dataclass(frozen=True)
class Design:
    """Observed cells of a score table, flattened (one entry per observed score).

    Memory grows with the number of observed scores, not with models × benchmarks.
    """

    y: np.ndarray  # (n_obs,) clipped scores
    obs_model: np.ndarray  # (n_obs,) row index of the model
    obs_bench: np.ndarray  # (n_obs,) benchmark index
    obs_family: np.ndarray  # (n_obs,) family index
    X: np.ndarray  # (n_models, p) standardized covariates
    model_family: np.ndarray  # (n_models,) family index
    families: tuple[str, ...]
    models: tuple[str, ...]
    n_benchmarks: int

    @property
    def n_obs(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_families(self) -> int:
        return len(self.families)

    @property
    def n_models(self) -> int:
        return len(self.models)

    def padded(self, n_obs: int | None = None, n_models: int | None = None, n_families: int | None = None,
               minimum: int = 8) -> "Design":
        """The same design padded to a fixed shape, so that compiled functions of it are reused
        across calls (cross-validation folds, predictions for different families): to the given
        sizes, or by default to the next of four sizes per octave (one compilation per size bucket).

        Padding observations carry an out-of-range family index, which the likelihood's segment
        sums drop; padding families have no observations and contribute exactly 0; padding models
        are referenced by no observation. So ℓ, its gradient and every family's posterior are
        unchanged. Slice per-family outputs to ``[:n_families]`` of the original design."""
        F = _bucket(self.n_families, minimum) if n_families is None else n_families
        M = _bucket(self.n_models, minimum) if n_models is None else n_models
        N = _bucket(self.n_obs, minimum) if n_obs is None else n_obs
        pad_f, pad_m, pad_n = F - self.n_families, M - self.n_models, N - self.n_obs
        if min(pad_f, pad_m, pad_n) < 0:
            raise ValueError(f"cannot pad a design of shape ({self.n_obs}, {self.n_models}, {self.n_families}) "
                             f"to the smaller ({N}, {M}, {F})")
        return Design(
            y=np.concatenate([self.y, np.full(pad_n, 0.5)]),
            obs_model=np.concatenate([self.obs_model, np.zeros(pad_n, np.int32)]).astype(np.int32),
            obs_bench=np.concatenate([self.obs_bench, np.zeros(pad_n, np.int32)]).astype(np.int32),
            obs_family=np.concatenate([self.obs_family, np.full(pad_n, F, np.int32)]).astype(np.int32),
            X=np.concatenate([self.X, np.zeros((pad_m, self.X.shape[1]))]),
            model_family=np.concatenate([self.model_family, np.full(pad_m, F - 1, np.int32)]).astype(np.int32),
            families=self.families + tuple(f"__pad{i}" for i in range(pad_f)),
            models=self.models + tuple(f"__pad{i}" for i in range(pad_m)),
            n_benchmarks=self.n_benchmarks,
        )

    def family_slice(self, start: int, stop: int) -> "Design":
        """The sub-design of families ``start:stop`` (see :meth:`subset_families`)."""
        return self.subset_families(np.arange(start, stop))

    def subset_families(self, index) -> "Design":
        """The sub-design of the families ``index`` (increasing), re-indexed from 0 in that
        order, with their models and scores."""
        index = np.asarray(index, dtype=np.int64)
        new_family = np.full(self.n_families + 1, -1, np.int64)
        new_family[index] = np.arange(index.size)
        fam_of_model, fam_of_obs = new_family[self.model_family], new_family[np.minimum(self.obs_family, self.n_families)]
        keep_m, keep_o = fam_of_model >= 0, fam_of_obs >= 0
        new_row = np.cumsum(keep_m) - 1
        return Design(
            y=self.y[keep_o],
            obs_model=new_row[self.obs_model[keep_o]].astype(np.int32),
            obs_bench=self.obs_bench[keep_o],
            obs_family=fam_of_obs[keep_o].astype(np.int32),
            X=self.X[keep_m],
            model_family=fam_of_model[keep_m].astype(np.int32),
            families=tuple(self.families[i] for i in index),
            models=tuple(np.asarray(self.models, dtype=object)[keep_m]),
            n_benchmarks=self.n_benchmarks,
        )

    def arrays(self) -> dict:
        """The arrays (a pytree) passed to jit-compiled likelihood functions: computed in numpy
        and transferred once by ``device_put`` (no eager JAX operation, so nothing is compiled here)."""
        import jax

        from latentscale.config import device_array

        with jax.enable_x64(True):
            return {
                "log_y": device_array(np.log(self.y)),
                "log1m_y": device_array(np.log1p(-self.y)),
                "obs_model": device_array(self.obs_model),
                "obs_bench": device_array(self.obs_bench),
                "obs_family": device_array(self.obs_family),
                "X": device_array(self.X),
            }


def clip_scores(y: np.ndarray, clip: tuple[float, float] | None, where: str = "") -> np.ndarray:
    """Clip scores into the open unit interval; without a clip, exact 0/1 are an error."""
    if clip is None:
        bad = (y <= 0) | (y >= 1)
        if np.any(bad):
            raise InputError(
                f"{int(bad.sum())} scores{where} are exactly 0 or 1, where the Beta density is infinite; "
                f"fit with a clip (the default is {DEFAULT_CLIP[0]:g},{DEFAULT_CLIP[1]:g})"
            )
        return y
    return np.clip(y, clip[0], clip[1])


def build_design(data, benchmarks, clip, scaler: CovariateScaler | None = None,
                 covariates: str = "paper", family_covariates: tuple[str, ...] = ()) -> tuple[Design, CovariateScaler]:
    """Long-form design from a :class:`~latentscale.data.ScoreData` (rows without size or tokens
    dropped); ``family_covariates``: columns of the data appended to the covariates (with a
    ``scaler``, its own)."""
    frame = data.frame
    has_cov = frame["size"].notna() & frame["tokens"].notna()
    if not has_cov.all():
        dropped = list(frame.index[~has_cov])
        shown = ", ".join(map(str, dropped[:10])) + (f" and {len(dropped) - 10} more" if len(dropped) > 10 else "")
        warnings.warn(
            f"{len(dropped)} rows have no size or tokens and are left out of the fit: {shown}",
            UserWarning,
            stacklevel=3,
        )
        frame = frame.loc[has_cov]
    if len(frame) == 0:
        raise InputError("no rows with both size and tokens to fit; give every model its size (billions of "
                         "parameters) and tokens (trillions)")
    extra = scaler.extra if scaler is not None else tuple(family_covariates)
    z = family_covariate_values(frame, extra)
    if scaler is None:
        scaler = CovariateScaler.fit(frame["size"], frame["tokens"], covariates, z, extra)
    X = scaler.transform(frame["size"], frame["tokens"], z)
    fam_codes, families = _codes(frame["family"].to_numpy())
    S = frame[list(benchmarks)].to_numpy(dtype=float)
    rows, cols = np.nonzero(~np.isnan(S))  # row-major: stable order for a given table
    if clip is None and np.any((S[rows, cols] <= 0) | (S[rows, cols] >= 1)):
        bad = (S <= 0) | (S >= 1)
        r, c = np.argwhere(bad)[0]
        raise InputError(f"{int(bad.sum())} scores are exactly 0 or 1 (first: model {frame.index[r]!r}, benchmark "
                         f"{benchmarks[c]!r}), where the Beta density is infinite; fit with a clip (the default is "
                         f"{DEFAULT_CLIP[0]:g},{DEFAULT_CLIP[1]:g})")
    y = clip_scores(S[rows, cols], clip)
    design = Design(
        y=y,
        obs_model=rows.astype(np.int32),
        obs_bench=cols.astype(np.int32),
        obs_family=fam_codes[rows].astype(np.int32),
        X=X,
        model_family=fam_codes.astype(np.int32),
        families=tuple(map(str, families)),
        models=tuple(map(str, frame.index)),
        n_benchmarks=len(benchmarks),
    )
    return design, scaler


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes in order of first appearance."""
    uniques, first, inverse = np.unique(values.astype(str), return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse], uniques[order]


def padded_shape(n_obs: int, n_models: int, n_families: int, minimum: int = 8) -> tuple[int, int, int]:
    """The shape :meth:`Design.padded` pads a design of this size to by default; a design padded
    to the shape of a larger one (``padded(*padded_shape(...))``) shares its compiled code."""
    return _bucket(n_obs, minimum), _bucket(n_models, minimum), _bucket(n_families, minimum)


def _bucket(n: int, minimum: int) -> int:
    """The smallest size ≥ max(n, minimum) of the form m · 2^e with m in {4, 5, 6, 7}: four
    sizes per octave, so padding wastes at most a quarter while shapes still repeat."""
    n = max(n, minimum, 1)
    if n <= 8:
        return n if minimum <= 1 else max(minimum, n)
    e = (n - 1).bit_length() - 3
    m = -(-n // (1 << e))
    return m << e
