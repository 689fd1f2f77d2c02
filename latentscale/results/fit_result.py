"""The fitted model: parameters as labelled tables, information criteria, diagnostics, save/load."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from latentscale.model.covariates import COVARIATES, CovariateScaler
from latentscale.model.params import ModelSpec, pack, parameter_names, unpack
from latentscale.results.jsonable import to_json
from latentscale.results.inference import coefficient_block, format_table, params_table, theta_covariance

SCHEMA = "latentscale.fit"
SCHEMA_VERSION = 1
#: Fields :meth:`FitResult.load` cannot do without.
REQUIRED_FIELDS = ("spec", "scaler", "theta", "log_likelihood", "method", "n_obs", "n_models", "n_families",
                   "families", "models")


@dataclass
class FitResult:
    """Result of a marginal-maximum-likelihood fit (statsmodels-style names: ``llf``, ``aic``, ``bic``).

    ``params`` holds the constrained parameters (``B`` (p, K), ``loadings`` (K, J),
    ``intercepts`` (J,), ``log_precision`` (J,), ``corr_chol`` (K, K)); ``theta`` the
    unconstrained vector the optimizer worked on.  BIC uses n = number of families, the
    independent units of the model.
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
    options: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
    hessian: np.ndarray | None = None  # of ℓ in θ (negative definite at a maximum)
    score_outer: np.ndarray | None = None  # Σ_f s_f s_fᵀ, per-family scores at θ (robust SEs)
    data: pd.DataFrame | None = None  # the fitted rows (family, group, size, tokens, scores): family posteriors

    # ---- parameters -------------------------------------------------------------
    @property
    def params(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in unpack(np.asarray(self.theta), self.spec).items()}

    @property
    def skills(self) -> tuple[str, ...]:
        return self.spec.skills

    @property
    def llf(self) -> float:
        return self.log_likelihood

    @property
    def n_params(self) -> int:
        return self.spec.n_params

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
        return pd.DataFrame(self.params["B"], index=list(COVARIATES), columns=list(self.skills))

    @property
    def B_raw(self) -> pd.DataFrame:
        """Covariate effects on the raw log scale (natural logs of billions of parameters and trillions of tokens)."""
        B_raw, offset = self.scaler.to_raw(self.params["B"])
        df = pd.DataFrame(B_raw, index=list(COVARIATES), columns=list(self.skills))
        df.loc["offset"] = offset
        return df

    @property
    def loadings(self) -> pd.DataFrame:
        return pd.DataFrame(self.params["loadings"], index=list(self.skills), columns=list(self.spec.benchmarks))

    @property
    def intercepts(self) -> pd.Series:
        return pd.Series(self.params["intercepts"], index=list(self.spec.benchmarks), name="intercept")

    @property
    def precisions(self) -> pd.Series:
        return pd.Series(np.exp(self.params["log_precision"]), index=list(self.spec.benchmarks), name="precision")

    @property
    def floors(self) -> pd.Series:
        return pd.Series(self.spec.floors, index=list(self.spec.benchmarks), name="floor")

    @property
    def skill_corr(self) -> pd.DataFrame:
        L = self.params["corr_chol"]
        return pd.DataFrame(L @ L.T, index=list(self.skills), columns=list(self.skills))

    def training_data(self):
        """The rows the fit saw, as a :class:`~latentscale.data.ScoreData` (for family posteriors)."""
        from latentscale.data.dataset import ScoreData

        if self.data is None:
            raise ValueError("this fit carries no data (saved by an older latentscale?); refit, or pass the "
                             "family's rows explicitly")
        return ScoreData(frame=self.data, benchmarks=tuple(self.spec.benchmarks),
                         floors=dict(zip(self.spec.benchmarks, self.spec.floors)), name=self.data_name)

    # ---- inference ----------------------------------------------------------------
    @property
    def at_bounds(self) -> list[str]:
        """Parameters whose estimate lies on the edge of the optimizer's box (the boundary of
        the parameter space: a skill correlation of ±1, an intercept running off to −∞ for a
        benchmark whose scores sit at its floor). They are held fixed in the covariance."""
        return list(self.diagnostics.get("at_bounds", []))

    def _held(self) -> np.ndarray | None:
        held = set(self.at_bounds)
        if not held:
            return None
        return np.array([n in held for n in parameter_names(self.spec)])

    def cov_params(self, kind: str = "observed") -> np.ndarray:
        """Asymptotic covariance of the unconstrained estimate: ``"observed"`` information,
        ``"opg"`` (outer product of family scores) or ``"sandwich"`` (robust). Coordinates
        on the boundary (:attr:`at_bounds`) are held fixed: their rows and columns are zero."""
        return theta_covariance(self.hessian, self.score_outer, kind, held=self._held())

    def params_table(self, kind: str = "observed", level: float = 0.95) -> pd.DataFrame:
        """Estimate, SE, z, p-value and Wald interval of every reported quantity (delta method);
        see :func:`latentscale.results.inference.params_table`. Quantities that depend on a
        parameter on the boundary (:attr:`at_bounds`) get no standard error."""
        return params_table(self.theta, self.spec, self.scaler, self.cov_params(kind), level, held=self._held())

    def benchmark_table(self) -> pd.DataFrame:
        """One row per benchmark: floor, intercept, precision and the loadings."""
        df = pd.concat([self.floors, self.intercepts, self.precisions], axis=1)
        return df.join(self.loadings.T.add_prefix("loading:"))

    # ---- reporting ----------------------------------------------------------------
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
            "data": self.data_name,
            "converged": self.converged,
            "seconds": self.diagnostics.get("seconds"),
            "diagnostics": _jsonable(self.diagnostics),
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
        }

    def summary(self, kind: str = "observed", level: float = 0.95) -> str:
        """A readable text summary: fit statistics, B with standard errors (``kind`` of
        covariance, see :meth:`cov_params`), benchmarks and skill correlations."""
        d = self.diagnostics
        lines = [
            f"latentscale fit: {self.data_name}   method {self.method}   K = {self.spec.K} (anchors: {', '.join(self.spec.anchors)})",
            f"models {self.n_models}   families {self.n_families}   observed scores {self.n_obs}   benchmarks {self.spec.J}",
            f"log-likelihood {self.log_likelihood:.3f}   free parameters {self.n_params}   "
            f"AIC {self.aic:.2f}   BIC {self.bic:.2f} (n = {self.n_families} families)",
            f"converged {self.converged}   gradient norm {d.get('grad_norm', float('nan')):.2e}   "
            f"iterations {d.get('iterations', '?')}   Hessian negative definite {d.get('hessian_pd', '?')}   "
            f"time {d.get('seconds', float('nan')):.1f} s",
            "",
        ]
        if self.at_bounds:
            lines += [
                f"On the boundary of the parameter space (held fixed, no standard errors): {', '.join(self.at_bounds)}. "
                "A correlation there is within 0.002 of ±1 (two skills that the data do not tell apart: fewer skills may do); "
                "an intercept there runs off to -inf (the benchmark's scores sit at or below its floor).",
                "",
            ]
        table = self._safe_table(kind, level)
        if table is None:
            lines += [
                "Skill effects B (standardized covariates):", self.B.round(3).to_string(), "",
                "Skill effects on the raw log scale (log N in billions, log D in trillions):",
                self.B_raw.round(3).to_string(), "",
            ]
        else:
            se_note = {"observed": "observed information", "opg": "outer product of family scores",
                       "sandwich": "sandwich (robust)"}[kind]
            lines += [
                f"Skill effects B on the raw log scale (log N in billions, log D in trillions; "
                f"standard errors from the {se_note}, {d.get('hessian_kind', 'laplace')} Hessian):",
                format_table(coefficient_block(table, "B_raw")), "",
                "Skill effects B (standardized covariates):",
                format_table(coefficient_block(table, "B")), "",
            ]
        lines += [
            "Benchmarks (floor, intercept, precision, loadings):",
            self.benchmark_table().round(3).to_string(),
            "",
            "Skill correlations:",
            self.skill_corr.round(3).to_string(),
        ]
        return "\n".join(lines)

    def _safe_table(self, kind: str, level: float) -> pd.DataFrame | None:
        """The parameter table, or None (with the warning already issued) when SEs are unavailable."""
        if self.hessian is None and kind != "opg":
            return None
        if kind != "observed" and self.score_outer is None:
            return None
        return self.params_table(kind, level)

    def __str__(self) -> str:
        return self.summary()

    # ---- persistence --------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fit as JSON (atomically: a temporary file renamed into place)."""
        doc = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "spec": self.spec.to_dict(),
            "scaler": self.scaler.to_dict(),
            "theta": self.theta.tolist(),
            "log_likelihood": self.log_likelihood,
            "method": self.method,
            "n_obs": self.n_obs,
            "n_models": self.n_models,
            "n_families": self.n_families,
            "families": list(self.families),
            "models": list(self.models),
            "data_name": self.data_name,
            "options": _jsonable(self.options),
            "diagnostics": _jsonable(self.diagnostics),
            "hessian": None if self.hessian is None else np.asarray(self.hessian).tolist(),
            "score_outer": None if self.score_outer is None else np.asarray(self.score_outer).tolist(),
            "data": None if self.data is None else _frame_split(self.data),
            "summary": self.to_dict(),
        }
        return atomic_write_text(path, json.dumps(doc, indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FitResult":
        try:
            doc = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not a latentscale fit (not valid JSON: {e})") from e
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            found = doc.get("schema") if isinstance(doc, dict) else None
            raise ValueError(f"{path} is not a latentscale fit (schema {found!r})")
        version = doc.get("schema_version")
        if type(version) is not int or version < 1:
            raise ValueError(f"{path} has no valid fit schema version ({version!r}; this latentscale writes "
                             f"{SCHEMA_VERSION})")
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"{path} has fit schema version {version}, newer than this latentscale "
                f"understands ({SCHEMA_VERSION}); upgrade latentscale"
            )
        missing = [key for key in REQUIRED_FIELDS if key not in doc]
        if missing:
            raise ValueError(f"{path} is not a complete latentscale fit: missing field(s) {', '.join(missing)}")
        return cls(
            spec=ModelSpec.from_dict(doc["spec"]),
            scaler=CovariateScaler.from_dict(doc["scaler"]),
            theta=np.asarray(doc["theta"], dtype=float),
            log_likelihood=float(doc["log_likelihood"]),
            method=doc["method"],
            n_obs=int(doc["n_obs"]),
            n_models=int(doc["n_models"]),
            n_families=int(doc["n_families"]),
            families=tuple(doc["families"]),
            models=tuple(doc["models"]),
            data_name=doc.get("data_name", "custom"),
            options=doc.get("options", {}),
            diagnostics=doc.get("diagnostics", {}),
            hessian=None if doc.get("hessian") is None else np.asarray(doc["hessian"], dtype=float),
            score_outer=None if doc.get("score_outer") is None else np.asarray(doc["score_outer"], dtype=float),
            data=None if doc.get("data") is None else _frame_from_split(doc["data"]),
        )

    @classmethod
    def from_params(cls, params: dict, spec: ModelSpec, scaler: CovariateScaler, **kw) -> "FitResult":
        return cls(spec=spec, scaler=scaler, theta=pack(params, spec), **kw)


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary file in the same folder (same
    suffix, so writers that go by the extension work), which is then renamed into place; on any
    failure the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text to ``path`` through a temporary file in the same folder and an atomic rename."""
    def write(tmp: str) -> None:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_TRUNC), "w") as fh:
            fh.write(text)

    return atomic_write(path, write)


def _table_records(table: pd.DataFrame | None) -> list[dict] | None:
    """The parameter table as JSON rows (NaN → null)."""
    if table is None:
        return None
    return to_json(table.reset_index().to_dict(orient="records"))


def _frame_dict(df: pd.DataFrame) -> dict:
    return {str(r): {str(c): float(v) for c, v in row.items()} for r, row in df.iterrows()}


def _frame_split(df: pd.DataFrame) -> dict:
    """A frame as JSON: index, columns and rows (NaN → null)."""
    return to_json({"index": [str(i) for i in df.index], "columns": [str(c) for c in df.columns],
                    "data": df.astype(object).to_numpy().tolist()})


def _frame_from_split(d: dict) -> pd.DataFrame:
    df = pd.DataFrame(d["data"], index=pd.Index(d["index"], name="model"), columns=d["columns"])
    for col in df.columns:
        if col not in ("family", "group"):
            df[col] = pd.to_numeric(df[col]).astype(float)
    return df


_jsonable = to_json
