"""Choice of the number of latent skills K, and of the model variant, by AIC and BIC (SPEC §3).

Every K in the range, for every model variant asked for (:mod:`latentscale.model.variants`:
``plain``, ``hetero``, ``size-tokens``, ...), is fitted by the default estimator, in parallel
(joblib processes, or a Dask cluster), and tabulated one row each: log-likelihood, free parameters,
AIC, BIC (n = families), convergence and time.

Anchors for each K follow one documented rule: the first K entries of an anchor ranking,
which is the benchmark columns in data order unless the user gives a ranking (``anchors``) or
an explicit list per K (``anchors={4: [...], 5: [...]}``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from latentscale.errors import InputError
from latentscale.data.dataset import ScoreData
from latentscale.parallel import parallel_map

TABLE_COLUMNS = ["k", "variant", "log_likelihood", "n_params", "aic", "bic", "converged", "seconds", "anchors"]


def lowest_converged(criteria: Mapping[Any, tuple[float, bool]]):
    """The key whose criterion is lowest among the entries that converged (``{key: (value,
    converged)}``); among all of them when none converged. A fit stopped before a stationary point
    has a criterion that is not comparable, however low."""
    ok = {k: v for k, (v, c) in criteria.items() if c}
    pool = ok or {k: v for k, (v, _) in criteria.items()}
    return min(pool, key=pool.get)


def anchors_for(k: int, benchmarks: Sequence[str], anchors: Sequence[str] | Mapping[int, Sequence[str]] | None) -> list[str]:
    """The anchors of the K-skill model under the rule in the module docstring."""
    if isinstance(anchors, Mapping):
        if k in anchors:
            chosen = list(anchors[k])
            if len(chosen) != k:
                raise InputError(f"anchors for K = {k} name {len(chosen)} benchmarks; give exactly {k}")
            return chosen
        anchors = None
    ranking = list(benchmarks) if anchors is None else list(anchors)
    if len(ranking) < k:
        raise InputError(
            f"K = {k} needs {k} anchors but the ranking has {len(ranking)} ({', '.join(ranking)}); "
            f"give at least {k} benchmarks or lower the largest K"
        )
    return ranking[:k]


@dataclass
class SelectionResult:
    """One row per (K, variant), with the minima of AIC and BIC marked; the fits by (K, variant)
    (and by K alone when there is one variant)."""

    table: pd.DataFrame
    fits: dict = field(default_factory=dict)

    def _best_index(self, column: str):
        """Index of the lowest ``column`` among the converged rows (:func:`lowest_converged`)."""
        t = self.table
        return lowest_converged(dict(zip(t.index, zip(t[column], t["converged"].astype(bool)))))

    def _best_row(self, column: str) -> pd.Series:
        return self.table.loc[self._best_index(column)]

    @property
    def best_aic(self) -> int:
        """K of the row with the lowest AIC."""
        return int(self._best_row("aic")["k"])

    @property
    def best_bic(self) -> int:
        return int(self._best_row("bic")["k"])

    @property
    def best_aic_variant(self) -> str:
        """Variant of the row with the lowest AIC."""
        return str(self._best_row("aic")["variant"])

    @property
    def best_bic_variant(self) -> str:
        return str(self._best_row("bic")["variant"])

    def _marks(self) -> list[str]:
        a, b = self._best_index("aic"), self._best_index("bic")
        return [" ".join(m for m, ok in (("AIC", i == a), ("BIC", i == b)) if ok) for i in self.table.index]

    def weights(self) -> pd.DataFrame:
        """Per row: ``delta_aic`` and ``delta_bic`` (the criterion minus the lowest) and ``aic_weight``,
        ``bic_weight``: exp(−Δ/2) normalized over the rows, the Akaike weights (Burnham & Anderson
        2002, §2.9) and their BIC analogue, the approximate posterior probabilities of the rows' models
        under equal prior probabilities (Raftery 1995). Rows whose fit did not converge get NaN and
        are left out of the normalization, as their criteria are not comparable."""
        usable = self.table["converged"].astype(bool).to_numpy()
        out = pd.DataFrame(index=self.table.index)
        for name in ("aic", "bic"):
            values = self.table[name].to_numpy(dtype=float)
            delta = np.full(len(values), np.nan)
            weight = np.full(len(values), np.nan)
            if usable.any():
                delta[usable] = values[usable] - values[usable].min()
                raw = np.exp(-0.5 * delta[usable])
                weight[usable] = raw / raw.sum()
            out[f"delta_{name}"], out[f"{name}_weight"] = delta, weight
        return out[["delta_aic", "aic_weight", "delta_bic", "bic_weight"]]

    def to_records(self) -> list[dict]:
        rows = self.table[TABLE_COLUMNS].join(self.weights()).to_dict(orient="records")
        for r, mark in zip(rows, self._marks()):
            r["k"] = int(r["k"])
            r["n_params"] = int(r["n_params"])
            r["converged"] = bool(r["converged"])
            r["best_aic"] = "AIC" in mark
            r["best_bic"] = "BIC" in mark
        return rows

    def format(self) -> str:
        t = self.table.join(self.weights())
        t["min"] = self._marks()
        t["converged"] = ["yes" if c else "NO" for c in t["converged"]]
        cols = ["k", "variant", "log_likelihood", "n_params", "aic", "delta_aic", "aic_weight", "bic", "delta_bic",
                "bic_weight", "converged", "seconds", "min"]
        if t["variant"].nunique() == 1:
            cols.remove("variant")
        text = t[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}")
        text += ("\ndelta: the criterion minus the lowest; weight: exp(-delta/2) normalized over the rows (Akaike "
                 "weights; for BIC the approximate posterior probabilities of the models under equal priors)")
        if not self.table["converged"].all():
            text += ("\nNO in 'converged': that fit stopped before a stationary point; its criteria are not comparable "
                     "(no weight)")
        if self.table["variant"].map(lambda v: "power:" in str(v)).any():
            text += ("\npower:S variants are penalized fits: their log_likelihood is ℓ at the penalized optimum with "
                     "every parameter counted, so their AIC and BIC are conservative against unpenalized variants")
        return text

    def plot(self, path: str | Path | None = None):
        """AIC and BIC against K (minima marked): saved atomically to ``path`` (returned), or
        the matplotlib figure when no path is given."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        several = self.table["variant"].nunique() > 1
        for variant, rows in self.table.groupby("variant", sort=False):
            for col, marker in (("aic", "o"), ("bic", "s")):
                label = f"{col.upper()} {variant}" if several else col.upper()
                ax.plot(rows["k"], rows[col], marker=marker, label=label)
        for col in ("aic", "bic"):
            best = self._best_row(col)
            ax.scatter([best["k"]], [best[col]], s=120, facecolors="none", edgecolors="k", zorder=3)
        ax.set_xlabel("number of latent skills K")
        ax.set_ylabel("information criterion (lower is better)")
        ax.set_xticks(sorted(set(self.table["k"])))
        ax.legend()
        fig.tight_layout()
        if path is not None:
            from latentscale.results.io import atomic_write

            atomic_write(Path(path), fig.savefig)
            plt.close(fig)
            return Path(path)
        return fig


