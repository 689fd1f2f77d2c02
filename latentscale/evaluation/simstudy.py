"""Simulation study of the estimator (SPEC §3): bias, RMSE, Wald coverage, and AIC's choice of K.

Each replication draws a data set from the model with known parameters, refits it with the
default estimator, and compares every reported quantity (the rows of
:meth:`~latentscale.results.fit_result.FitResult.params_table`: B on both scales, loadings,
intercepts, precisions, skill correlations) with the truth. Optionally it also fits other
values of K and records which one AIC (and BIC) prefers.

Design: the true parameters are drawn once (``param_seed``) and, by default, so is the design
(family sizes, model sizes and tokens, missing cells; ``design_seed``), while the family
effects and scores are redrawn in every replication (a fixed-design study). Every replication
then has the same shape, so the likelihood compiles once per worker process (and once in all
with JAX's disk cache), and the truth on the raw log scale is the same in every replication.
``fixed_design=False`` redraws the design too.

Scores and the likelihood: by default (``clip=None``) the simulated scores are left as drawn
and the fits clip only at 1e-12 from 0 and 1 (:data:`GUARD_CLIP`: a Beta draw can round to
exactly 0 or 1 in float64), so every fit is of a correctly specified model and the study
measures the estimator. ``clip=(0.001, 0.999)`` applies the reference analysis's clip to the
simulated scores and the fits instead, as the real-data fits do; where the model puts scores
beyond the clip (near-zero benchmarks) the Beta likelihood of the clipped scores is then
misspecified, which shows in the coverage of their precisions and in AIC's choice of K (see
docs/inference.md for both studies).

Replications run through :func:`latentscale.parallel.parallel_map` (joblib processes or Dask).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from latentscale.errors import InputError
from latentscale.evaluation.select import lowest_converged
from latentscale.model.spec import switches_of
from latentscale.parallel import parallel_map

BLOCKS = ("B", "B_raw", "loading", "intercept", "precision", "corr", "precision_slope", "residual_sd", "slope_sd", "ceiling", "link_power")
#: The fits' clip when the simulated scores are not clipped: it moves only scores that a Beta
#: draw rounded to exactly 0 or 1.
GUARD_CLIP = (1e-12, 1.0 - 1e-12)


@dataclass(frozen=True)
class StudyConfig:
    k: int = 3
    n_benchmarks: int = 8
    n_families: int = 300
    family_sizes: Any = "real"
    missing: Any = "real"
    level: float = 0.95
    compare_k: tuple[int, ...] = ()
    param_seed: int = 0
    design_seed: int = 0
    fixed_design: bool = True
    clip: tuple[float, float] | None = None
    logit_clip: float | None = None
    fit_options: dict = field(default_factory=dict)
    variant: str = "plain"
    compare_variants: tuple[str, ...] = ()
    profile_blocks: tuple[str, ...] = ()
    truth_ranges: tuple[tuple[str, float, float], ...] = ()  # (block, low, high): random_params' ranges

    def ranges(self) -> dict[str, tuple[float, float]]:
        """``truth_ranges`` as :func:`~latentscale.model.simulate.random_params` takes them."""
        return {name: (low, high) for name, low, high in self.truth_ranges}

    def model_options(self, variant: str | None = None) -> dict:
        """The model options of the true variant (or of ``variant``), with the study's logit clamp."""
        from latentscale.model.variants import parse_variant

        return {"logit_clip": self.logit_clip, **parse_variant(self.variant if variant is None else variant)}

    def fit_kwargs(self, variant: str | None = None) -> dict:
        """Options of every fit: the study's clip (see the module docstring), the variant's model
        options (the true one unless ``variant``), then ``fit_options``."""
        return {"clip": GUARD_CLIP if self.clip is None else tuple(self.clip), **self.model_options(variant),
                **self.fit_options}


def _truth_table(theta_true: np.ndarray, fit) -> pd.Series:
    """The true value of every row of ``fit.params_table()``."""
    from latentscale.results.inference import reported

    values, _, lab = reported(theta_true, fit.spec, fit.scaler)
    return pd.Series(values, index=pd.MultiIndex.from_frame(lab[["block", "row", "column"]]))


