"""The validated score table every other layer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

#: Columns every ScoreData frame carries besides the benchmark columns.
ID_COLUMNS = ("family", "group", "size", "tokens")


@dataclass(frozen=True)
class ScoreData:
    """One row per model: family, group, size (B params), tokens (T), and scores in [0, 1].

    ``frame`` is indexed by the unique model name and has the columns ``family``,
    ``group`` (equal to ``family`` when the data has none), ``size``, ``tokens`` and one
    column per benchmark (NaN where missing). ``floors`` maps every benchmark to its
    random-guess floor. ``attributes`` names further columns the frame carries: family-level
    attributes (constant within a family, checked at load) that a model may use as family
    covariates (``LatentScalingModel(family_covariates=...)``). Build one with :func:`latentscale.data.load_dataset` or
    :func:`latentscale.data.from_frame`, which validate the input.
    """

    frame: pd.DataFrame
    benchmarks: tuple[str, ...]
    floors: dict[str, float]
    name: str = "custom"
    warnings: tuple[str, ...] = field(default=())
    attributes: tuple[str, ...] = field(default=())

    @property
    def models(self) -> pd.Index:
        return self.frame.index

    @property
    def n_models(self) -> int:
        return len(self.frame)

    @property
    def families(self) -> np.ndarray:
        """Family names in order of first appearance."""
        return pd.unique(self.frame["family"].to_numpy())

    @property
    def n_families(self) -> int:
        return int(self.frame["family"].nunique())

    def scores(self) -> np.ndarray:
        """(n_models, J) float array of scores, NaN where missing."""
        return self.frame[list(self.benchmarks)].to_numpy(dtype=float)

    def subset(self, rows) -> "ScoreData":
        """Rows selected by a boolean mask or a list of model names (benchmarks kept)."""
        frame = self.frame.loc[rows]
        return replace(self, frame=frame)

    def with_benchmarks(self, benchmarks) -> "ScoreData":
        """Keep only the given benchmarks, in the given order."""
        benchmarks = tuple(benchmarks)
        cols = list(ID_COLUMNS) + list(self.attributes) + list(benchmarks)
        return replace(
            self,
            frame=self.frame[cols],
            benchmarks=benchmarks,
            floors={b: self.floors[b] for b in benchmarks},
        )

    def describe(self) -> dict:
        """Summary as plain Python values: counts, floors, per-benchmark coverage, warnings."""
        f = self.frame
        bench = []
        for b in self.benchmarks:
            col = f[b].astype(float)
            obs = col.dropna()
            bench.append({
                "name": b,
                "floor": float(self.floors[b]),
                "observed": int(obs.size),
                "missing_fraction": float(1 - obs.size / len(f)) if len(f) else 0.0,
                "min": float(obs.min()) if obs.size else None,
                "mean": float(obs.mean()) if obs.size else None,
                "max": float(obs.max()) if obs.size else None,
            })
        no_size = f.index[f["size"].isna()].tolist()
        no_tokens = f.index[f["tokens"].isna()].tolist()
        return {
            "name": self.name,
            "rows": int(len(f)),
            "families": self.n_families,
            "groups": int(f["group"].nunique()),
            "benchmarks": bench,
            "complete_rows": int(f[list(self.benchmarks)].notna().all(axis=1).sum()),
            "rows_missing_size": [str(m) for m in no_size],
            "rows_missing_tokens": [str(m) for m in no_tokens],
            "warnings": list(self.warnings),
        }
