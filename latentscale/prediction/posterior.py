"""Posterior of a family's latent skills α_f given that family's rows, and comparisons of families.

The point summaries (mode, mean, covariance) are conditional on the estimate θ̂ (empirical
Bayes, like lme4's conditional modes) and deterministic: the mode by Newton's method, mean
and covariance by the fit's own quadrature rule (``FitResult.quadrature``), centred at each mode. The samples also integrate over
the estimator's uncertainty (θ ~ N(θ̂, Cov θ̂)) unless ``parameter_uncertainty=False``; they are
seeded, so the same call gives the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from latentscale.config import float64, release_compiled_if_crowded
from latentscale.errors import InputError
from latentscale.estimation.likelihood import MarginalLikelihood
from latentscale.model.design import build_design
from latentscale.prediction import sampling
from latentscale.prediction.sampling import pct, tails, theta_draws


@dataclass(frozen=True)
class FamilyPosterior:
    """p(α_f | y_f) of one family. ``mode``, ``mean`` and ``cov`` are at θ̂; ``samples`` (n, K)
    include parameter uncertainty when it was asked for. ``ess`` is the smallest importance
    sampling effective sample size over the parameter draws (of ``n_proposals`` per draw)."""

    family: str
    skills: tuple[str, ...]
    n_models: int
    n_obs: int
    mode: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    samples: np.ndarray
    ess: float

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """One row per skill: mode, mean, sd (at θ̂) and the equal-tailed interval of the samples."""
        lo, hi = tails(level)
        return pd.DataFrame({
            "mode": self.mode, "mean": self.mean, "sd": self.sd,
            f"lower_{pct(level)}": np.quantile(self.samples, lo, axis=0),
            f"upper_{pct(level)}": np.quantile(self.samples, hi, axis=0),
        }, index=pd.Index(self.skills, name="skill"))


def unknown_families_message(unknown, known) -> str:
    """'family X not in the fit's data; did you mean Y? ...' with the closest known names."""
    import difflib

    hints = []
    for name in unknown:
        close = difflib.get_close_matches(str(name), [str(k) for k in known], n=3, cutoff=0.6)
        if close:
            hints.append(f"{name!r}: did you mean {', '.join(map(repr, close))}?")
    listed = ", ".join(repr(u) for u in unknown)
    return (f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {listed}: not in the fit's data"
            + (f" ({'; '.join(hints)})" if hints else f"; its families include {', '.join(sorted(map(str, known))[:8])}"))


def with_family_covariates(fit, frame: pd.DataFrame, where: str = "the new rows") -> pd.DataFrame:
    """``frame`` (rows with a ``family`` column) with the fit's family covariates filled in: a family
    of the fit's data takes its value there, a new family needs the column. Errors name the rows."""
    names = fit.spec.family_covariates
    if not names:
        return frame
    from latentscale.data.validate import DataError, check_family_attribute, name_rows

    out = frame.copy()
    base = fit.data if fit.data is not None else pd.DataFrame(columns=["family", *names])
    for name in names:
        known = base.groupby("family", sort=False)[name].first() if len(base) else pd.Series(dtype=float)
        filled = out["family"].map(known)
        if name in out.columns:
            given = out[name].notna()
            if given.any():
                values = check_family_attribute(out.loc[given], name)
                clash = filled[given].notna() & ~np.isclose(values, filled[given].astype(float))
                if clash.any():
                    hit = values.index[clash.to_numpy()]
                    rows = list(out.loc[hit, "model"] if "model" in out.columns else hit)
                    raise DataError(f"{where}: column {name!r} for model(s) {name_rows(rows)} differs from their "
                                    f"family's value in the fit; a family covariate is one value per family")
                filled[given] = values
        lacking = filled.isna()
        if lacking.any():
            models = out["model"][lacking] if "model" in out.columns else out.index[lacking]
            raise DataError(f"{where}: the fit's family covariate {name!r} is unknown for model(s) "
                            f"{name_rows(models)} of famil{'y' if out.loc[lacking, 'family'].nunique() == 1 else 'ies'} "
                            f"{name_rows(pd.unique(out.loc[lacking, 'family']))} the fit has not seen; give a "
                            f"column {name!r} (its value for each new family)")
        out[name] = filled.astype(float)
    return out


