"""Starting values from a quick moment-based pass over logit-transformed scores."""

from __future__ import annotations

import numpy as np

from latentscale.model.design import Design
from latentscale.model.params import ModelSpec


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
    frac = (design.y - floors[design.obs_bench]) / (1.0 - floors[design.obs_bench])
    Z[design.obs_model, design.obs_bench] = np.log(np.clip(frac, 0.02, 0.98) / (1 - np.clip(frac, 0.02, 0.98)))
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
    log_precision = np.full(J, np.log(30.0))
    return {
        "B": B,
        "loadings": loadings,
        "intercepts": b,
        "log_precision": log_precision,
        "corr_chol": np.linalg.cholesky(C),
    }


def _lstsq(X, y, ridge: float = 1e-6):
    return np.linalg.solve(X.T @ X + ridge * np.eye(X.shape[1]), X.T @ y)
