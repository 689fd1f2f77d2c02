"""Held-out calibration of prediction intervals (SPEC §5): remove models, refit, predict them, score.

Protocol ``holdout-largest``: in every family with at least three models (with size and
tokens) the largest model (by parameters, then tokens) is held out, together with the models
the data says are built on it (a ``base_model`` column, where the data has one). Everything held
out is removed before the fit; the held-out models are then predicted from their families'
posteriors given the remaining rows, and their scores are compared with the intervals. The
held-out rows' scores reach neither the fit nor the posteriors: only their family, size and
tokens go to :func:`~latentscale.prediction.predict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from latentscale.data.dataset import ScoreData
from latentscale.data.validate import DataError, name_rows
from latentscale.model.design import clip_scores

PROTOCOLS = ("holdout-largest",)
LEVELS = (0.5, 0.8, 0.95)


@dataclass(frozen=True)
class HoldoutPlan:
    """Which rows leave the fit: ``predicted`` (scored) and ``removed`` (⊇ predicted: also the
    fine-tunes built on a held-out model, which are dropped but not scored)."""

    predicted: tuple[str, ...]
    removed: tuple[str, ...]
    rule: str


def largest_per_family(data: ScoreData, min_models: int = 3) -> HoldoutPlan:
    """The ``holdout-largest`` rule (see the module docstring)."""
    f = data.frame
    usable = f[f["size"].notna() & f["tokens"].notna()]
    chosen = []
    for _, rows in usable.groupby("family", sort=False):
        if len(rows) >= min_models:
            order = rows.assign(_name=rows.index).sort_values(["size", "tokens", "_name"], ascending=[False, False, True])
            chosen.append(order.index[0])
    if not chosen:
        raise DataError(f"no family has {min_models} or more models with size and tokens; nothing to hold out")
    removed = list(chosen)
    if "base_model" in f.columns:
        built_on = f.index[f["base_model"].isin(chosen) & ~f.index.isin(chosen)]
        removed += list(built_on)
    return HoldoutPlan(tuple(chosen), tuple(removed), f"largest model of each family with >= {min_models} models")


def named_holdout(data: ScoreData, names: Sequence[str]) -> HoldoutPlan:
    """Hold out exactly the named models (an error names any that are not in the data)."""
    names = [str(n).strip() for n in names if str(n).strip()]
    if not names:
        raise DataError("the hold-out list is empty; give one model name per line")
    unknown = [n for n in names if n not in data.frame.index]
    if unknown:
        raise DataError(f"held-out model(s) {name_rows(unknown)} are not in the data {data.name!r}; "
                        "check the spelling (model names are case-sensitive)")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"held-out model(s) listed twice: {name_rows(dup)}")
    f = data.frame.loc[names]
    bad = list(f.index[f["size"].isna() | f["tokens"].isna()])
    if bad:
        raise DataError(f"held-out model(s) {name_rows(bad)} have no size or tokens, so they cannot be predicted")
    return HoldoutPlan(tuple(names), tuple(names), "named models")


def read_holdout_file(path) -> list[str]:
    """One model name per line; blank lines and lines starting with ``#`` are skipped."""
    from pathlib import Path

    lines = Path(path).read_text().splitlines()
    return [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]


