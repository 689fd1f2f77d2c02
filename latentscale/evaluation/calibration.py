"""Extrapolation calibration of prediction intervals: split conformal on the training families.

On data drawn from the model the predictive intervals cover at their level; on real data a
family's largest model tends to sit off the fitted law (docs/prediction.md), and its intervals
under-cover. The calibration measures how far the model's own intervals miss when it
extrapolates *within the training data*, and widens them by that much:

1. In every training family with at least ``min_models`` models the largest (the
   ``holdout-largest`` rule) is held out; the model is refitted on the rest with the same options
   and the held-out models are predicted (:func:`~latentscale.evaluation.holdout.evaluate_holdout`).
2. Each held-out score gets, at each level p, its *nonconformity*: its distance from the predictive
   median on the logit scale, in units of the interval's half-width on its side (≤ 1 exactly when
   the interval covers it).
3. The factor of benchmark j at level p is split conformal's finite-sample quantile of its n
   scores, the ⌈(n + 1)p⌉-th smallest; where that exceeds n (too few scores), the quantile of
   every benchmark's scores pooled. Factors below 1 are raised to 1: the calibration widens and
   never narrows (the held-out training models extrapolate less far than the models a user asks
   about, so a factor below 1 is not evidence of over-wide intervals there).
4. :meth:`Calibration.apply` widens a prediction table's observed-score intervals about the median
   on the logit scale by the factors. Rows of families the fit has not seen (predicted from the
   prior) keep their intervals: the calibration measured extrapolation within a family.

Under exchangeability of the nonconformity of the calibration and the new predictions this is
split conformal prediction (Vovk et al. 2005; Lei et al. 2018); the exchangeability is an assumption
(the calibration's extrapolations are one step shorter), which the ``holdout-largest`` protocol with
``calibrate=True`` checks on held-out data.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from latentscale.data.validate import DataError
from latentscale.errors import InputError

SCHEMA = "latentscale.calibration"
SCHEMA_VERSION = 1
LEVELS = (0.5, 0.8, 0.95)
_EPS = 1e-6


def _logit(x) -> np.ndarray:
    return logit(np.clip(np.asarray(x, dtype=float), _EPS, 1.0 - _EPS))


def nonconformity(actual, median, lower, upper) -> np.ndarray:
    """Distance of each score from the predictive median on the logit scale, in units of the
    interval's half-width on the score's side: ≤ 1 exactly when ``[lower, upper]`` covers it
    (scores and quantiles are held inside (1e-6, 1 - 1e-6) for the logit)."""
    a, m, lo, hi = (_logit(x) for x in (actual, median, lower, upper))
    above = a >= m
    half = np.where(above, hi - m, m - lo)
    dist = np.abs(a - m)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(half > 0, dist / np.where(half > 0, half, 1.0), np.where(dist > 0, np.inf, 0.0))
    return np.where(np.isnan(np.asarray(actual, dtype=float)), np.nan, out)


def conformal_quantile(scores, level: float) -> float:
    """Split conformal's quantile: the ⌈(n + 1)·level⌉-th smallest of the n non-missing scores,
    or ``inf`` when that rank exceeds n (too few scores for the level)."""
    s = np.asarray(scores, dtype=float)
    s = np.sort(s[~np.isnan(s)])
    n = len(s)
    rank = math.ceil((n + 1) * level - 1e-9)
    return float(s[rank - 1]) if 1 <= rank <= n else math.inf


def widen(median, lower, upper, factor) -> tuple[np.ndarray, np.ndarray]:
    """The interval ``[lower, upper]`` stretched about ``median`` by ``factor`` on the logit scale."""
    m = _logit(median)
    lo = m - np.asarray(factor, dtype=float) * (m - _logit(lower))
    hi = m + np.asarray(factor, dtype=float) * (_logit(upper) - m)
    return expit(lo), expit(hi)


def _nested(table: pd.DataFrame) -> pd.DataFrame:
    """Each interval widened to hold those of lower levels of the same model and benchmark (rows keyed
    by ``model`` and ``benchmark``; a table without ``model`` is left as it is)."""
    if "model" not in table.columns or table["level"].nunique() < 2:
        return table
    order = table.sort_values("level", kind="stable")
    keys = [order["model"].astype(str), order["benchmark"].astype(str)]
    out = table.copy()
    out.loc[order.index, "lower"] = order["lower"].groupby(keys, sort=False).cummin().to_numpy()
    out.loc[order.index, "upper"] = order["upper"].groupby(keys, sort=False).cummax().to_numpy()
    return out


@dataclass
class Calibration:
    """Widening factors per benchmark and level, learned from held-out training models.

    ``factors``: one row per benchmark and level: ``factor`` (applied), ``quantile`` (the
    conformal quantile before the floor at 1), ``source`` (``benchmark``, or ``pooled`` where the
    benchmark had too few scores), ``n`` (its held-out scores) and ``coverage_model`` (how often
    the model's own intervals covered them). ``scores``: the nonconformity of every held-out
    score. ``info``: how the calibration was made (held-out models, the refit's ℓ and convergence).
    """

    factors: pd.DataFrame
    scores: pd.DataFrame
    info: dict = field(default_factory=dict)

    @property
    def levels(self) -> tuple[float, ...]:
        return tuple(sorted(set(float(x) for x in self.factors["level"])))

    def check_levels(self, levels, context: str = "") -> None:
        """Raise an :class:`InputError` naming the levels of ``levels`` the calibration has no factors for
        (so that a command stops before computing its predictions); ``context`` ends the first sentence."""
        missing = [float(lv) for lv in levels if not any(abs(float(lv) - x) < 1e-9 for x in self.levels)]
        if missing:
            raise InputError(f"the calibration has no factors at {', '.join(f'{100 * x:g}%' for x in missing)} "
                             f"(it has {', '.join(f'{100 * x:g}%' for x in self.levels)}){context}: ask for levels "
                             "it has, or calibrate again with --level")

    def factor_table(self) -> pd.DataFrame:
        """Factors as a benchmark × level table."""
        return self.factors.pivot(index="benchmark", columns="level", values="factor").loc[
            list(dict.fromkeys(self.factors["benchmark"]))]

    def apply(self, table: pd.DataFrame) -> pd.DataFrame:
        """A :func:`~latentscale.prediction.predict` table with its observed-score intervals widened:
        ``lower``/``upper`` replaced, the model's own kept as ``model_lower``/``model_upper``, the
        factor used as ``calibration_factor`` (1 for families the fit has not seen). Each level's
        factor is its own, so a lower level's widened interval can reach beyond a higher level's:
        the higher one is then widened to hold it (intervals of one model and benchmark stay nested,
        and no coverage falls)."""
        need = {"benchmark", "level", "median", "lower", "upper"}
        missing = sorted(need - set(table.columns))
        if missing:
            raise InputError(f"the prediction table has no column(s) {', '.join(missing)}; give predict()'s table")
        lookup = {(str(b), round(float(lv), 9)): float(f)
                  for b, lv, f in self.factors[["benchmark", "level", "factor"]].itertuples(index=False)}
        keys = list(zip(table["benchmark"].astype(str), table["level"].astype(float).round(9)))
        absent = sorted({k for k in keys if k not in lookup})
        if absent:
            b, lv = absent[0]
            known = ", ".join(f"{100 * x:g}%" for x in self.levels)
            raise InputError(f"the calibration has no factor for benchmark {b!r} at level {100 * lv:g}% "
                             f"(row {keys.index((b, lv))} of the prediction table); it was made for the levels "
                             f"{known} and the benchmarks {', '.join(dict.fromkeys(self.factors['benchmark']))}: "
                             "predict at those levels, or calibrate again with --level")
        factor = np.asarray([lookup[k] for k in keys])
        if "new_family" in table.columns:
            factor = np.where(table["new_family"].astype(bool).to_numpy(), 1.0, factor)
        out = table.copy()
        out["model_lower"], out["model_upper"] = table["lower"], table["upper"]
        lo, hi = widen(table["median"], table["lower"], table["upper"], factor)
        out["lower"] = np.where(factor > 1.0, lo, table["lower"])
        out["upper"] = np.where(factor > 1.0, hi, table["upper"])
        out["calibration_factor"] = factor
        return _nested(out)

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
                "factors": self.factors.to_dict(orient="records"),
                "scores": self.scores.to_dict(orient="records"), "info": self.info}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the calibration as JSON (atomically)."""
        from latentscale.results.io import atomic_write_text
        from latentscale.results.jsonable import to_json

        return atomic_write_text(path, json.dumps(to_json(self.to_dict()), indent=1, allow_nan=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Calibration":
        """Read a calibration written by :meth:`save`; an error names the file and what is wrong."""
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path} is not a JSON file ({e}); give a file written by `latentscale calibrate`") from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            found = doc.get("schema") if isinstance(doc, dict) else None
            raise InputError(f"{path} is not a latentscale calibration (schema {found!r}, expected {SCHEMA!r})")
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise InputError(f"{path} has calibration schema version {doc.get('schema_version')!r}; this "
                             f"latentscale reads version {SCHEMA_VERSION}")
        factors = pd.DataFrame(doc.get("factors") or [])
        if factors.empty or not {"benchmark", "level", "factor"} <= set(factors.columns):
            raise InputError(f"{path}: the field 'factors' has no rows with benchmark, level and factor")
        if not (np.isfinite(factors["factor"].astype(float)) & (factors["factor"].astype(float) >= 1)).all():
            raise InputError(f"{path}: field 'factors': every factor must be a finite number >= 1")
        return cls(factors, pd.DataFrame(doc.get("scores") or []), doc.get("info") or {})

    def format(self) -> str:
        t = self.factors.copy()
        wide = t.pivot(index="benchmark", columns="level", values="factor")
        order = list(dict.fromkeys(t["benchmark"]))
        wide = wide.loc[order]
        wide.columns = [f"factor@{100 * lv:g}%" for lv in wide.columns]
        cover = t.pivot(index="benchmark", columns="level", values="coverage_model").loc[order]
        for lv in cover.columns:
            wide[f"model cover@{100 * lv:g}%"] = cover[lv]
        wide.insert(0, "n", t.groupby("benchmark", sort=False)["n"].first().loc[order])
        pooled = sorted({f"{100 * lv:g}%" for lv, s in zip(t["level"], t["source"]) if s == "pooled"})
        i = self.info
        head = (f"calibration: held out {i.get('held_out', '?')} training models ({i.get('rule', '?')}), refit on "
                f"{i.get('train_models', '?')} models (ℓ = {i.get('log_likelihood', float('nan')):.2f}, "
                f"{'converged' if i.get('converged') else 'NOT converged'})\n"
                "factor: widening of the observed-score intervals about the median on the logit scale "
                "(1 = the model's own)\n")
        note = (f"\npooled over benchmarks (too few scores for the level): {', '.join(pooled)} where marked in "
                "`source`" if pooled else "")
        return head + wide.to_string(float_format=lambda x: f"{x:.3f}") + note + "\n" + self._under_coverage_line()

    def _under_coverage_line(self) -> str:
        """Where the model's own intervals under-cover the held-out scores beyond chance (exact binomial)."""
        from latentscale.evaluation.holdout import p_under, under_coverage_line

        t = self.factors.dropna(subset=["coverage_model"])
        t = t.assign(covered=(t["coverage_model"] * t["n"]).round().astype(int))
        t = t.assign(p_under=p_under(t["covered"], t["n"], t["level"]))
        return "the model's own intervals: " + under_coverage_line(t)


def calibration_from_predictions(pred: pd.DataFrame, levels: Sequence[float], *, floor: float = 1.0,
                                 info: dict | None = None) -> Calibration:
    """Factors from held-out predictions with their scores (columns ``benchmark, level, median,
    lower, upper, actual``; rows without a score are skipped)."""
    benchmarks = list(dict.fromkeys(pred["benchmark"]))  # those without held-out scores get the pooled factor
    p = pred.dropna(subset=["actual"]).copy()
    if p.empty:
        raise DataError("no held-out scores to calibrate on")
    p["score"] = nonconformity(p["actual"], p["median"], p["lower"], p["upper"])
    rows = []
    for level in levels:
        at = p[np.isclose(p["level"].astype(float), level)]
        if at.empty:
            raise InputError(f"the held-out predictions have no intervals at level {level:g}")
        pooled = conformal_quantile(at["score"], level)
        for b in benchmarks:
            sub = at[at["benchmark"] == b]
            q = conformal_quantile(sub["score"], level)
            source = "benchmark" if math.isfinite(q) else "pooled"
            q = q if math.isfinite(q) else pooled
            if not math.isfinite(q):
                raise DataError(f"too few held-out scores ({len(at)}) to calibrate {100 * level:g}% intervals; "
                                "calibrate on data with more families, or at a lower level")
            rows.append({"benchmark": b, "level": float(level), "factor": max(floor, q), "quantile": q,
                         "source": source, "n": int(len(sub)),
                         "coverage_model": float((sub["score"] <= 1).mean()) if len(sub) else math.nan})
    keep = [c for c in ("model", "family", "benchmark", "level", "actual", "median", "lower", "upper", "score")
            if c in p.columns]
    return Calibration(pd.DataFrame(rows), p[keep].reset_index(drop=True), dict(info or {}))


def calibrate(data, k: int = 4, anchors: Sequence[str] | None = None, *, levels: Sequence[float] = LEVELS,
              min_models: int = 2, fit_options: dict | None = None, predict_options: dict | None = None,
              progress: Callable[[str], None] | None = None) -> Calibration:
    """Learn widening factors on ``data`` (a :class:`~latentscale.data.ScoreData`): hold out the largest
    model of every family with at least ``min_models`` models, refit the model (``k``, ``anchors``,
    ``fit_options``) on the rest, predict the held-out models (``predict_options``) and take split
    conformal's quantile of their nonconformity (module docstring)."""
    from latentscale.evaluation.holdout import evaluate_holdout

    if int(min_models) != min_models or min_models < 2:
        raise InputError(f"min_models must be an integer >= 2 (a family needs a model left to predict from), "
                         f"got {min_models!r}")
    levels = tuple(float(x) for x in levels)
    inner = evaluate_holdout(data, k=k, anchors=anchors, levels=levels, fit_options=fit_options,
                             predict_options=predict_options, baselines=(), min_models=min_models,
                             progress=progress)
    fit = inner.fit
    info = {"held_out": len(inner.plan.predicted), "models": list(inner.plan.predicted), "rule": inner.plan.rule,
            "train_models": inner.info.get("train_models"), "log_likelihood": float(fit.llf),
            "converged": bool(fit.converged), "data": getattr(data, "name", None), "k": int(k),
            "levels": list(levels)}
    return calibration_from_predictions(inner.predictions, levels, info=info)


def calibrate_fit(fit, *, levels: Sequence[float] = LEVELS, min_models: int = 2,
                  predict_options: dict | None = None, progress: Callable[[str], None] | None = None) -> Calibration:
    """:func:`calibrate` on a saved fit's own rows with its own model options."""
    options = dict(fit.options or {})
    if not options:
        raise InputError("this fit does not record its model options; calibrate on the data with the same options")
    options.pop("k", None), options.pop("anchors", None)
    cal = calibrate(fit.training_data(), fit.spec.K, list(fit.spec.anchors), levels=levels, min_models=min_models,
                    fit_options=options, predict_options=predict_options, progress=progress)
    cal.info["fit"] = fit_fingerprint(fit)
    return cal


def fit_fingerprint(fit) -> dict:
    """What identifies the fit a calibration was made for: its data, rows, model and optimum."""
    return {"data": fit.data_name, "n_models": int(fit.n_models), "n_obs": int(fit.n_obs), "K": int(fit.spec.K),
            "benchmarks": list(fit.spec.benchmarks), "log_likelihood": round(float(fit.llf), 6)}


def for_fit(source, fit, levels: Sequence[float], context: str = "") -> tuple[Calibration, str | None]:
    """A calibration (a :class:`Calibration` or its JSON path) checked to have ``levels``
    (:meth:`Calibration.check_levels`, ``context`` ending its message), and why it was not made for
    ``fit`` (:func:`mismatch`; None when it was)."""
    cal = source if isinstance(source, Calibration) else Calibration.load(source)
    cal.check_levels(levels, context)
    return cal, mismatch(cal, fit)


def mismatch(cal: Calibration, fit) -> str | None:
    """Why ``cal`` was not made for ``fit`` (a sentence), or None when it was (or cannot be told)."""
    made = cal.info.get("fit")
    if not made:
        return None
    here = fit_fingerprint(fit)
    differ = [key for key in here if key in made and made[key] != here[key]]
    if not differ:
        return None
    return (f"the calibration was made for another fit ({', '.join(f'{k} {made[k]!r} there, {here[k]!r} here' for k in differ)}); "
            "its factors measure that fit's intervals: run `latentscale calibrate` on this fit")
