"""Standard errors, Wald tests and intervals for every parameter of a fit (SPEC §3).

The estimator works on the unconstrained vector θ of the model's parameter blocks. Its asymptotic
covariance is one of

- ``"observed"``: the inverse observed information (−H)⁻¹, H the Hessian of ℓ at θ̂;
- ``"opg"``: the inverse outer product of the per-family scores (Σ_f s_f s_fᵀ)⁻¹;
- ``"sandwich"``: (−H)⁻¹ (Σ_f s_f s_fᵀ) (−H)⁻¹, robust to a misspecified likelihood (families
  are the independent units, so this is also the family-clustered estimate).

Reported quantities (the natural-scale parameters: B, loadings, intercepts, precisions, skill
correlations; and what blocks derive from them: B on the raw log scale and its offsets) are
functions g(θ) declared by the blocks (:meth:`~latentscale.model.params.ParameterLayout.reported`);
their covariance is J Cov(θ) Jᵀ with J the Jacobian of g by automatic differentiation (the delta
method). Quantities that are positive by construction (anchor loadings, precisions, residual SDs)
get their interval on the log scale and shares in (0, 1) (ceiling shares) on the logit scale,
transformed back, so it never leaves their range.
"""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import pandas as pd

from latentscale.config import float64, quick_jit
from latentscale.errors import InputError, NotPositiveDefiniteWarning
from latentscale.model.covariates import CovariateScaler
from latentscale.model.params import layout
from latentscale.model.spec import ModelSpec

COV_KINDS = ("observed", "opg", "sandwich")
COV_NAMES = {"observed": "observed information", "opg": "outer product of family scores",
             "sandwich": "sandwich (robust)"}

__all__ = ["COV_KINDS", "NotPositiveDefiniteWarning", "theta_covariance", "reported", "params_table",
           "natural_covariance", "format_table"]


def check_kind(kind: str) -> str:
    if kind not in COV_KINDS:
        raise InputError(f"kind must be one of {', '.join(COV_KINDS)}; got {kind!r}")
    return kind


def theta_covariance(hessian: np.ndarray | None, score_outer: np.ndarray | None = None,
                     kind: str = "observed", held: np.ndarray | None = None) -> np.ndarray:
    """Asymptotic covariance of θ̂ (see the module docstring); NaN where it cannot be had.

    ``held``: a boolean mask of coordinates that lie on the edge of the optimizer's box (an
    estimate on the boundary of the parameter space, e.g. a skill correlation of ±1). Wald
    asymptotics do not hold there; the covariance is that of the other coordinates with the
    held ones fixed (their rows and columns are zero), and :func:`params_table` reports no
    standard error for a quantity that depends on them.

    Warns (:class:`NotPositiveDefiniteWarning`) and returns NaNs when the matrix to invert is not
    positive definite: a non-identified or non-converged fit.
    """
    check_kind(kind)
    if hessian is None and kind != "opg":
        raise InputError("this fit carries no Hessian; refit with standard errors to get them")
    if score_outer is None and kind != "observed":
        raise InputError(f"{kind!r} standard errors need the per-family scores, which this fit does not carry; refit")
    info = np.asarray(score_outer, float) if kind == "opg" else -np.asarray(hessian, float)
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
    w = np.linalg.eigvalsh(info) if np.all(np.isfinite(info)) else np.array([np.nan])
    if not np.all(np.isfinite(w)) or w.min() <= 1e-10 * max(abs(w.max()), 1.0):
        warnings.warn(
            f"the {'score outer product' if kind == 'opg' else 'negative Hessian'} is not positive definite "
            f"(smallest eigenvalue {np.nanmin(w):.3g}): the fit is not converged or a parameter is not identified, "
            "so standard errors are not meaningful and are reported as NaN",
            NotPositiveDefiniteWarning,
            stacklevel=2,
        )
        return np.full((n, n), np.nan)
    inv = np.linalg.inv(info)
    if kind == "sandwich":
        inv = inv @ np.asarray(score_outer, float) @ inv
    return (inv + inv.T) / 2.0


@partial(quick_jit, static_argnames=("spec",))
def _reported_and_jacobian(theta, mean, scale, spec):
    import jax

    def values(t):
        return layout(spec).reported(t, CovariateScaler(mean, scale, spec.covariates, spec.family_covariates))[0]

    return values(theta), jax.jacfwd(values)(theta)