@dataclass
class HoldoutResult:
    """Predictions of the held-out models next to their scores, and the calibration table."""

    predictions: pd.DataFrame  # predict() table + actual, covered, width
    plan: HoldoutPlan
    fit: object
    levels: tuple[float, ...]
    info: dict = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """Rows ``benchmark, level, coverage, mean_width, mae, n`` per benchmark and level, then
        ``benchmark = "all"`` (every held-out score pooled); ``mae_<baseline>`` for each baseline
        fitted on the same training rows (:attr:`baselines`), and ``mae_diff_<baseline>`` (the
        latent model's MAE minus the baseline's) with its 95 % interval ``_low``/``_high``, paired by
        score and clustered by held-out model (:func:`paired_mean_interval`).

        ``covered`` counts the covered scores and ``p_under`` is the exact binomial probability that
        intervals covering at exactly their level cover that few or fewer of ``n`` scores: a small
        value is under-coverage beyond chance. The scores of one benchmark are taken as independent
        (under ``holdout-largest`` each is another family's model); the pooled row's ``p_under`` is
        NaN, as one model's scores on different benchmarks are not."""
        p = self.predictions.dropna(subset=["actual"])
        rows = []
        benchmarks = list(dict.fromkeys(p["benchmark"])) + ["all"]
        for b in benchmarks:
            sub = p if b == "all" else p[p["benchmark"] == b]
            for level in self.levels:
                s = sub[sub["level"] == level]
                hits = int(s["covered"].sum())
                row = {"benchmark": b, "level": level, "coverage": s["covered"].mean(),
                       "mean_width": s["width"].mean(), "mae": (s["mean"] - s["actual"]).abs().mean(),
                       "n": int(len(s)), "covered": hits,
                       "p_under": float(p_under(hits, len(s), level)) if b != "all" and len(s) else np.nan}
                if "covered_model" in s.columns:
                    row["coverage_model"] = s["covered_model"].mean()
                for name in self.baselines:
                    row[f"mae_{name}"] = (s[f"mean_{name}"] - s["actual"]).abs().mean()
                    diff = (s["mean"] - s["actual"]).abs() - (s[f"mean_{name}"] - s["actual"]).abs()
                    row[f"mae_diff_{name}"], row[f"mae_diff_{name}_low"], row[f"mae_diff_{name}_high"] = \
                        paired_mean_interval(diff.to_numpy(), s["model"].to_numpy())
                rows.append(row)
        return pd.DataFrame(rows)

    @property
    def baselines(self) -> list[str]:
        return [c[5:] for c in self.predictions.columns if c.startswith("mean_")]

    def to_records(self) -> list[dict]:
        return self.table().to_dict(orient="records")

    def fit_record(self) -> dict:
        """The refit behind the predictions: its model, ℓ, convergence and the held-out models."""
        f = self.fit
        return {"k": f.spec.K, "model": f.spec.to_dict(), "log_likelihood": f.llf, "n_params": f.n_params,
                "converged": f.converged, "train_models": self.info.get("train_models"),
                "baselines_converged": self.info.get("baselines_converged", {}),
                "held_out": list(self.plan.predicted), "rule": self.plan.rule}

    def format(self) -> str:
        t = self.table()
        wide = t.pivot(index="benchmark", columns="level", values=["coverage", "mean_width"])
        order = list(dict.fromkeys(t["benchmark"]))
        wide = wide.loc[order]
        wide.columns = [f"{'cover' if a == 'coverage' else 'width'}@{100 * lv:g}%" for a, lv in wide.columns]
        mae = t.groupby("benchmark", sort=False)["mae"].first().loc[order]
        n = t.groupby("benchmark", sort=False)["n"].first().loc[order]
        wide.insert(0, "n", n)
        if "coverage_model" in t.columns:
            own = t.pivot(index="benchmark", columns="level", values="coverage_model").loc[order]
            for lv in own.columns:
                wide[f"uncal@{100 * lv:g}%"] = own[lv]
        wide["mae"] = mae
        failed = [n for n, ok in self.info.get("baselines_converged", {}).items() if ok is False]
        for name in self.baselines:
            label = f"mae {name}" + (" *" if name in failed else "")
            wide[label] = t.groupby("benchmark", sort=False)[f"mae_{name}"].first().loc[order]
        head = (f"held out {len(self.plan.predicted)} models ({self.plan.rule}); removed {len(self.plan.removed)} "
                f"rows in all; refit on {self.info.get('train_models', '?')} models, "
                f"K = {self.fit.spec.K}, log-likelihood {self.fit.llf:.2f}"
                f"{'' if getattr(self.fit, 'converged', True) else ' (NOT converged: predictions from the last iterate)'}\n"
                "coverage and mean width of observed-score intervals; mae of the predictive mean\n")
        cal = self.info.get("calibration")
        if cal is not None:
            i = cal.info
            head += (f"intervals calibrated on the training rows: {i.get('held_out')} of their largest models held "
                     f"out, refit ℓ = {i.get('log_likelihood', float('nan')):.2f}"
                     f"{'' if i.get('converged') else ' (NOT converged)'}; uncal: the model's own coverage\n")
        lines = [wide.to_string(float_format=lambda x: f"{x:.3f}"), self._under_coverage_line(t)]
        lines += [self._difference_line(t, name) for name in self.baselines]
        lines += [f"* {name}: its fit did not converge (its predictions are those of the last iterate)" for name in failed]
        return head + "\n".join(lines)

    @staticmethod
    def _difference_line(t: pd.DataFrame, name: str) -> str:
        """The MAE difference from a baseline, pooled, and the benchmarks where its interval excludes 0."""
        first = t.groupby("benchmark", sort=False).first()
        col = f"mae_diff_{name}"
        pooled = first.loc["all"]
        clear = first.drop(index="all")
        clear = clear[(clear[f"{col}_low"] > 0) | (clear[f"{col}_high"] < 0)]
        text = (f"MAE minus {name}'s (95 % interval, paired by score, clustered by model): all "
                f"{pooled[col]:+.4f} [{pooled[f'{col}_low']:+.4f}, {pooled[f'{col}_high']:+.4f}]; interval clear of 0: ")
        return text + ("; ".join(f"{b} {r[col]:+.4f} [{r[f'{col}_low']:+.4f}, {r[f'{col}_high']:+.4f}]"
                                 for b, r in clear.iterrows()) or "none")

    @staticmethod
    def _under_coverage_line(t: pd.DataFrame) -> str:
        return under_coverage_line(t, "the pooled row is not tested, a model's scores being dependent")


