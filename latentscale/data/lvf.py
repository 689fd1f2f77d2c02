"""Builders of the lvf datasets (arXiv:2512.06553 companion data) and their scale fix-up.

``df_full_v2.csv`` mixes raw v2 accuracies (rows from the Sloth table) with the leaderboard's
*normalized* scores divided by 100 (community fine-tunes added later). A v2 row is taken as
normalized when its score vector equals ``X / 100`` of a row of the leaderboard dump
``open-llm-leaderboard_new.csv`` (max abs difference <= 1e-6 over its observed benchmarks) and is
closer to that than to any ``X Raw`` vector. The matched dump row gives the raw accuracies used
by ``raw=True``. Rows that the generic below-floor check flags but that match no dump row are
reported too (and dropped by ``raw=True``, since they cannot be converted).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from latentscale.data.dataset import ScoreData
from latentscale.data.floors import floor_for
from latentscale.data.loaders import build_score_data
from latentscale.data.validate import below_floor_rows, name_rows

#: lvf v2 benchmark -> column of the leaderboard dump (normalized: ``X``, raw: ``X Raw``).
LEADERBOARD_COLUMNS: dict[str, str] = {
    "ifeval": "IFEval", "bbh": "BBH", "math": "MATH Lvl 5",
    "mmlu-pro": "MMLU-PRO", "gpqa": "GPQA", "musr": "MUSR",
}
V1_BENCHMARKS = ("arc", "hellaswag", "mmlu", "truthfulqa", "winogrande", "gsm8k")
V2_BENCHMARKS = tuple(LEADERBOARD_COLUMNS)
#: Paper order: the four anchors (MATH, IFEval, HellaSwag, BBH) first.
PAPER_BENCHMARKS = (
    "math", "ifeval", "hellaswag", "bbh",
    "gsm8k", "mmlu", "arc", "winogrande", "truthfulqa", "mmlu-pro", "gpqa", "musr",
)
KEYS = ["model", "family", "size", "tokens", "flops"]
MATCH_TOL = 1e-6


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, index_col=0)


def _dedupe(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Rename repeated model names to ``name#2``, ``name#3`` ...; return the renames."""
    df = df.copy()
    rank = df.groupby("model").cumcount()
    renamed = []
    for i in np.flatnonzero(rank.to_numpy() > 0):
        old = df["model"].iloc[i]
        new = f"{old}#{rank.iloc[i] + 1}"
        df.iloc[i, df.columns.get_loc("model")] = new
        renamed.append((old, new))
    return df, renamed


def match_leaderboard(v2: pd.DataFrame, board: pd.DataFrame, tol: float = MATCH_TOL) -> pd.DataFrame:
    """For each v2 row: ``normalized`` (bool), matched ``fullname`` and the raw scores of the match.

    Ties between several dump rows are broken by the model name (last part of the Hugging
    Face id, lower-cased); a row whose candidates still disagree on the raw scores keeps
    ``fullname`` = None (normalized but not convertible).
    """
    cols = list(LEADERBOARD_COLUMNS)
    x = v2[cols].to_numpy(dtype=float)
    norm = board[[LEADERBOARD_COLUMNS[b] for b in cols]].to_numpy(dtype=float) / 100.0
    raw = board[[LEADERBOARD_COLUMNS[b] + " Raw" for b in cols]].to_numpy(dtype=float)
    obs = ~np.isnan(x)

    def maxdiff(ref: np.ndarray) -> np.ndarray:
        d = np.abs(np.where(obs[:, None, :], x[:, None, :] - ref[None], 0.0))
        return np.nan_to_num(d, nan=np.inf).max(axis=2)

    dn, dr = maxdiff(norm), maxdiff(raw)
    tails = board["fullname"].astype("str").str.split("/").str[-1].str.lower().to_numpy()
    fullnames = board["fullname"].to_numpy(dtype=object)
    names = v2["model"].astype(str).to_numpy()
    normalized = np.zeros(len(v2), dtype=bool)
    matched = np.full(len(v2), None, dtype=object)
    scores = np.full((len(v2), len(cols)), np.nan)
    # the rows worth a look: three or more scores, a normalized candidate, closer to normalized than raw
    for i in np.flatnonzero((obs.sum(axis=1) >= 3) & (dn.min(axis=1) <= tol) & (dn.min(axis=1) < dr.min(axis=1))):
        cand = np.flatnonzero(dn[i] <= tol)
        normalized[i] = True
        named = cand[tails[cand] == names[i].split("#")[0].lower()]
        cand = named if len(named) else cand
        if np.allclose(raw[cand], raw[cand[0]], equal_nan=True):
            matched[i] = fullnames[cand[0]]
            scores[i] = raw[cand[0]]
    out = pd.DataFrame(scores.astype(object), index=v2.index, columns=cols)
    out.insert(0, "fullname", pd.Series(matched, index=v2.index, dtype=object))
    out.insert(0, "normalized", normalized)
    return out