def family_covariate_row(fit, family: str, frame: pd.DataFrame | None = None) -> np.ndarray:
    """The raw family covariates (q,) of one family: from its rows of ``frame`` where they carry
    them, else from the fit's data; an error for a family neither knows."""
    names = list(fit.spec.family_covariates)
    one = pd.DataFrame({"model": [f"a new model of {family}"], "family": [family]})
    if names and frame is not None and all(c in frame.columns for c in names):
        rows = frame[frame["family"] == family]
        if len(rows):
            for c in names:
                one[c] = [rows[c].iloc[0]]
    return with_family_covariates(fit, one, "the family")[names].to_numpy(float)[0]


def rows_for(fit, families, rows):
    """The ScoreData whose families are posteriors are asked for: the fit's own rows of
    ``families``, or ``rows`` (a ScoreData or a frame with family, size, tokens and score columns)."""
    from latentscale.data.dataset import ScoreData
    from latentscale.fitting import as_score_data

    if rows is None:
        data = fit.training_data()
        known = set(data.frame["family"])
        unknown = [f for f in families if f not in known]
        if unknown:
            raise InputError(unknown_families_message(unknown, known))
        return data.subset(data.frame["family"].isin(families).to_numpy())
    if not isinstance(rows, ScoreData):
        frame = rows.copy()
        if "model" in frame.columns:
            frame = frame.set_index("model")
        frame = with_family_covariates(fit, frame.reset_index().rename(columns={"index": "model"}), "the rows")
        present = [b for b in fit.spec.benchmarks if b in frame.columns and frame[b].notna().any()]
        if not present:
            raise InputError(f"the rows hold no score of the fit's benchmarks ({', '.join(fit.spec.benchmarks)}); "
                             f"columns present: {list(frame.columns)}")
        rows = as_score_data(frame.drop(columns=[b for b in fit.spec.benchmarks if b not in present and b in frame]),
                             benchmarks=present, floors=dict(zip(fit.spec.benchmarks, fit.spec.floors)), name="rows",
                             attributes=fit.spec.family_covariates)
    elif fit.spec.family_covariates:
        rows = replace(rows, frame=with_family_covariates(fit, rows.frame, "the rows"))
    if fit.spec.family_covariates:
        rows = replace(rows, attributes=tuple(fit.spec.family_covariates))
    missing = [b for b in fit.spec.benchmarks if b not in rows.benchmarks]
    if missing:
        rows = ScoreData(frame=rows.frame.assign(**{b: np.nan for b in missing}), benchmarks=rows.benchmarks,
                         floors={**dict(zip(fit.spec.benchmarks, fit.spec.floors)), **rows.floors}, name=rows.name,
                         attributes=rows.attributes)
    return rows.with_benchmarks(fit.spec.benchmarks) if tuple(rows.benchmarks) != fit.spec.benchmarks else rows


def family_design(fit, families: list[str] | None = None, rows=None):
    """Design of the rows that inform the posteriors (covariates standardized as in the fit)."""
    data = rows_for(fit, families or [], rows)
    design, _ = build_design(data, fit.spec.benchmarks, fit.spec.clip, scaler=fit.scaler)
    return design


def quadrature_moments(fit, design):
    """Mode, mean and covariance (F, K), (F, K), (F, K, K) of every family's α at θ̂, by the fit's
    own rule (the same nodes and weights as its likelihood)."""
    ml = MarginalLikelihood(fit.spec, design, fit.quadrature)
    mode, alpha_q, w = ml.posterior_nodes(fit.theta)
    mean = np.einsum("fq,fqk->fk", w, alpha_q)
    dev = alpha_q - mean[:, None, :]
    return mode, mean, np.einsum("fq,fqk,fql->fkl", w, dev, dev)


