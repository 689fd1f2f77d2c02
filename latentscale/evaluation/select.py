"""Choice of the number of latent skills K by AIC and BIC (SPEC §3).

Every K in the range is fitted by the default estimator, in parallel (joblib processes, or a
Dask cluster), and tabulated: log-likelihood, free parameters, AIC, BIC (n = families).

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

import pandas as pd

from latentscale.errors import InputError
from latentscale.data.dataset import ScoreData
from latentscale.parallel import parallel_map

TABLE_COLUMNS = ["k", "log_likelihood", "n_params", "aic", "bic", "converged", "seconds", "anchors"]


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
    """One row per K, with the minima of AIC and BIC marked; the fits themselves by K."""

    table: pd.DataFrame
    fits: dict[int, Any] = field(default_factory=dict)

    @property
    def best_aic(self) -> int:
        return int(self.table.loc[self.table["aic"].idxmin(), "k"])

    @property
    def best_bic(self) -> int:
        return int(self.table.loc[self.table["bic"].idxmin(), "k"])

    def to_records(self) -> list[dict]:
        rows = self.table[TABLE_COLUMNS].to_dict(orient="records")
        for r in rows:
            r["k"] = int(r["k"])
            r["n_params"] = int(r["n_params"])
            r["converged"] = bool(r["converged"])
            r["best_aic"] = r["k"] == self.best_aic
            r["best_bic"] = r["k"] == self.best_bic
        return rows

    def format(self) -> str:
        t = self.table.copy()
        t["min"] = [" ".join(m for m, ok in (("AIC", k == self.best_aic), ("BIC", k == self.best_bic)) if ok)
                    for k in t["k"]]
        show = t[["k", "log_likelihood", "n_params", "aic", "bic", "converged", "seconds", "min"]]
        return show.to_string(index=False, float_format=lambda v: f"{v:.2f}")

    def plot(self, path: str | Path | None = None):
        """AIC and BIC against K (minima marked): saved atomically to ``path`` (returned), or
        the matplotlib figure when no path is given."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for col, marker in (("aic", "o"), ("bic", "s")):
            ax.plot(self.table["k"], self.table[col], marker=marker, label=col.upper())
        ax.scatter([self.best_aic], [self.table["aic"].min()], s=120, facecolors="none", edgecolors="k", zorder=3)
        ax.scatter([self.best_bic], [self.table["bic"].min()], s=120, facecolors="none", edgecolors="k", zorder=3)
        ax.set_xlabel("number of latent skills K")
        ax.set_ylabel("information criterion (lower is better)")
        ax.set_xticks(list(self.table["k"]))
        ax.legend()
        fig.tight_layout()
        if path is not None:
            from latentscale.results.io import atomic_write

            atomic_write(Path(path), fig.savefig)
            plt.close(fig)
            return Path(path)
        return fig


def _fit_one(data: ScoreData, k: int, anchors: list[str], options: dict) -> dict:
    from latentscale.fitting import LatentScalingModel

    t0 = time.perf_counter()
    fit = LatentScalingModel(k, anchors, **options).fit(data)
    return {"k": k, "fit": fit, "seconds": time.perf_counter() - t0}


def select_k(
    data: ScoreData,
    ks: Sequence[int] = range(1, 9),
    *,
    anchors: Sequence[str] | Mapping[int, Sequence[str]] | None = None,
    n_jobs: int = 1,
    scheduler: str | Any | None = None,
    progress: Callable[[str], None] | None = None,
    **fit_options,
) -> SelectionResult:
    """Fit every K in ``ks`` and tabulate log-likelihood, parameters, AIC and BIC.

    ``fit_options`` go to :class:`~latentscale.fitting.LatentScalingModel` (method, clip,
    floors, points, n_starts, seed, ...). ``n_jobs``/``scheduler``: see
    :func:`latentscale.parallel.parallel_map`.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise InputError(f"K must be at least 1; got {ks}")
    if ks[-1] > len(data.benchmarks):
        raise InputError(f"K = {ks[-1]} exceeds the number of benchmarks ({len(data.benchmarks)})")
    tasks = [(data, k, anchors_for(k, data.benchmarks, anchors), dict(fit_options)) for k in ks]

    def arrived(i, res):
        if progress is not None:
            f = res["fit"]
            progress(f"K = {res['k']}: log-likelihood {f.llf:.2f}, AIC {f.aic:.2f}, BIC {f.bic:.2f} "
                     f"({res['seconds']:.0f} s)")

    results = parallel_map(_fit_one, tasks, n_jobs=n_jobs, scheduler=scheduler, on_result=arrived)
    rows = [{
        "k": r["k"], "log_likelihood": r["fit"].llf, "n_params": r["fit"].n_params, "aic": r["fit"].aic,
        "bic": r["fit"].bic, "converged": r["fit"].converged, "seconds": r["seconds"],
        "anchors": ",".join(r["fit"].spec.anchors),
    } for r in results]
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return SelectionResult(table=table, fits={r["k"]: r["fit"] for r in results})