def _prepare_v2(paths: dict[str, Path], raw: bool, floors: dict[str, float] | None):
    """v2 table with unique names, normalized rows flagged (or converted), and the notes."""
    v2, renamed = _dedupe(_read(paths["df_full_v2.csv"]))
    board = pd.read_csv(paths["open-llm-leaderboard_new.csv"])
    info = match_leaderboard(v2, board)
    notes = []
    if renamed:
        full = dict(zip(v2["model"], info["fullname"]))
        notes.append("df_full_v2.csv repeats model names; renamed to keep them apart: " + ", ".join(
            f"{old} -> {new} ({full.get(new) or 'unmatched'})" for old, new in renamed))
    models = v2["model"].to_numpy()
    normalized = info["normalized"].to_numpy(dtype=bool)
    convertible = normalized & info["fullname"].notna().to_numpy()
    floor_map = {b: floor_for(b, floors) for b in V2_BENCHMARKS}
    suspects = set(below_floor_rows(v2.set_index("model")[list(V2_BENCHMARKS)],
                                    {b: c for b, c in floor_map.items() if c is not None}))
    unmatched = [m for m, n in zip(models, normalized) if m in suspects and not n]
    flagged_not_suspect = [m for m, n in zip(models, normalized) if n and m not in suspects]
    if raw:
        cols = list(V2_BENCHMARKS)
        v2.loc[convertible, cols] = info.loc[convertible, cols].to_numpy(dtype=float)
        drop = (normalized & ~convertible) | np.isin(models, unmatched)
        v2 = v2.loc[~drop]
        notes.append(
            f"converted {int(convertible.sum())} rows of df_full_v2.csv from the leaderboard's normalized "
            f"v2 scores to raw accuracies (the 'X Raw' columns of open-llm-leaderboard_new.csv, matched "
            f"score for score); dropped {int(drop.sum())} rows that could not be matched"
            + (f": {name_rows(models[drop], 50)}" if drop.any() else "") + "."
        )
    else:
        notes.append(
            f"{int(normalized.sum())} rows of df_full_v2.csv hold the Open LLM Leaderboard's NORMALIZED v2 "
            "scores (chance mapped to 0, divided by 100), not raw accuracies: each equals a row of "
            "open-llm-leaderboard_new.csv score for score. Kept as published, so the guessing floors "
            "do not fit these rows; use 'lvf-paper-raw' for raw accuracies. Rows: "
            + ", ".join(models[normalized])
        )
        if unmatched:
            notes.append(
                f"{len(unmatched)} further v2 rows sit far below the guessing floors like normalized scores "
                f"but match no leaderboard row: {name_rows(unmatched, 50)}"
            )
    if flagged_not_suspect:
        notes.append(
            f"{len(flagged_not_suspect)} normalized rows are not caught by the generic below-floor check: "
            f"{name_rows(flagged_not_suspect, 50)}"
        )
    return v2, notes


def build_paper(paths: dict[str, Path], raw: bool = False, **options) -> ScoreData:
    """lvf-paper (``raw=False``) or lvf-paper-raw: outer join of the v1 and v2 tables."""
    v1 = _read(paths["df_full_v1.csv"])
    v2, notes = _prepare_v2(paths, raw, options.get("floors"))
    merged = v1.merge(v2, on=KEYS, how="outer")
    name = "lvf-paper-raw" if raw else "lvf-paper"
    return build_score_data(merged, benchmarks=PAPER_BENCHMARKS, name=name, notes=notes,
                            check_mixed=raw, **options)


def build_v1(paths: dict[str, Path], **options) -> ScoreData:
    """lvf-v1: df_full_v1.csv alone."""
    return build_score_data(_read(paths["df_full_v1.csv"]), benchmarks=V1_BENCHMARKS, name="lvf-v1", **options)


def build_v2(paths: dict[str, Path], **options) -> ScoreData:
    """lvf-v2: df_full_v2.csv alone, normalized rows flagged as in lvf-paper."""
    v2, notes = _prepare_v2(paths, False, options.get("floors"))
    return build_score_data(v2, benchmarks=V2_BENCHMARKS, name="lvf-v2", notes=notes,
                            check_mixed=False, **options)