@float64
def family_posteriors(fit, families: list[str] | None = None, rows=None, n_samples: int = 4000,
                      seed: int = 0, parameter_uncertainty: bool = True,
                      n_parameter_draws: int = 200, se: str = "sandwich") -> dict[str, FamilyPosterior]:
    """Posteriors of several families at once (by name from the fit's rows, or from ``rows``).
    ``se``: the covariance of θ̂ the parameter draws come from: the misspecification-robust
    ``"sandwich"`` (default), ``"observed"`` information or ``"opg"``."""
    design = family_design(fit, families, rows)
    n_par = n_parameter_draws if parameter_uncertainty else 1
    release_compiled_if_crowded()
    per_draw = max(1, -(-n_samples // n_par))
    thetas = theta_draws(fit, n_par, seed, parameter_uncertainty, se)
    alpha, ess = sampling.family_draws(thetas, fit.spec, design, per_draw, seed + 1,
                                       center=fit.theta)  # (S, F, M, n_effects): α first
    mode, mean, cov = quadrature_moments(fit, design)
    n_models = np.bincount(design.model_family, minlength=design.n_families)
    n_obs = np.bincount(design.obs_family, minlength=design.n_families)
    out = {}
    for f, name in enumerate(design.families):
        samples = alpha[:, f, :, : fit.spec.K].reshape(-1, fit.spec.K)[:n_samples]
        out[name] = FamilyPosterior(
            family=name, skills=fit.spec.skills, n_models=int(n_models[f]), n_obs=int(n_obs[f]),
            mode=mode[f], mean=mean[f], cov=cov[f], samples=samples, ess=float(ess[:, f].min()),
        )
    return out


def family_posterior(fit, family: str | None = None, rows=None, **options) -> FamilyPosterior:
    """Posterior of one family's skills: by ``family`` name (its rows in the fit), or from
    ``rows`` (a frame or ScoreData of one family's evaluated models, which need not be in the fit).
    Options as :func:`family_posteriors`."""
    if (family is None) == (rows is None):
        raise InputError("pass exactly one of family= (a family of the fit) or rows= (a family's rows)")
    posts = family_posteriors(fit, [family] if family is not None else None, rows, **options)
    if family is None:
        if len(posts) != 1:
            raise InputError(f"rows= must hold one family; got {len(posts)}: {sorted(posts)}")
        return next(iter(posts.values()))
    return posts[family]


def compare_families(fit, a: str, b: str, level: float = 0.95, n_samples: int = 4000, seed: int = 0,
                     parameter_uncertainty: bool = True, se: str = "sandwich") -> pd.DataFrame:
    """Skill by skill, the posterior of α_a − α_b: mean, sd, equal-tailed interval and P(α_a > α_b).

    The two posteriors are independent given θ; their draws share the parameter draws, so the
    difference also carries the estimator's uncertainty.
    """
    if a == b:
        raise InputError(f"compare two different families; got {a!r} twice")
    posts = family_posteriors(fit, [a, b], n_samples=n_samples, seed=seed,
                              parameter_uncertainty=parameter_uncertainty, se=se)
    diff = posts[a].samples - posts[b].samples
    lo, hi = tails(level)
    sd = diff.std(axis=0, ddof=1)
    mean = diff.mean(axis=0)
    return pd.DataFrame({
        "mean": mean, "sd": sd,
        f"lower_{pct(level)}": np.quantile(diff, lo, axis=0),
        f"upper_{pct(level)}": np.quantile(diff, hi, axis=0),
        f"P({a} > {b})": (diff > 0).mean(axis=0),
    }, index=pd.Index(fit.spec.skills, name="skill"))
