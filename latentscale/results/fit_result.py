"""The fitted model: parameters with the names statisticians know, inference, summary, save/load.

statsmodels-style: ``params`` (natural-scale parameters, a labelled Series), ``bse``, ``tvalues``,
``pvalues``, ``conf_int()``, ``cov_params()`` (labelled), ``llf``, ``aic``, ``bic``, ``summary()``;
lme4-style: ``ranef()`` (the families' posterior modes) and ``simulate()``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from latentscale.errors import InputError
from latentscale.estimation.quadrature import QuadratureSpec
from latentscale.model.covariates import CovariateScaler
from latentscale.model.params import layout
from latentscale.model.spec import ModelSpec
from latentscale.results.inference import (
    COV_NAMES,
    check_kind,
    coefficient_block,
    format_table,
    natural_covariance,
    params_table,
    theta_covariance,
    wald,
)
from latentscale.results.io import (
    SCHEMA,
    SCHEMA_VERSION,
    atomic_write_text,
    frame_split,
    validate_document,
)
from latentscale.results.jsonable import to_json
from latentscale.results.summary import Summary, SummaryTable

#: |correlation| of two estimates above which the summary calls them nearly collinear. On simulated
#: ceiling data a ceiling share and its intercept at −0.998 had Wald coverage 36 %, at −0.988 87.5 %;
#: the plain `lvf-paper` K = 4 fit's largest is 0.949 (docs/inference.md).
COLLINEAR_THRESHOLD = 0.99


@dataclass
class FitResult:
    """Result of a marginal-maximum-likelihood fit.

    ``theta`` is the unconstrained vector the optimizer worked on (the model's parameter
    blocks, :mod:`latentscale.model.params`), ``constrained`` the blocks' constrained values
    (``B`` (p, K), ``loadings`` (K, J), ``intercepts`` (J,), ``precision`` (J,), ``corr`` (K, K),
    the Cholesky factor of the skill correlations), ``params`` the natural-scale parameters.
    BIC uses n = number of families, the independent units of the model.
    """

    spec: ModelSpec
    scaler: CovariateScaler
    theta: np.ndarray
    log_likelihood: float
    method: str
    n_obs: int
    n_models: int
    n_families: int
    families: tuple[str, ...]
    models: tuple[str, ...]
    data_name: str = "custom"
    quadrature: QuadratureSpec = field(default_factory=QuadratureSpec)
    options: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
    hessian: np.ndarray | None = None  # of ℓ in θ (negative definite at a maximum)
    score_outer: np.ndarray | None = None  # Σ_f s_f s_fᵀ, per-family scores at θ (robust SEs)
    data: pd.DataFrame | None = None  # the fitted rows (family, group, size, tokens, scores)
    cov_type: str = "observed"  # covariance behind bse, tvalues, pvalues and the default of conf_int
    # Derived values (constrained parameters, covariances, tables, design): never shared by copies
    # (``dataclasses.replace`` gives a copy an empty cache).
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.theta = np.asarray(self.theta, dtype=float)
        self.quadrature = QuadratureSpec.coerce(self.quadrature)

    # ---- parameters -------------------------------------------------------------------------
    @property
    def layout(self):
        return layout(self.spec)

    @property
    def constrained(self) -> dict[str, np.ndarray]:
        """The blocks' constrained values (numpy)."""
        if "constrained" not in self._cache:
            self._cache["constrained"] = {k: np.asarray(v) for k, v in self.layout.unpack(self.theta).items()}
        return self._cache["constrained"]

    @property
    def params(self) -> pd.Series:
        """The natural-scale parameters, one per free parameter, labelled by name
        (``B[log_size,math]``, ``loading[gsm8k,math]``, ``intercept[mmlu]``, ``precision[mmlu]``,
        ``corr[ifeval,math]``)."""
        return pd.Series(np.asarray(self.layout.natural(self.theta)), index=pd.Index(self.layout.names, name="parameter"),
                         name="estimate")

    @property
    def param_names(self) -> list[str]:
        return list(self.layout.names)

    @property
    def skills(self) -> tuple[str, ...]:
        return self.spec.skills

    @property
    def llf(self) -> float:
        return self.log_likelihood

    @property
    def n_params(self) -> int:
        return self.layout.size

    @property
    def aic(self) -> float:
        return -2.0 * self.log_likelihood + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        return -2.0 * self.log_likelihood + math.log(self.n_families) * self.n_params

    @property
    def converged(self) -> bool:
        return bool(self.diagnostics.get("converged", False))

    @property
    def B(self) -> pd.DataFrame:
        """Covariate effects on the skills, standardized covariates (rows) × skills (columns)."""
        return pd.DataFrame(self.constrained["B"], index=list(self.spec.covariate_names), columns=list(self.skills))

    @property
    def B_raw(self) -> pd.DataFrame:
        """Covariate effects on the raw log scale (natural logs of billions of parameters and
        trillions of tokens), with the offset per skill as the last row."""
        B_raw, offset = self.scaler.to_raw(self.constrained["B"])
        df = pd.DataFrame(B_raw, index=list(self.spec.covariate_names), columns=list(self.skills))
        df.loc["offset"] = offset
        return df

    @property
    def loadings(self) -> pd.DataFrame:
        return pd.DataFrame(self.constrained["loadings"], index=list(self.skills), columns=list(self.spec.benchmarks))

    @property
    def intercepts(self) -> pd.Series:
        return pd.Series(self.constrained["intercepts"], index=list(self.spec.benchmarks), name="intercept")

    @property
    def precisions(self) -> pd.Series:
        """φ_j by benchmark (with ``hetero_precision``: at the sample mean of the covariates)."""
        return pd.Series(self.constrained["precision"], index=list(self.spec.benchmarks), name="precision")

    @property
    def floors(self) -> pd.Series:
        return pd.Series(self.spec.floors, index=list(self.spec.benchmarks), name="floor")

    @property
    def skill_corr(self) -> pd.DataFrame:
        L = self.constrained["corr"]
        return pd.DataFrame(L @ L.T, index=list(self.skills), columns=list(self.skills))

    def benchmark_table(self) -> pd.DataFrame:
        """One row per benchmark: floor, intercept, precision and the loadings."""
        df = pd.concat([self.floors, self.intercepts, self.precisions], axis=1)
        return df.join(self.loadings.T.add_prefix("loading:"))

    # ---- data and likelihood ---------------------------------------------------------------
    def training_data(self):
        """The rows the fit saw, as a :class:`~latentscale.data.ScoreData`."""
        from latentscale.data.dataset import ScoreData

        if self.data is None:
            raise InputError("this fit carries no data (saved by an older latentscale?); refit, or pass the "
                             "family's rows explicitly")
        return ScoreData(frame=self.data, benchmarks=tuple(self.spec.benchmarks),
                         floors=dict(zip(self.spec.benchmarks, self.spec.floors)), name=self.data_name,
                         attributes=tuple(self.spec.family_covariates))

    def with_rows(self, data: pd.DataFrame, diagnostics: dict) -> "FitResult":
        """A copy at the same parameters holding other rows: what θ and its covariance give
        (constrained parameters, covariances, tables) is kept, what the rows give (their design and
        likelihood) is not."""
        new = replace(self, data=data, diagnostics=diagnostics)
        new._cache.update((k, v) for k, v in self._cache.items() if k not in ("design", "likelihood"))
        return new

    def design(self):
        """The long-form design of the fitted rows (covariates standardized as in the fit)."""
        from latentscale.model.design import build_design

        if "design" not in self._cache:
            self._cache["design"] = build_design(self.training_data(), self.spec.benchmarks, self.spec.clip,
                                                 scaler=self.scaler)[0]
        return self._cache["design"]

    def loglikelihood(self):
        """The fit's marginal likelihood on its own rows (the same rule), a
        :class:`~latentscale.estimation.likelihood.MarginalLikelihood`."""
        from latentscale.estimation.likelihood import MarginalLikelihood

        if "likelihood" not in self._cache:
            self._cache["likelihood"] = MarginalLikelihood(self.spec, self.design(), self.quadrature)
        return self._cache["likelihood"]

    def ranef(self, kind: str = "mode") -> pd.DataFrame:
        """The families' skill effects α_f given their rows, at θ̂ (lme4's ``ranef``): posterior
        ``"mode"`` (conditional modes) or ``"mean"``; families × skills."""
        if kind not in ("mode", "mean"):
            raise InputError(f"kind must be 'mode' or 'mean', got {kind!r}")
        ml = self.loglikelihood()
        if kind == "mode":
            values = ml.modes(self.theta)
        else:
            _, nodes, w = ml.posterior_nodes(self.theta)
            values = np.einsum("fq,fqk->fk", w, nodes)
        return pd.DataFrame(values, index=pd.Index(ml.families, name="family"), columns=list(self.skills))

    def fitted(self) -> pd.DataFrame:
        """Expected score μ̂_ij of every fitted model on every benchmark at θ̂ and its family's
        conditional modes (α̂_f, and û_fj, v̂_fj with residuals): lme4's ``fitted``, statsmodels'
        ``fittedvalues``; models × benchmarks (every cell, observed or not)."""
        frame, _, mu = self._fitted_means()
        return pd.DataFrame(mu, index=frame.index, columns=list(self.spec.benchmarks))

    def _fitted_means(self) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """The fitted rows, their standardized covariates X and μ̂ (models × benchmarks) of :meth:`fitted`."""
        from latentscale.model.observation import eta_bound, link_shares, mean_score
        from latentscale.model.simulate import model_residuals

        frame = self.training_data().frame
        spec, p = self.spec, self.constrained
        ml = self.loglikelihood()
        modes = ml.joint_modes(self.theta)
        codes = pd.Index(ml.families).get_indexer(frame["family"].astype(str))
        X = self.scaler.transform_frame(frame)
        eta = (X @ p["B"] + modes[codes, : spec.K]) @ p["loadings"] + p["intercepts"]
        extra = model_residuals(modes[:, spec.K:] if spec.residual else None, codes, X, spec)
        if extra is not None:
            eta = eta + extra
        return frame, X, mean_score(eta, np.asarray(spec.floors, float), eta_bound(spec.logit_clip), link_shares(p))

    def resid(self, kind: str = "response") -> pd.DataFrame:
        """Residuals of the observed scores (as the fit saw them: clipped by ``spec.clip``) against
        :meth:`fitted`: ``"response"`` y − μ̂, or ``"pearson"`` (y − μ̂) / sd, with the Beta
        variance μ̂(1 − μ̂) / (1 + φ_ij); models × benchmarks, NaN where no score was observed."""
        from latentscale.model.observation import precisions

        if kind not in ("response", "pearson"):
            raise InputError(f"kind must be 'response' or 'pearson', got {kind!r}")
        frame, X, mu = self._fitted_means()
        y = frame[list(self.spec.benchmarks)].to_numpy(float)
        if self.spec.clip is not None:
            y = np.clip(y, *self.spec.clip)
        r = y - mu
        if kind == "pearson":
            r = r / np.sqrt(mu * (1.0 - mu) / (1.0 + np.asarray(precisions(self.constrained, X))))
        return pd.DataFrame(r, index=frame.index, columns=list(self.spec.benchmarks))

    def residual_check(self, min_models: int = 10) -> dict:
        """Given its family's effects a model's scores are independent across benchmarks: the correlation of
        the Pearson residuals between benchmarks across models (``"corr"``, pairs with at least
        ``min_models`` models in common), its mean off the diagonal (``"mean_correlation"``, about 0 when
        the model holds), the pairs above 0.3 and the pairs with a correlation."""
        corr = self.resid("pearson").corr(min_periods=min_models)
        off = corr.to_numpy()[~np.eye(len(corr), dtype=bool)]
        off = off[np.isfinite(off)]
        return {"corr": corr, "mean_correlation": float(off.mean()) if off.size else float("nan"),
                "pairs_above_0.3": int((off > 0.3).sum()) // 2, "pairs": int(off.size) // 2}

    def simulate(self, nsim: int = 1, seed: int = 0, use_ranef: bool = False):
        """New score tables drawn from the fitted model for the fitted rows (same models, same
        observed cells), as :class:`~latentscale.data.ScoreData` (a list when ``nsim > 1``).
        Family effects are drawn afresh from N(0, Σ̂) (lme4's default), or held at the posterior
        modes with ``use_ranef=True``. Scores are clipped as the fit's (its ``spec.clip``)."""
        from latentscale.model.simulate import simulate_scores

        data = self.training_data()
        alpha = self.ranef("mode") if use_ranef else None
        out = [simulate_scores(self, data, np.random.default_rng([seed, i]), alpha) for i in range(int(nsim))]
        return out[0] if nsim == 1 else out

    # ---- inference ---------------------------------------------------------------------------
    @property
    def at_bounds(self) -> list[str]:
        """Parameters whose estimate lies on the edge of the optimizer's box (the boundary of the
        parameter space: a skill correlation of ±1, an intercept running off to −∞ for a benchmark
        whose scores sit at its floor). They are held fixed in the covariance."""
        return list(self.diagnostics.get("at_bounds", []))

    def _held(self) -> np.ndarray | None:
        held = set(self.at_bounds)
        if not held:
            return None
        return np.array([n in held for n in self.layout.names])

    def cov_theta(self, kind: str = "observed") -> np.ndarray:
        """Asymptotic covariance of the unconstrained estimate θ̂: ``"observed"`` information,
        ``"opg"`` (outer product of family scores) or ``"sandwich"`` (robust). Coordinates on the
        boundary (:attr:`at_bounds`) are held fixed: their rows and columns are zero."""
        check_kind(kind)
        key = ("cov_theta", kind)
        if key not in self._cache:
            self._cache[key] = theta_covariance(self.hessian, self.score_outer, kind, held=self._held())
        return self._cache[key]

    def cov_params(self, kind: str = "observed") -> pd.DataFrame:
        """Asymptotic covariance of the natural-scale parameters (:attr:`params`), labelled by
        parameter name (delta method); entries that depend on a parameter on the boundary are NaN."""
        key = ("cov_params", kind)
        if key not in self._cache:
            self._cache[key] = natural_covariance(self.theta, self.spec, self.scaler, self.cov_theta(kind),
                                                  self._held())
        return self._cache[key]

    def _bse(self, kind: str) -> pd.Series:
        return pd.Series(np.sqrt(np.clip(np.diag(self.cov_params(kind).to_numpy()), 0, None)),
                         index=self.params.index, name="se")

    @property
    def bse(self) -> pd.Series:
        """Standard errors of :attr:`params` (covariance :attr:`cov_type`)."""
        return self._bse(self.cov_type)

    @property
    def tvalues(self) -> pd.Series:
        """Wald z statistics of :attr:`params`."""
        return (self.params / self.bse).rename("z")

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided p-values of the Wald tests of :attr:`params` against 0."""
        from scipy import stats

        return pd.Series(2.0 * stats.norm.sf(np.abs(self.tvalues.to_numpy())), index=self.params.index,
                         name="p_value")

    def conf_int(self, alpha: float = 0.05, kind: str | None = None, method: str = "wald",
                 params: str | list[str] | None = None) -> pd.DataFrame:
        """Intervals of :attr:`params` at level 1 − alpha (columns lower, upper).

        ``method="wald"`` (default): positive parameters (anchor loadings, precisions, residual
        SDs) get theirs on the log scale and ceiling shares on the logit scale, as in the table.
        ``method="profile"``: profile-likelihood intervals (:meth:`profile`; refits on the fit's
        rows, seconds per parameter), of ``params`` (names or block labels; all when None)."""
        if not 0 < alpha < 1:
            raise InputError(f"alpha must be in (0, 1), got {alpha}")
        if method == "profile":
            return self.profile(params, 1.0 - alpha)[["lower", "upper"]]
        if method != "wald":
            raise InputError(f"method must be 'wald' or 'profile', got {method!r}")
        bse = self._bse(kind or self.cov_type)
        _, _, lower, upper = wald(self.params.to_numpy(), bse.to_numpy(), self.layout.interval, 1 - alpha)
        return pd.DataFrame({"lower": lower, "upper": upper}, index=self.params.index)

    def profile(self, params: str | list[str] | None = None, level: float = 0.95,
                progress: Callable[[str], None] | None = None, **options):
        """Profile-likelihood intervals (lme4's ``confint(method = "profile")``) of ``params``
        (names or block labels such as ``"link_power"``; all when None): estimate, lower, upper,
        the status of each end (``"bound"``: open up to the optimizer's box), the profile fits'
        convergence and the Wald interval beside it; with ``with_traces=True`` also the profile
        points (ζ against the parameter, for :func:`~latentscale.results.profile.plot_profiles`).
        See :mod:`latentscale.results.profile`."""
        from latentscale.results.profile import profile_intervals

        return profile_intervals(self, params, level, progress=progress, **options)

    def params_table(self, kind: str = "observed", level: float = 0.95) -> pd.DataFrame:
        """Estimate, SE, z, p-value and Wald interval of every reported quantity (delta method);
        see :func:`latentscale.results.inference.params_table`."""
        key = ("table", kind, float(level))
        if key not in self._cache:
            self._cache[key] = params_table(self.theta, self.spec, self.scaler, self.cov_theta(kind), level,
                                            held=self._held())
        return self._cache[key].copy()

    def collinear_pairs(self, threshold: float = COLLINEAR_THRESHOLD, kind: str = "observed") -> pd.DataFrame:
        """Pairs of free parameters whose estimates are correlated beyond ``threshold`` in absolute
        value (covariance ``kind`` of θ̂, the optimizer's coordinates: the same correlation as on the
        natural scale for every parameter that is a function of its own coordinate, all but the skill
        correlations): a ridge of the likelihood along which the data hardly tell the two apart (a
        ceiling share and the intercept of a benchmark whose scores stay far below the ceiling), where
        Wald intervals can be far off; read those parameters by the profile likelihood (:meth:`profile`).
        Columns ``parameter_1, parameter_2, corr``, largest ``|corr|`` first; empty without standard
        errors. Parameters on the boundary (:attr:`at_bounds`) are left out."""
        check_kind(kind)
        if not 0 < threshold < 1:
            raise InputError(f"threshold must lie in (0, 1), got {threshold}")
        empty = pd.DataFrame({"parameter_1": pd.Series(dtype=str), "parameter_2": pd.Series(dtype=str),
                              "corr": pd.Series(dtype=float)})
        if not self._has_se(kind):
            return empty
        C = np.asarray(self.cov_theta(kind), dtype=float)
        sd = np.sqrt(np.clip(np.diag(C), 0.0, None))
        with np.errstate(invalid="ignore", divide="ignore"):
            R = C / np.outer(sd, sd)
        i, j = np.triu_indices(len(C), 1)
        r = R[i, j]
        keep = np.isfinite(r) & (np.abs(r) >= threshold)
        if not keep.any():
            return empty
        order = np.argsort(-np.abs(r[keep]), kind="stable")
        names = np.asarray(self.layout.names, dtype=object)
        return pd.DataFrame({"parameter_1": names[i[keep]][order], "parameter_2": names[j[keep]][order],
                             "corr": r[keep][order]}).reset_index(drop=True)

    def _has_se(self, kind: str) -> bool:
        """Whether the covariance ``kind`` is available (the Hessian, the per-family scores it needs)."""
        if self.hessian is None and kind != "opg":
            return False
        return kind == "observed" or self.score_outer is not None

    def _safe_table(self, kind: str, level: float) -> pd.DataFrame | None:
        """The parameter table, or None when standard errors are unavailable."""
        return self.params_table(kind, level) if self._has_se(kind) else None

    # ---- reporting ---------------------------------------------------------------------------
    def to_dict(self, se: str = "observed") -> dict:
        """JSON-ready summary: the figures scripts rely on, and every parameter by name
        (``parameter_table``: estimates with standard errors of kind ``se``)."""
        return {
            "log_likelihood": self.log_likelihood,
            "aic": self.aic,
            "bic": self.bic,
            "bic_n": self.n_families,
            "n_params": self.n_params,
            "n_families": self.n_families,
            "n_models": self.n_models,
            "n_obs": self.n_obs,
            "k": self.spec.K,
            "anchors": list(self.spec.anchors),
            "method": self.method,
            "quadrature": self.quadrature.to_dict(),
            "model": self.spec.to_dict(),
            "data": self.data_name,
            "converged": self.converged,
            "seconds": self.diagnostics.get("seconds"),
            "diagnostics": to_json(self.diagnostics),
            "parameters": {
                "B": _frame_dict(self.B),
                "B_raw": _frame_dict(self.B_raw),
                "loadings": _frame_dict(self.loadings),
                "intercepts": self.intercepts.to_dict(),
                "precisions": self.precisions.to_dict(),
                "floors": self.floors.to_dict(),
                "skill_corr": _frame_dict(self.skill_corr),
            },
            "standard_errors": se,
            "parameter_table": _table_records(self._safe_table(se, 0.95)),
            "collinear_pairs": [{"parameter_1": str(a), "parameter_2": str(b), "corr": float(r)}
                                for a, b, r in self.collinear_pairs(COLLINEAR_THRESHOLD, se).itertuples(index=False)],
        }

    def summary(self, kind: str = "observed", level: float = 0.95) -> Summary:
        """The fit's summary (:class:`~latentscale.results.summary.Summary`; ``print`` it, or
        ``.as_text()`` / ``.as_html()``): fit statistics, B with standard errors (``kind`` of
        covariance, see :meth:`cov_theta`), benchmarks and skill correlations."""
        check_kind(kind)
        d = self.diagnostics
        facts = [
            ("data", self.data_name), ("method", self.method),
            ("K", f"{self.spec.K} (anchors: {', '.join(self.spec.anchors)})"),
            ("models", str(self.n_models)), ("families", str(self.n_families)), ("observed scores", str(self.n_obs)),
            ("benchmarks", str(self.spec.J)), ("log-likelihood", self._llf_text()),
            ("free parameters", str(self.n_params)), ("AIC", f"{self.aic:.2f}"),
            ("BIC", f"{self.bic:.2f} (n = {self.n_families} families)"),
            ("converged", str(self.converged)), ("gradient norm", f"{d.get('grad_norm', float('nan')):.2e}"),
            ("iterations", str(d.get("iterations", "?"))),
            ("Hessian negative definite", str(d.get("hessian_pd", "?"))),
            ("time", f"{d.get('seconds', float('nan')):.1f} s"),
            ("quadrature", self.quadrature.describe(self.spec.K, self.spec.residual_terms)), ("model", self.spec.describe()),
        ]
        notes = []
        if not self.converged and self.method != "psga":
            notes.append("NOT CONVERGED: the optimizer stopped before a stationary point (see the gradient "
                         "norm); try more starts.")
        if self.at_bounds:
            notes.append(
                f"On the boundary of the parameter space (held fixed, no standard errors): {', '.join(self.at_bounds)}. "
                "A correlation there is within 0.002 of ±1 (two skills that the data do not tell apart: fewer skills "
                "may do); an intercept there runs off to -inf (the benchmark's scores sit at or below its floor). "
                "Profile-likelihood intervals (`latentscale confint`, FitResult.profile) hold there, open on the "
                "boundary's side.")
        pairs = self.collinear_pairs(COLLINEAR_THRESHOLD, kind)
        if len(pairs):
            shown = "; ".join(f"{a} and {b} ({r:+.3f})" for a, b, r in pairs.head(5).itertuples(index=False))
            more = f"; and {len(pairs) - 5} more pairs (FitResult.collinear_pairs())" if len(pairs) > 5 else ""
            notes.append(
                f"Nearly collinear estimates (|correlation| ≥ {COLLINEAR_THRESHOLD:g}): {shown}{more}. The data hardly "
                "tell each pair apart (a ridge of the likelihood), so their Wald intervals can be far off: read them "
                "by the profile likelihood (`latentscale confint`, FitResult.profile).")
        tables = []
        table = self._safe_table(kind, level)
        if table is None:
            tables.append(SummaryTable("Skill effects B on the raw log scale (log N in billions, log D in trillions; "
                                       "no standard errors)", self.B_raw, self.B_raw.round(3).to_string()))
        else:
            raw, std = coefficient_block(table, "B_raw"), coefficient_block(table, "B")
            tables.append(SummaryTable(
                f"Skill effects B on the raw log scale (log N in billions, log D in trillions; standard errors "
                f"from the {COV_NAMES[kind]}, {d.get('hessian_kind', 'laplace')} Hessian)", raw, format_table(raw)))
            tables.append(SummaryTable("Skill effects B (standardized covariates)", std, format_table(std)))
        bench = self.benchmark_table()
        tables.append(SummaryTable("Benchmarks (floor, intercept, precision, loadings)", bench,
                                   bench.round(3).to_string()))
        tables += self._extra_block_tables(table)
        tables.append(SummaryTable("Skill correlations", self.skill_corr, self.skill_corr.round(3).to_string()))
        return Summary(title=f"latentscale fit: {self.data_name}", facts=facts, tables=tables, notes=notes)

    def _llf_text(self) -> str:
        d = self.diagnostics
        if "log_penalty" in d:
            return (f"{self.log_likelihood:.3f} at the penalized optimum (objective {d['penalized_log_likelihood']:.3f}, "
                    f"penalty {d['log_penalty']:.3f})")
        if "importance_se" not in d:
            return f"{self.log_likelihood:.3f}"
        return (f"{self.log_likelihood:.3f} ± {d['importance_se']:.3f} (importance sampling, {d['importance_draws']} "
                f"draws per family; the quadrature gave {d['quadrature_log_likelihood']:.3f})")

    def _extra_block_tables(self, table: pd.DataFrame | None) -> list[SummaryTable]:
        """A table per parameter block beyond the core ones (with standard errors when available)."""
        from latentscale.model.params import CORE_BLOCKS

        out = []
        for b in self.layout.blocks:
            if b.name in CORE_BLOCKS:
                continue
            title = f"{b.doc[:1].upper() + b.doc[1:] if b.doc else b.name} ({b.label})"
            if table is None:
                values = self.params[[n.startswith(b.label + "[") for n in self.params.index]]
                out.append(SummaryTable(title + "; no standard errors", values.to_frame(), values.round(3).to_string()))
            else:
                sub = coefficient_block(table, b.label)
                out.append(SummaryTable(title, sub, format_table(sub)))
        return out

    def __str__(self) -> str:
        return self.summary().as_text()

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fit as JSON (atomically: a temporary file renamed into place)."""
        doc = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "written_by": _written_by(),
            "spec": self.spec.to_dict(),
            "scaler": self.scaler.to_dict(),
            "quadrature": self.quadrature.to_dict(),
            "theta": self.theta.tolist(),
            "log_likelihood": self.log_likelihood,
            "method": self.method,
            "n_obs": self.n_obs,
            "n_models": self.n_models,
            "n_families": self.n_families,
            "families": list(self.families),
            "models": list(self.models),
            "data_name": self.data_name,
            "options": to_json(self.options),
            "diagnostics": to_json(self.diagnostics),
            "hessian": None if self.hessian is None else np.asarray(self.hessian).tolist(),
            "score_outer": None if self.score_outer is None else np.asarray(self.score_outer).tolist(),
            "data": None if self.data is None else frame_split(self.data),
            "summary": self.to_dict(),
        }
        return atomic_write_text(path, json.dumps(to_json(doc), indent=1, allow_nan=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FitResult":
        """Read a saved fit, checking it field by field (errors name the file and the field)."""
        path = Path(path)
        if path.is_dir():
            raise InputError(f"{path} is a folder; give a fit saved by `latentscale fit -o FIT.json`")
        if not path.is_file():
            raise InputError(f"no such fit file: {path}")
        try:
            doc = json.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError(f"{path} is not a latentscale fit (not UTF-8 text: a binary file?)") from None
        except json.JSONDecodeError as e:
            raise InputError(f"{path} is not a latentscale fit (not valid JSON: {e})") from None
        parts = validate_document(doc, path)
        diagnostics = doc.get("diagnostics") or {}
        if doc["schema_version"] == 1 and diagnostics.get("at_bounds"):  # v1 named loadings [skill,benchmark]
            diagnostics["at_bounds"] = [re.sub(r"^loading\[([^,\]]+),([^\]]+)\]$", r"loading[\2,\1]", n)
                                        for n in diagnostics["at_bounds"]]
        quadrature = parts["quadrature"]
        if doc["schema_version"] == 1:  # v1 kept the rule in the options
            o = doc.get("options", {})
            quadrature = QuadratureSpec(grid=o.get("grid", "auto") if o.get("points") is None else "auto",
                                        points=o.get("points")) if doc["method"] != "laplace" else QuadratureSpec("laplace")
        fit = cls(
            spec=parts["spec"], scaler=parts["scaler"], theta=parts["theta"],
            log_likelihood=float(doc["log_likelihood"]), method=doc["method"], n_obs=int(doc["n_obs"]),
            n_models=int(doc["n_models"]), n_families=int(doc["n_families"]), families=tuple(doc["families"]),
            models=tuple(doc["models"]), data_name=doc.get("data_name", "custom"), quadrature=quadrature,
            options=doc.get("options", {}), diagnostics=diagnostics, hessian=parts["hessian"],
            score_outer=parts["score_outer"], data=parts["data"],
        )
        table = _saved_table(doc, fit)
        if table is not None:  # the saved table is the one params_table would compute: no recompilation
            fit._cache[("table", "observed", 0.95)] = table
        return fit


def _from_params(cls, params: dict, spec: ModelSpec, scaler: CovariateScaler, **kw) -> "FitResult":
    """A fit from constrained parameters (the blocks' values, e.g. a simulation's truth)."""
    return cls(spec=spec, scaler=scaler, theta=layout(spec).pack(params), **kw)


FitResult.from_params = classmethod(_from_params)


def _table_records(table: pd.DataFrame | None) -> list[dict] | None:
    """The parameter table as JSON rows (NaN → null)."""
    if table is None:
        return None
    return to_json(table.reset_index().to_dict(orient="records"))


def _saved_table(doc: dict, fit: "FitResult") -> pd.DataFrame | None:
    """The observed-information parameter table a saved fit's summary holds, when it is of this
    version (written by this version of the package, same parameters); otherwise None (it is then
    recomputed)."""
    summary = doc.get("summary") or {}
    records = summary.get("parameter_table")
    if (doc.get("written_by") != _written_by() or summary.get("standard_errors") != "observed" or not records
            or fit.hessian is None):
        return None
    try:
        table = pd.DataFrame.from_records(records).set_index(["block", "row", "column"])
        table = table.astype({c: float for c in table.columns if c != "parameter"})
    except (KeyError, TypeError, ValueError):
        return None
    named = [p for p in table["parameter"] if p]
    if list(table.columns)[-1] != "parameter" or named != list(fit.params.index):
        return None
    return table


def _written_by() -> str:
    from latentscale import __version__

    return f"latentscale {__version__}"


def _frame_dict(df: pd.DataFrame) -> dict:
    return {str(r): {str(c): float(v) for c, v in row.items()} for r, row in df.iterrows()}
