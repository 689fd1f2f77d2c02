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
    random-guess floor. Build one with :func:`latentscale.data.load_dataset` or
    :func:`latentscale.data.from_frame`, which validate the input.
    """

    frame: pd.DataFrame
    benchmarks: tuple[str, ...]
    floors: dict[str, float]
    name: str = "custom"
    warnings: tuple[str, ...] = field(default=())

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

    def floor_array(self) -> np.ndarray:
        return np.array([self.floors[b] for b in self.benchmarks], dtype=float)

    def subset(self, rows) -> "ScoreData":
        """Rows selected by a boolean mask or a list of model names (benchmarks kept)."""
        frame = self.frame.loc[rows]
        return replace(self, frame=frame)

    def with_benchmarks(self, benchmarks) -> "ScoreData":
        """Keep only the given benchmarks, in the given order."""
        benchmarks = tuple(benchmarks)
        cols = list(ID_COLUMNS) + list(benchmarks)
        return replace(
            self,
            frame=self.frame[cols],
            benchmarks=benchmarks,
            floors={b: self.floors[b] for b in benchmarks},
        )