@float64
def reported(theta: np.ndarray, spec: ModelSpec, scaler: CovariateScaler) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Every reported quantity at θ, its Jacobian in θ, and the labels (block, row, column,
    interval scale, parameter) of each (one compiled program per model)."""
    from latentscale.config import device_array

    _, labels = layout(spec).reported(np.asarray(theta, float), scaler)
    v, J = _reported_and_jacobian(device_array(theta, dtype=float), device_array(scaler.mean, dtype=float),
                                  device_array(scaler.scale, dtype=float), spec.structure)
    lab = pd.DataFrame(labels, columns=["block", "row", "column", "interval", "parameter"])
    return np.asarray(v), np.asarray(J), lab


def wald(est: np.ndarray, se: np.ndarray, interval: np.ndarray, level: float):
    """z, two-sided p-value and the interval at ``level``, formed on the scale ``interval`` of each
    quantity: ``linear``, ``log`` (positive quantities) or ``logit`` (shares in (0, 1)), with the
    delta-method SE carried to that scale and the ends transformed back."""
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    from scipy.special import ndtr, ndtri  # the normal cdf and its inverse (imported when a table is built)

    q = ndtri(0.5 + level / 2.0)
    interval = np.asarray(interval, dtype=object)
    log, logit = interval == "log", interval == "logit"
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = est / se
        se_log = se / est
        lower = np.where(log, est * np.exp(-q * se_log), est - q * se)
        upper = np.where(log, est * np.exp(q * se_log), est + q * se)
        if logit.any():
            centre = np.log(est / (1.0 - est))
            se_logit = se / (est * (1.0 - est))
            lower = np.where(logit, 1.0 / (1.0 + np.exp(-(centre - q * se_logit))), lower)
            upper = np.where(logit, 1.0 / (1.0 + np.exp(-(centre + q * se_logit))), upper)
    return z, 2.0 * ndtr(-np.abs(z)), lower, upper


def params_table(theta: np.ndarray, spec: ModelSpec, scaler: CovariateScaler, cov_theta: np.ndarray,
                 level: float = 0.95, held: np.ndarray | None = None) -> pd.DataFrame:
    """Estimate, SE, z, p-value and Wald interval of every reported quantity.

    Index: ``block``, ``row``, ``column`` (e.g. ``("B_raw", "log_size", "math")``,
    ``("loading", "gsm8k", "math")``, ``("precision", "mmlu", "")``); the column ``parameter`` holds
    the parameter's name (``FitResult.params``) for the rows that are parameters, "" for derived
    quantities. A quantity that depends on a ``held`` coordinate (on the boundary, see
    :func:`theta_covariance`) gets no standard error (NaN).
    """
    est, J, lab = reported(theta, spec, scaler)
    cov = J @ np.asarray(cov_theta, float) @ J.T
    d = np.diag(cov)
    se = np.sqrt(np.clip(d, 0.0, None))
    se[~np.isfinite(d)] = np.nan
    if held is not None and np.any(held):
        se[np.any(J[:, np.asarray(held, dtype=bool)] != 0, axis=1)] = np.nan
    z, p, lower, upper = wald(est, se, lab["interval"].to_numpy(), level)
    pct = f"{100 * level:g}"
    table = pd.DataFrame({"estimate": est, "se": se, "z": z, "p_value": p, f"lower_{pct}": lower,
                          f"upper_{pct}": upper, "parameter": lab["parameter"].to_numpy()})
    table.index = pd.MultiIndex.from_frame(lab[["block", "row", "column"]])
    return table


def natural_covariance(theta: np.ndarray, spec: ModelSpec, scaler: CovariateScaler, cov_theta: np.ndarray,
                       held: np.ndarray | None = None) -> pd.DataFrame:
    """The covariance of the natural-scale parameters (``FitResult.params``), labelled by name;
    entries that depend on a held coordinate are NaN."""
    est, J, lab = reported(theta, spec, scaler)
    rows = (lab["parameter"] != "").to_numpy()
    Jp = J[rows]
    cov = Jp @ np.asarray(cov_theta, float) @ Jp.T
    if held is not None and np.any(held):
        dep = np.any(Jp[:, np.asarray(held, dtype=bool)] != 0, axis=1)
        cov[dep, :] = np.nan
        cov[:, dep] = np.nan
    names = list(lab.loc[rows, "parameter"])
    return pd.DataFrame(cov, index=pd.Index(names, name="parameter"), columns=names)


def coefficient_block(table: pd.DataFrame, block: str) -> pd.DataFrame:
    """The rows of one block (``"B"``, ``"B_raw"``, ``"loading"``, …) with a flat ``row:column`` index."""
    sub = table.xs(block, level="block").drop(columns="parameter")
    sub.index = [f"{r}:{c}" if c else r for r, c in sub.index]
    return sub


def format_table(sub: pd.DataFrame, digits: int = 3) -> str:
    """statsmodels-style text: estimate, SE, z, P>|z| and the interval, one row per coefficient."""
    sub = sub.iloc[:, :6]
    cols = list(sub.columns)
    out = sub.copy()
    out.columns = ["coef", "std err", "z", "P>|z|", f"[{cols[4].split('_', 1)[1]}%", "]"]
    fmt = {c: (lambda v, d=digits: "nan" if not np.isfinite(v) else f"{v:.{d}f}") for c in out.columns}
    fmt["P>|z|"] = lambda v: "nan" if not np.isfinite(v) else f"{v:.3f}"
    return out.to_string(formatters=fmt)
