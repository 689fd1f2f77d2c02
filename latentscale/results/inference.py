"""Standard errors, Wald tests and intervals for every parameter of a fit (SPEC §3).

The estimator works on an unconstrained vector θ (log anchor loadings, log precisions, free
entries of a normalized Cholesky factor). Its asymptotic covariance is one of

- ``"observed"``: the inverse observed information (−H)⁻¹, H the Hessian of ℓ at θ̂;
- ``"opg"``: the inverse outer product of the per-family scores (Σ_f s_f s_fᵀ)⁻¹;
- ``"sandwich"``: (−H)⁻¹ (Σ_f s_f s_fᵀ) (−H)⁻¹, robust to a misspecified likelihood
  (families are the independent units, so this is also the family-clustered estimate).

Reported quantities (B on the standardized and raw log scales, the raw-scale offsets,
loadings, intercepts, precisions, skill correlations) are functions g(θ); their covariance
is J Cov(θ) Jᵀ with J the Jacobian of g by automatic differentiation (the delta method).
Quantities that are positive by construction (anchor loadings, precisions) get their
interval on the log scale, transformed back, so it never crosses zero.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import stats

from latentscale.model.covariates import COVARIATES, CovariateScaler
from latentscale.model.params import ModelSpec, unpack

COV_KINDS = ("observed", "opg", "sandwich")


class NotPositiveDefiniteWarning(UserWarning):
    """The information matrix is not positive definite: standard errors are not meaningful."""


def theta_covariance(hessian: np.ndarray | None, score_outer: np.ndarray | None = None,
                     kind: str = "observed", held: np.ndarray | None = None) -> np.ndarray:
    """Asymptotic covariance of θ̂ (see the module docstring); NaN where it cannot be had.

    ``held``: a boolean mask of coordinates that lie on the edge of the optimizer's box (an
    estimate on the boundary of the parameter space, e.g. a skill correlation of ±1). Wald
    asymptotics do not hold there; the covariance is that of the other coordinates with the
    held ones fixed (their rows and columns are zero), and :func:`params_table` reports no
    standard error for a quantity that depends on them.

    Warns (:class:`NotPositiveDefiniteWarning`) and returns NaNs when the matrix to invert
    is not positive definite: a non-identified or non-converged fit.
    """
    if kind not in COV_KINDS:
        raise ValueError(f"kind must be one of {', '.join(COV_KINDS)}; got {kind!r}")
    if hessian is None and kind != "opg":
        raise ValueError("this fit carries no Hessian; refit to get standard errors")
    if score_outer is None and kind != "observed":
        raise ValueError(f"{kind!r} standard errors need the per-family scores, which this fit does not carry; refit")
    if kind == "opg":
        info = np.asarray(score_outer, float)
    else:
        info = -np.asarray(hessian, float)
    n = info.shape[0]
    free = np.ones(n, dtype=bool) if held is None else ~np.asarray(held, dtype=bool)
    if not free.all():
        sub = theta_covariance(None if hessian is None else np.asarray(hessian, float)[np.ix_(free, free)],
                               None if score_outer is None else np.asarray(score_outer, float)[np.ix_(free, free)],
                               kind)
        out = np.zeros((n, n))
        out[np.ix_(free, free)] = sub
        return out
    info = (info + info.T) / 2.0
    w = np.linalg.eigvalsh(info)
    if not np.all(np.isfinite(w)) or w.min() <= 1e-10 * max(abs(w.max()), 1.0):
        warnings.warn(
            f"the {'score outer product' if kind == 'opg' else 'negative Hessian'} is not positive definite "
            f"(smallest eigenvalue {w.min():.3g}): the fit is not converged or a parameter is not identified, "
            "so standard errors are not meaningful and are reported as NaN",
            NotPositiveDefiniteWarning,
            stacklevel=2,
        )
        return np.full((n, n), np.nan)
    inv = np.linalg.inv(info)
    if kind == "sandwich":
        inv = inv @ np.asarray(score_outer, float) @ inv
    return (inv + inv.T) / 2.0


def _derived(theta, spec: ModelSpec, mean, scale):
    """Every reported quantity as one vector (jnp, differentiable in θ)."""
    p = unpack(theta, spec)
    B = p["B"]
    B_raw = B / scale[:, None]
    offset = -(mean / scale) @ B
    L = p["corr_chol"]
    R = L @ L.T
    iu = np.tril_indices(spec.K, -1)
    return jnp.concatenate([
        B.ravel(), B_raw.ravel(), offset,
        p["loadings"].ravel(), p["intercepts"], jnp.exp(p["log_precision"]), R[iu],
    ])


def _labels(spec: ModelSpec) -> pd.DataFrame:
    """Block, row, column and positivity flag of each entry of :func:`_derived`."""
    sk, bm = spec.skills, spec.benchmarks
    rows = []
    rows += [("B", c, s, False) for c in COVARIATES for s in sk]
    rows += [("B_raw", c, s, False) for c in COVARIATES for s in sk]
    rows += [("offset", "offset", s, False) for s in sk]
    anchor_cells = {(k, j) for k, j in enumerate(spec.anchor_index)}
    rows += [("loading", bm[j], sk[k], (k, j) in anchor_cells) for k in range(spec.K) for j in range(spec.J)]
    rows += [("intercept", b, "", False) for b in bm]
    rows += [("precision", b, "", True) for b in bm]
    rows += [("corr", sk[a], sk[b], False) for a, b in zip(*np.tril_indices(spec.K, -1))]
    return pd.DataFrame(rows, columns=["block", "row", "column", "positive"])


def params_table(theta: np.ndarray, spec: ModelSpec, scaler: CovariateScaler, cov_theta: np.ndarray,
                 level: float = 0.95, held: np.ndarray | None = None) -> pd.DataFrame:
    """Estimate, SE, z, p-value and Wald interval of every reported quantity.

    Index: ``block``, ``row``, ``column`` (e.g. ``("B_raw", "log_size", "math")``,
    ``("loading", "gsm8k", "math")``, ``("precision", "mmlu", "")``). Loadings fixed at zero
    by the anchor structure are left out. A quantity that depends on a ``held`` coordinate
    (on the boundary, see :func:`theta_covariance`) gets no standard error (NaN).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    mean, scale = np.asarray(scaler.mean, float), np.asarray(scaler.scale, float)
    f = lambda t: _derived(t, spec, mean, scale)  # noqa: E731
    th = jnp.asarray(theta, dtype=float)
    est = np.asarray(f(th))
    J = np.asarray(jax.jacfwd(f)(th))
    cov = J @ np.asarray(cov_theta, float) @ J.T
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    se[~np.isfinite(np.diag(cov))] = np.nan
    if held is not None and np.any(held):
        se[np.any(J[:, np.asarray(held, dtype=bool)] != 0, axis=1)] = np.nan
    lab = _labels(spec)
    q = stats.norm.ppf(0.5 + level / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = est / se
    lower, upper = est - q * se, est + q * se
    pos = lab["positive"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        se_log = se / est
        lower = np.where(pos, est * np.exp(-q * se_log), lower)
        upper = np.where(pos, est * np.exp(q * se_log), upper)
    pct = f"{100 * level:g}"
    table = pd.DataFrame({
        "estimate": est, "se": se, "z": z, "p_value": 2.0 * stats.norm.sf(np.abs(z)),
        f"lower_{pct}": lower, f"upper_{pct}": upper,
    })
    table.index = pd.MultiIndex.from_frame(lab[["block", "row", "column"]])
    # Structural zeros (non-anchor loadings of an anchor benchmark) are not parameters.
    fixed = (lab["block"] == "loading").to_numpy() & (np.abs(J).sum(axis=1) == 0)
    return table[~fixed]


def coefficient_block(table: pd.DataFrame, block: str) -> pd.DataFrame:
    """The rows of one block (``"B"``, ``"B_raw"``, ``"loading"``, …) with a flat ``row:column`` index."""
    sub = table.xs(block, level="block")
    sub.index = [f"{r}:{c}" if c else r for r, c in sub.index]
    return sub


def format_table(sub: pd.DataFrame, digits: int = 3) -> str:
    """statsmodels-style text: estimate, SE, z, P>|z| and the interval, one row per coefficient."""
    cols = list(sub.columns)
    out = sub.copy()
    out.columns = ["coef", "std err", "z", "P>|z|", f"[{cols[4].split('_', 1)[1]}%", "]"]
    fmt = {c: (lambda v, d=digits: f"{v:.{d}f}") for c in out.columns}
    fmt["P>|z|"] = lambda v: "nan" if not np.isfinite(v) else f"{v:.3f}"
    return out.to_string(formatters=fmt)