def _fit_one(data: ScoreData, k: int, variant: str, anchors: list[str], options: dict) -> dict:
    from latentscale.fitting import LatentScalingModel

    t0 = time.perf_counter()
    fit = LatentScalingModel(k, anchors, **options).fit(data)
    return {"k": k, "variant": variant, "fit": fit, "seconds": time.perf_counter() - t0}


def select_k(
    data: ScoreData,
    ks: Sequence[int] = range(1, 9),
    *,
    variants: Sequence[str] | None = None,
    anchors: Sequence[str] | Mapping[int, Sequence[str]] | None = None,
    n_jobs: int = 1,
    scheduler: str | Any | None = None,
    progress: Callable[[str], None] | None = None,
    **fit_options,
) -> SelectionResult:
    """Fit every K in ``ks`` for every variant and tabulate log-likelihood, parameters, AIC and BIC.

    ``variants``: names (:func:`~latentscale.model.variants.parse_variant`; default: the one model
    ``fit_options`` describe). ``fit_options`` go to :class:`~latentscale.fitting.LatentScalingModel`
    (method, clip, floors, points, n_starts, seed, ...); a variant's options override them.
    ``n_jobs``/``scheduler``: see :func:`latentscale.parallel.parallel_map`.
    """
    from latentscale.model.variants import parse_variant, variant_name

    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise InputError(f"K must be at least 1; got {ks}")
    if ks[-1] > len(data.benchmarks):
        raise InputError(f"K = {ks[-1]} exceeds the number of benchmarks ({len(data.benchmarks)})")
    names = [variant_name(fit_options)] if not variants else list(dict.fromkeys(variants))
    models = {v: {**fit_options, **parse_variant(v)} for v in names} if variants else {names[0]: dict(fit_options)}
    tasks = [(data, k, v, anchors_for(k, data.benchmarks, anchors), models[v]) for v in names for k in ks]

    def arrived(i, res):
        if progress is not None:
            f = res["fit"]
            label = f"K = {res['k']}" + (f", {res['variant']}" if len(names) > 1 else "")
            progress(f"{label}: log-likelihood {f.llf:.2f}, AIC {f.aic:.2f}, BIC {f.bic:.2f} "
                     f"({res['seconds']:.0f} s{'' if f.converged else ', NOT converged'})")

    # the largest K first (a fit's time grows with K: 7 s at K = 1, 23 s at K = 8 on lvf-paper), so that
    # no worker starts the longest fit when the others are about to run out of work
    order = sorted(range(len(tasks)), key=lambda i: -tasks[i][1])
    results = parallel_map(_fit_one, tasks, n_jobs=n_jobs, scheduler=scheduler, on_result=arrived, order=order)
    rows = [{
        "k": r["k"], "variant": r["variant"], "log_likelihood": r["fit"].llf, "n_params": r["fit"].n_params,
        "aic": r["fit"].aic, "bic": r["fit"].bic, "converged": r["fit"].converged, "seconds": r["seconds"],
        "anchors": ",".join(r["fit"].spec.anchors),
    } for r in results]
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    fits = {(r["k"], r["variant"]): r["fit"] for r in results}
    if len(names) == 1:
        fits.update({r["k"]: r["fit"] for r in results})
    return SelectionResult(table=table, fits=fits)