def _profile_coverage(fit, table: pd.DataFrame, truth: pd.Series, config: StudyConfig) -> tuple[np.ndarray, str]:
    """Whether the profile-likelihood interval of each row's parameter covers the truth (NaN for
    rows outside ``config.profile_blocks``, and for all when profiling found the fit short of its
    maximum), and how the profiling went: ``"ok"``, ``"unconverged"`` (a profile fit did not
    converge) or ``"above optimum"``."""
    from latentscale.results.profile import NotAtOptimumError

    out = np.full(len(table), np.nan)
    try:
        prof = fit.profile(list(config.profile_blocks), config.level)
    except NotAtOptimumError:
        return out, "above optimum"
    names = table["parameter"].to_numpy()
    for i, name in enumerate(names):
        if name in prof.index:
            out[i] = float(prof.at[name, "lower"] <= truth.iloc[i] <= prof.at[name, "upper"])
    return out, "ok" if bool(prof["converged"].all()) else "unconverged"


def run_replication(rep: int, config: StudyConfig) -> dict:
    """One replication: simulate, fit (the true K and any others), compare with the truth."""
    from latentscale.fitting import LatentScalingModel
    from latentscale.model.params import pack
    from latentscale.model.simulate import random_params, simulate, with_family_effects

    from latentscale.model.variants import extra_blocks

    t0 = time.perf_counter()
    options = config.model_options()
    true = random_params(config.k, config.n_benchmarks, seed=config.param_seed, extra_blocks=extra_blocks(options),
                         ranges=config.ranges())
    true = with_family_effects(true, len(options.get("family_covariates", ())), config.param_seed)
    design_seed = config.design_seed if config.fixed_design else 10_000 + rep
    data, true, spec = simulate(true, k=config.k, n_benchmarks=config.n_benchmarks, n_families=config.n_families,
                                family_sizes=config.family_sizes, missing=config.missing, seed=1 + rep,
                                design_seed=design_seed, clip=config.clip, logit_clip=options["logit_clip"],
                                family_covariates=options.get("family_covariates", ()),
                                **switches_of(options))
    fit = LatentScalingModel(config.k, **config.fit_kwargs()).fit(data)
    table = fit.params_table("observed", config.level)
    truth = _truth_table(pack(true, spec), fit).reindex(table.index)
    pct = f"{100 * config.level:g}"
    lo, hi = table[f"lower_{pct}"], table[f"upper_{pct}"]
    params = pd.DataFrame({
        "truth": truth, "estimate": table["estimate"], "se": table["se"],
        "covered": (lo <= truth) & (truth <= hi),
    }).reset_index()
    profile_status = None
    if config.profile_blocks:
        params["profile_covered"], profile_status = _profile_coverage(fit, table, truth, config)
    params["replication"] = rep
    criteria = {config.k: (fit.aic, fit.bic, fit.converged)}
    log_lik = {config.k: fit.log_likelihood}
    for k in config.compare_k:
        if k != config.k:
            other = LatentScalingModel(k, **config.fit_kwargs()).fit(data)
            criteria[k] = (other.aic, other.bic, other.converged)
            log_lik[k] = other.log_likelihood
    by_variant = {config.variant: (fit.aic, fit.bic, fit.converged)}
    for v in config.compare_variants:
        if v != config.variant:
            other = LatentScalingModel(config.k, **config.fit_kwargs(v)).fit(data)
            by_variant[v] = (other.aic, other.bic, other.converged)
    return {
        "replication": rep,
        "params": params,
        "converged": fit.converged,
        "aic_variant": lowest_converged({v: (a, ok) for v, (a, _, ok) in by_variant.items()})
        if config.compare_variants else None,
        "bic_variant": lowest_converged({v: (b, ok) for v, (_, b, ok) in by_variant.items()})
        if config.compare_variants else None,
        "hessian_pd": bool(fit.diagnostics.get("hessian_pd")),
        "profile_status": profile_status,
        "aic_k": lowest_converged({k: (a, ok) for k, (a, _, ok) in criteria.items()}) if config.compare_k else None,
        "bic_k": lowest_converged({k: (b, ok) for k, (_, b, ok) in criteria.items()}) if config.compare_k else None,
        "criteria": {int(k): v for k, v in criteria.items()},
        **{f"log_likelihood_k{k}": v for k, v in sorted(log_lik.items())},
        "seconds": time.perf_counter() - t0,
    }