def p_under(covered, n, level):
    """P(X ≤ ``covered``) for X ~ Binomial(``n``, ``level``): how likely intervals covering at exactly their
    level cover that few or fewer of ``n`` scores (elementwise over arrays)."""
    from scipy.stats import binom

    return binom.cdf(covered, n, level)


def under_coverage_line(t: pd.DataFrame, aside: str = "", alpha: float = 0.05) -> str:
    """Which benchmarks' intervals cover less than their level beyond chance: the rows of ``t``
    (columns ``benchmark, level, covered, n, p_under``) with ``p_under < alpha``."""
    low = t[t["p_under"] < alpha]
    head = (f"under-coverage beyond chance (exact binomial, P(this few covered) < {alpha:g}"
            + (f"; {aside}" if aside else "") + "): ")
    if low.empty:
        return head + "none"
    return head + "; ".join(f"{r.benchmark} at {100 * r.level:g} % ({int(r.covered)}/{int(r.n)}, p = {r.p_under:.3g})"
                            for r in low.itertuples())


def paired_mean_interval(diff: np.ndarray, cluster: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of paired differences and its ``level`` interval, clustered: the differences of one
    cluster (one held-out model's scores) may be dependent, the clusters are taken as independent.
    The variance is the cluster-robust one, G/(G − 1) · Σ_g (Σ_{s∈g} (d_s − d̄))² / S² over G
    clusters and S differences, with Student's t on G − 1 degrees of freedom; with one difference
    per cluster it is the paired t-interval. Missing differences (NaN) are left out; NaN bounds with
    fewer than two clusters."""
    from scipy.stats import t as student

    d = np.asarray(diff, dtype=float)
    keep = ~np.isnan(d)
    d, cluster = d[keep], np.asarray(cluster)[keep]
    if d.size == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(d.mean())
    sums = pd.Series(d - mean).groupby(cluster).sum().to_numpy()
    g = len(sums)
    if g < 2:
        return (mean, np.nan, np.nan)
    se = float(np.sqrt(g / (g - 1) * np.sum(sums**2)) / d.size)
    half = float(student.ppf(0.5 + level / 2, g - 1)) * se
    return (mean, mean - half, mean + half)


def evaluate_holdout(data: ScoreData, *, holdout: Sequence[str] | None = None, k: int = 4,
                     anchors: Sequence[str] | None = None, levels: Sequence[float] = LEVELS,
                     fit_options: dict | None = None, predict_options: dict | None = None,
                     baselines: Sequence[str] = ("flops-family",), min_models: int = 3, calibrate: bool = False,
                     progress: Callable[[str], None] | None = None) -> HoldoutResult:
    """Hold out models (the ``holdout-largest`` rule over families with at least ``min_models``
    models, or exactly ``holdout``), refit on the rest, predict the held-out ones and compare their
    scores with the intervals. ``baselines`` (names of :mod:`latentscale.evaluation.baselines`) are
    fitted on the same training rows and their point predictions scored beside the latent model's
    (their MAE in the table). ``calibrate``: widen the intervals by factors learned on the training
    rows alone (:mod:`latentscale.evaluation.calibration`: a second holdout inside them); the table
    then scores the widened intervals and keeps the model's own coverage as ``coverage_model``."""
    from latentscale.fitting import LatentScalingModel
    from latentscale.prediction.predict import predict

    plan = largest_per_family(data, min_models) if holdout is None else named_holdout(data, holdout)
    train = data.subset(~data.frame.index.isin(plan.removed))
    if progress:
        progress(f"held out {len(plan.predicted)} models ({plan.rule}), {len(plan.removed)} rows removed; "
                 f"refitting K = {k} on {train.n_models} models")
    model = LatentScalingModel(k, anchors, **(fit_options or {}))
    fit = model.fit(train, progress=progress)
    held = data.frame.loc[list(plan.predicted)]
    # Only the identifying columns go to predict: the held-out scores never reach it.
    new = pd.DataFrame({"model": held.index, "family": held["family"].to_numpy(),
                        "size": held["size"].to_numpy(), "tokens": held["tokens"].to_numpy(),
                        **{c: held[c].to_numpy() for c in fit.spec.family_covariates}})
    if progress:
        progress(f"predicting {len(new)} held-out models")
    pred = predict(fit, new, levels, **(predict_options or {}))
    calibration = None
    if calibrate:
        from latentscale.evaluation.calibration import calibrate as learn

        if progress:
            progress("calibrating the intervals on the training rows (their families' largest models held out)")
        calibration = learn(train, k, anchors, levels=levels, fit_options=fit_options,
                            predict_options=predict_options, progress=progress)
        pred = calibration.apply(pred)
    actual = held[list(fit.spec.benchmarks)].stack(future_stack=True).rename("actual").rename_axis(["model", "benchmark"])
    pred = pred.join(actual, on=["model", "benchmark"])
    a = pred["actual"].to_numpy(dtype=float)
    present = ~np.isnan(a)
    a_clip = a.copy()
    a_clip[present] = clip_scores(a[present], fit.spec.clip) if fit.spec.clip else a[present]
    pred["actual"] = a_clip  # the model describes clipped scores

    def covered(lower: str, upper: str) -> np.ndarray:
        return np.where(present, (a_clip >= pred[lower]) & (a_clip <= pred[upper]), np.nan)

    pred["covered"] = covered("lower", "upper")
    pred["width"] = pred["upper"] - pred["lower"]
    if calibration is not None:
        pred["covered_model"] = covered("model_lower", "model_upper")
    pred, baselines_converged = _baseline_means(pred, train, new, fit, baselines)
    info = {"train_models": train.n_models, "train_families": train.n_families, "calibration": calibration,
            "baselines_converged": baselines_converged}
    return HoldoutResult(pred, plan, fit, tuple(float(x) for x in levels), info)


def _baseline_means(pred: pd.DataFrame, train: ScoreData, new: pd.DataFrame, fit, baselines
                    ) -> tuple[pd.DataFrame, dict]:
    """``mean_<baseline>`` columns: each baseline's predicted mean score of the held-out models,
    fitted on the rows the latent model was (with size and tokens); and whether each baseline's fit
    converged (None for one without an iterative optimizer)."""
    from latentscale.evaluation.baselines import make_baseline

    rows = train.frame[train.frame["size"].notna() & train.frame["tokens"].notna()]
    bench = list(fit.spec.benchmarks)
    converged = {}
    for name in baselines:
        method = make_baseline(name).fit(rows, bench, dict(zip(bench, fit.spec.floors)))
        means = pd.DataFrame(method.predict(new.set_index("model")), index=new["model"], columns=bench)
        pred[f"mean_{name}"] = means.stack().reindex(pd.MultiIndex.from_frame(pred[["model", "benchmark"]])).to_numpy()
        ok = getattr(method, "converged_", None)
        converged[name] = None if ok is None else bool(ok)
    return pred, converged