"""Starting values from a quick moment-based pass over logit-transformed scores."""

from __future__ import annotations

import numpy as np

from latentscale.model.design import Design
from latentscale.model.observation import floor_logit
from latentscale.model.params import layout
from latentscale.model.spec import ModelSpec


def initial_params(design: Design, spec: ModelSpec) -> dict:
    """Constrained starting parameters.

    Scores above the floor are put on the logit scale; each anchor's logit, regressed on
    the covariates, gives B and the scale of its skill; per-model skill estimates from the
    anchors give the non-anchor loadings by least squares, and their family-level residuals
    the skill correlations.
    """
    K, J, p = spec.K, spec.J, spec.p
    floors = np.asarray(spec.floors)
    n = design.n_models
    Z = np.full((n, J), np.nan)
    Z[design.obs_model, design.obs_bench] = floor_logit(design.y, floors[design.obs_bench])
    b = np.nanmean(Z, axis=0)
    b = np.where(np.isfinite(b), b, 0.0)
    Zc = Z - b
    X = design.X
    B = np.zeros((p, K))
    theta = np.zeros((n, K))
    scale = np.ones(K)
    for k, a in enumerate(spec.anchor_index):
        obs = ~np.isnan(Zc[:, a])
        coef = _lstsq(X[obs], Zc[obs, a])
        resid = Zc[obs, a] - X[obs] @ coef
        scale[k] = max(np.std(resid), 0.3)
        B[:, k] = coef / scale[k]
        theta[:, k] = X @ B[:, k]
        theta[obs, k] = Zc[obs, a] / scale[k]
    loadings = np.zeros((K, J))
    for j in range(J):
        if j in spec.anchor_index:
            k = spec.anchor_index.index(j)
            loadings[k, j] = scale[k]
            continue
        obs = ~np.isnan(Zc[:, j])
        if obs.sum() > K:
            loadings[:, j] = _lstsq(theta[obs], Zc[obs, j], ridge=1.0)
        else:
            loadings[:, j] = 0.1
    resid = theta - X @ B
    fam = design.model_family
    counts = np.bincount(fam, minlength=design.n_families)[:, None]
    fam_sum = np.zeros((design.n_families, K))
    np.add.at(fam_sum, fam, resid)
    fam_mean = fam_sum / np.maximum(counts, 1)  # every family has a model
    C = np.corrcoef(fam_mean.T) if K > 1 else np.ones((1, 1))
    C = 0.5 * np.nan_to_num(C) + 0.5 * np.eye(K)
    np.fill_diagonal(C, 1.0)
    out = {
        "B": B,
        "loadings": loadings,
        "intercepts": b,
        "precision": np.full(J, 30.0),
        "corr": np.linalg.cholesky(C),
    }
    if spec.residual:
        out["residual_sd"] = np.full(J, 0.3)  # modest benchmark-specific family strengths
    if spec.link_power:
        out["link_power"] = np.ones(J)  # the sigmoid
    if spec.residual_slope:
        out["slope_sd"] = np.full(J, 0.2)  # modest family differences in how size buys a benchmark
    if spec.ceiling:
        out["ceiling"] = np.full(J, 0.95)  # near the plain model's ceiling of 1
    return out


def start_points(design: Design, spec: ModelSpec, n_starts: int, seed: int, scale: float = 0.3,
                 base: np.ndarray | None = None) -> list[np.ndarray]:
    """The moment-based start (or ``base``) and ``n_starts - 1`` perturbations of it, normal with
    sd ``scale`` on the unconstrained scale (fixed seed). Blocks beyond the core ones start at 0
    on the unconstrained scale (no effect) unless ``base`` gives them."""
    lay = layout(spec)
    if base is None:
        params = initial_params(design, spec)
        base = np.zeros(lay.size)
        for b in lay.blocks:
            if b.name in params:
                base[lay.slices[b.name]] = b.bijector.inverse(params[b.name], spec, b.shape(spec))
    rng = np.random.default_rng(seed)
    return [base] + [base + rng.normal(0.0, scale, size=base.shape) for _ in range(n_starts - 1)]


def _lstsq(X, y, ridge: float = 1e-6):
    return np.linalg.solve(X.T @ X + ridge * np.eye(X.shape[1]), X.T @ y)