def share_se(share, n):
    """Standard error of a share over ``n`` independent trials, sqrt(p (1 − p) / n) (elementwise)."""
    return np.sqrt(share * (1 - share) / n)


@dataclass
class StudyResult:
    config: StudyConfig
    params: pd.DataFrame  # one row per replication and parameter
    replications: pd.DataFrame  # one row per replication

    def by_block(self) -> pd.DataFrame:
        """Per block: parameters, replications, mean bias, RMSE, mean SE, SD of the estimates, coverage
        and its Monte Carlo standard error (``coverage_mcse``: the SD over replications of the share of
        the block's intervals that covered, over √R, so the dependence of one replication's intervals
        is counted; Morris, White & Crowther 2019)."""
        per_param = self.by_parameter()
        profile = {"profile_coverage": ("profile_coverage", "mean")} if self._profiled else {}
        out = per_param.groupby(level="block").agg(
            n_params=("bias", "size"), mean_abs_bias=("bias", lambda b: float(np.mean(np.abs(b)))),
            rmse=("rmse", lambda r: float(np.sqrt(np.mean(r**2)))), mean_se=("mean_se", "mean"),
            sd=("sd", "mean"), coverage=("coverage", "mean"), **profile)
        p = self.params[self.params["replication"].isin(self._usable())]
        share = p.groupby(["block", "replication"])["covered"].mean().groupby(level="block")
        out.insert(out.columns.get_loc("coverage") + 1, "coverage_mcse",
                   share.std(ddof=1) / np.sqrt(share.size()))
        out.insert(1, "replications", len(self._usable()))
        return out.reindex([b for b in BLOCKS if b in out.index] + [b for b in out.index if b not in BLOCKS])

    def by_parameter(self) -> pd.DataFrame:
        p = self.params[self.params["replication"].isin(self._usable())]
        p = p.assign(error=p["estimate"] - p["truth"])
        profile = {"profile_coverage": ("profile_covered", "mean")} if self._profiled else {}
        out = p.groupby(["block", "row", "column"]).agg(
            truth=("truth", "first"), mean_estimate=("estimate", "mean"), bias=("error", "mean"),
            rmse=("error", lambda e: float(np.sqrt(np.mean(e**2)))), mean_se=("se", "mean"),
            sd=("estimate", "std"), coverage=("covered", "mean"), replications=("covered", "size"), **profile)
        out.insert(out.columns.get_loc("coverage") + 1, "coverage_mcse",
                   share_se(out["coverage"], out["replications"]))
        return out.drop(columns="replications")

    @property
    def _profiled(self) -> bool:
        return "profile_covered" in self.params.columns

    def _usable(self) -> list[int]:
        r = self.replications
        return r.loc[r["converged"] & r["hessian_pd"], "replication"].tolist()

    def selection_rates(self) -> dict | None:
        """Share of replications in which AIC (BIC) picks each K (with ``compare_k``) and each
        variant (with ``compare_variants``), or None without either."""
        c, r = self.config, self.replications
        if not c.compare_k and not c.compare_variants:
            return None
        out = {}
        if c.compare_k:
            out.update({"aic": r["aic_k"].value_counts(normalize=True).sort_index().to_dict(),
                        "bic": r["bic_k"].value_counts(normalize=True).sort_index().to_dict(),
                        "aic_true_k": float((r["aic_k"] == c.k).mean()),
                        "bic_true_k": float((r["bic_k"] == c.k).mean())})
        if c.compare_variants:
            out.update({"aic_variants": r["aic_variant"].value_counts(normalize=True).to_dict(),
                        "bic_variants": r["bic_variant"].value_counts(normalize=True).to_dict(),
                        "aic_true_variant": float((r["aic_variant"] == c.variant).mean()),
                        "bic_true_variant": float((r["bic_variant"] == c.variant).mean())})
        return out

    def summary(self) -> str:
        c = self.config
        r = self.replications
        lines = [
            f"simulation study: K = {c.k}, variant {c.variant}, J = {c.n_benchmarks}, {c.n_families} families "
            f"(sizes {c.family_sizes}, missing {c.missing}, "
            f"{'scores unclipped' if c.clip is None else f'scores clipped to {list(c.clip)}'}), {len(r)} replications "
            f"({'fixed' if c.fixed_design else 'redrawn'} design){self._ranges_text()}; converged with a negative "
            f"definite Hessian: {len(self._usable())}",
            "",
            f"Per block (coverage of the nominal {100 * c.level:g} % Wald intervals"
            + (f"; profile_coverage: of the profile-likelihood intervals of {', '.join(c.profile_blocks)}"
               if self._profiled else "") + "):",
            self.by_block().to_string(float_format=lambda v: f"{v:.4f}"),
            self._coverage_line(),
        ]
        if self._profiled:
            n = r["profile_status"].value_counts()
            lines += ["", f"profile intervals: every profile fit converged in {n.get('ok', 0)} of {len(r)} replications, "
                          f"not every one in {n.get('unconverged', 0)}; in {n.get('above optimum', 0)} a profile point "
                          "lay above the fit's optimum (the fit short of its maximum: no profile coverage there)"]
        rates = self.selection_rates()
        if rates is not None and c.compare_k:
            lines += ["", f"AIC picks the true K = {c.k} in {100 * rates['aic_true_k']:.1f} % "
                          f"(MC SE {100 * self._share_mcse(rates['aic_true_k']):.1f}) of replications "
                          f"(BIC {100 * rates['bic_true_k']:.1f} %); AIC choices {rates['aic']}, BIC {rates['bic']}"]
        if rates is not None and c.compare_variants:
            lines += ["", f"AIC picks the true variant {c.variant} in {100 * rates['aic_true_variant']:.1f} % "
                          f"(MC SE {100 * self._share_mcse(rates['aic_true_variant']):.1f}) of "
                          f"replications (BIC {100 * rates['bic_true_variant']:.1f} %); AIC choices "
                          f"{rates['aic_variants']}, BIC {rates['bic_variants']}"]
        return "\n".join(lines)

    def _share_mcse(self, share: float) -> float:
        """Monte Carlo SE of a share of the replications."""
        return float(share_se(share, max(len(self.replications), 1)))

    def _coverage_line(self, z: float = 2.0) -> str:
        """The blocks whose Wald coverage lies more than ``z`` Monte Carlo SEs from the level. The SE is
        the block's ``coverage_mcse``, but no less than the level's own binomial SE with the block's
        intervals independent, sqrt(level (1 − level) / (R · parameters)): a block that covered in every
        replication has an empirical SE of 0 and is not, by that alone, off its level."""
        t, level = self.by_block(), self.config.level
        floor = share_se(level, (t["replications"] * t["n_params"]).clip(lower=1))
        off = t[(t["coverage"] - level).abs() > z * np.maximum(t["coverage_mcse"], floor)]
        head = f"coverage more than {z:g} Monte Carlo SE from {100 * level:g} %: "
        if off.empty:
            return head + "none"
        return head + ", ".join(f"{b} ({100 * r.coverage:.1f} ± {100 * r.coverage_mcse:.1f})" for b, r in off.iterrows())

    def _ranges_text(self) -> str:
        from latentscale.model.simulate import TRUTH_LAWS

        return "".join(f"; true {name} {TRUTH_LAWS[name][0]} on [{low:g}, {high:g}]"
                       for name, low, high in self.config.truth_ranges)

    def to_dict(self) -> dict:
        from latentscale.results.jsonable import to_json

        blocks = self.by_block().reset_index().to_dict(orient="records")
        return to_json({
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.config.__dict__.items()},
            "replications": int(len(self.replications)),
            "usable_replications": len(self._usable()),
            "blocks": blocks,
            "selection": self.selection_rates(),
            "seconds": float(self.replications["seconds"].sum()),
        })

    def plot(self, path: str | Path):
        """Coverage by block against the nominal level (bars ± 2 Monte Carlo SE), and RMSE by block;
        saved atomically."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        from latentscale.results.io import atomic_write

        t = self.by_block()
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        axes[0].bar(t.index, t["coverage"], yerr=2 * t["coverage_mcse"].fillna(0.0), capsize=3, color="tab:blue")
        axes[0].axhline(self.config.level, color="k", ls="--", lw=1)
        low = (t["coverage"] - 2 * t["coverage_mcse"].fillna(0.0)).min()
        axes[0].set_ylim(max(0.0, min(low, self.config.level) - 0.05), 1.0)
        axes[0].set_ylabel("coverage")
        axes[0].set_title(f"nominal {100 * self.config.level:g} % Wald intervals (± 2 MC SE)")
        axes[1].bar(t.index, t["rmse"], color="tab:orange")
        axes[1].set_ylabel("RMSE")
        axes[1].set_title("root mean squared error")
        for ax in axes:
            ax.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        atomic_write(Path(path), fig.savefig)
        plt.close(fig)
        return Path(path)


def _check_profile_blocks(config: StudyConfig) -> None:
    """``profile_blocks`` must be blocks of the true variant with one coordinate per parameter."""
    from latentscale.model.params import BLOCKS as REGISTRY
    from latentscale.model.params import CORE_BLOCKS
    from latentscale.model.variants import extra_blocks

    labels = [REGISTRY[n].label for n in CORE_BLOCKS + extra_blocks(config.model_options())]
    if config.k < 2:
        labels.remove("corr")
    for block in config.profile_blocks:
        if block not in labels:
            raise InputError(f"profile block {block!r} is not a parameter block of the {config.variant!r} model at "
                             f"K = {config.k}; its blocks are {', '.join(labels)}")
        if block == "corr" and config.k >= 3:
            raise InputError("the skill correlations at K >= 3 each depend on several coordinates and have no "
                             "one-coordinate profile; leave 'corr' out of the profile blocks")


def simulation_study(
    config: StudyConfig,
    replications: int = 200,
    *,
    n_jobs: int = 1,
    scheduler: Any = None,
    progress: Callable[[str], None] | None = None,
) -> StudyResult:
    """Run ``replications`` replications of :func:`run_replication` in parallel; see the module docstring."""
    if replications < 1:
        raise InputError(f"replications must be at least 1, got {replications}")
    if not 1 <= config.k <= config.n_benchmarks:
        raise InputError(f"need 1 <= k <= n_benchmarks, got k={config.k}, n_benchmarks={config.n_benchmarks}")
    for k in config.compare_k:
        if not 1 <= k <= config.n_benchmarks:
            raise InputError(f"compare_k: K = {k} is not between 1 and n_benchmarks = {config.n_benchmarks}")
    for v in (config.variant, *config.compare_variants):
        config.model_options(v)  # an unknown variant term is an error before any replication
    _check_profile_blocks(config)
    from latentscale.model.simulate import check_truth_ranges
    from latentscale.model.variants import extra_blocks

    check_truth_ranges(config.ranges(), extra_blocks(config.model_options()))
    t0 = time.perf_counter()
    done = [0]

    def arrived(i, res):
        done[0] += 1
        if progress is not None:
            progress(f"replication {done[0]}/{replications} done ({time.perf_counter() - t0:.0f} s)")

    results = parallel_map(run_replication, [(r, config) for r in range(replications)], n_jobs=n_jobs,
                           scheduler=scheduler, on_result=arrived)
    params = pd.concat([r["params"] for r in results], ignore_index=True)
    reps = pd.DataFrame([{k: v for k, v in r.items() if k not in ("params", "criteria")} for r in results])
    return StudyResult(config=config, params=params, replications=reps)


def rmse_by_families(config: StudyConfig, families: Sequence[int], replications: int, **kw) -> pd.DataFrame:
    """RMSE per block for several numbers of families (how the error shrinks with F)."""
    rows = []
    for F in families:
        res = simulation_study(StudyConfig(**{**config.__dict__, "n_families": int(F), "compare_k": ()}),
                               replications, **kw)
        t = res.by_block()
        rows.append(t["rmse"].rename(int(F)))
    return pd.DataFrame(rows).rename_axis("n_families")
