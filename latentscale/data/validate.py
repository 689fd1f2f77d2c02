"""Checks on a score table: clear errors that name rows and columns, and scale warnings.

Every loader (named datasets, files, in-memory frames) goes through :func:`validate_scores`.
Errors raise :class:`DataError`; recoverable issues (percent columns, rows without size or
tokens, rows that look like leaderboard-normalized scores) come back as warning messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from latentscale.data.floors import floors_for
from latentscale.errors import InputError

#: Scores below ``BELOW_FLOOR_RATIO * floor`` count as "clearly below the guessing floor".
BELOW_FLOOR_RATIO = 0.8
#: A row is flagged when this many floored benchmarks are clearly below their floors at once.
BELOW_FLOOR_MIN_COUNT = 2
#: Floors under this value are too low for the below-floor heuristic to say anything.
MIN_FLOOR_FOR_CHECK = 0.05


class DataError(InputError):
    """The score table cannot be used as given; the message says where and what to do."""


def name_rows(names: Iterable, limit: int = 10) -> str:
    """'a, b, c' or 'a, b, ... and N more' for error messages."""
    names = [str(n) for n in names]
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"


def _cells(mask: pd.Series, values: pd.Series | None = None, limit: int = 10) -> str:
    rows = mask[mask].index
    if values is None:
        return name_rows(rows, limit)
    return name_rows([f"{r} ({_plain(values[r])})" for r in rows], limit)


def _plain(x) -> str:
    """A cell's value as the user would write it (0.7026, not np.float64(0.7026))."""
    try:
        return f"{float(x):.6g}"
    except (TypeError, ValueError):
        return repr(x)


def check_columns(df: pd.DataFrame, required: dict[str, str | None]) -> None:
    """Raise if a required column (role -> column name) is missing, naming the columns present."""
    present = [repr(c) for c in df.columns]
    for role, col in required.items():
        if col is not None and col not in df.columns:
            raise DataError(
                f"no {role} column {col!r} in the data; columns present: {name_rows(present, 40)}. "
                f"Pass {role}='<column>' to name the right one."
            )


def check_models(models: pd.Series) -> pd.Index:
    """Model names as a unique string index; raise on empty or duplicate names."""
    missing = models.isna() | (models.astype("str").str.strip() == "")
    if missing.any():
        pos = [str(i) for i in np.flatnonzero(missing.to_numpy())]
        raise DataError(f"model name missing in rows at positions {name_rows(pos)}; every row needs a unique model name.")
    names = models.astype("str").str.strip()
    dup = names[names.duplicated(keep=False)]
    if len(dup):
        counts = dup.value_counts()
        listed = name_rows([f"{m} (x{n})" for m, n in counts.items()])
        raise DataError(
            f"duplicate model names: {listed}. Each row must be one model; "
            "rename or drop the duplicates (e.g. add a suffix) before loading."
        )
    return pd.Index(names.to_numpy(), name="model")


def check_family(frame: pd.DataFrame, column: str, role: str = "family") -> None:
    """Raise if a family (or group) cell is empty."""
    bad = frame[role].isna() | (frame[role].astype("str").str.strip() == "")
    if bad.any():
        raise DataError(
            f"{role} column {column!r} is empty for rows {_cells(bad)}; every model needs a {role}."
        )


def _to_numeric(values: pd.Series, column: str, what: str) -> pd.Series:
    """Numbers or NaN; raise naming the cells that are present but not numeric."""
    if pd.api.types.is_bool_dtype(values):
        raise DataError(f"{what} column {column!r} holds booleans, not numbers.")
    num = pd.to_numeric(values, errors="coerce")
    bad = num.isna() & values.notna()
    if bad.any():
        raise DataError(
            f"non-numeric {what} values in column {column!r} for rows {_cells(bad, values)}; "
            "fix or blank these cells (blank = missing)."
        )
    return num.astype(float)


def check_covariates(frame: pd.DataFrame, columns: dict[str, str | None], require: bool) -> list[str]:
    """Validate size/tokens in place (numbers > 0, NaN allowed unless ``require``); return warnings."""
    notes = []
    for role in ("size", "tokens"):
        col = columns.get(role) or role
        frame[role] = _to_numeric(frame[role], col, role)
        vals = frame[role]
        bad = vals.notna() & ~(vals > 0)
        if bad.any():
            raise DataError(
                f"{role} must be positive ({'billions of parameters' if role == 'size' else 'trillions of tokens'}); "
                f"column {col!r} has non-positive values for rows {_cells(bad, vals)}."
            )
        if np.isinf(vals.to_numpy()).any():
            raise DataError(f"{role} column {col!r} is infinite for rows {_cells(pd.Series(np.isinf(vals), vals.index))}.")
    missing = frame["size"].isna() | frame["tokens"].isna()
    if missing.any():
        which = ", ".join(r for r in ("size", "tokens") if frame[r].isna().any())
        if require:
            raise DataError(
                f"{which} missing for rows {_cells(missing)}; size and tokens are required here. "
                "Fill them in or drop these rows."
            )
        notes.append(
            f"{int(missing.sum())} rows have no {which} (kept; they cannot enter a fit until given): "
            f"{name_rows(missing[missing].index, 20)}"
        )
    return notes


def check_family_attribute(frame: pd.DataFrame, column: str) -> pd.Series:
    """A family attribute as numbers (true/false as 1/0): every row given, finite, and one value
    per family. Errors name the rows or the family and say what to do."""
    col = frame[column]
    if col.dtype == bool:
        return col.astype(float)
    text = col.astype(str).str.strip().str.lower()
    if not pd.api.types.is_numeric_dtype(col) and col.notna().any() and text[col.notna()].isin(["true", "false"]).all():
        values = pd.Series(np.where(col.isna(), np.nan, (text == "true").astype(float)), index=col.index)
    else:
        values = pd.to_numeric(col, errors="coerce")
    bad = values.isna() | np.isinf(values)
    if bad.any():
        raise DataError(f"family attribute column {column!r} is missing or not a number (or true/false) for rows "
                        f"{_cells(bad, col)}; give every model its family's value.")
    spread = values.groupby(frame["family"], sort=False).agg(["min", "max"])
    mixed = spread.index[spread["min"] != spread["max"]]
    if len(mixed):
        f = mixed[0]
        rows = frame.index[frame["family"] == f]
        shown = ", ".join(f"{r} ({col.loc[r]})" for r in rows[:6])
        raise DataError(f"family attribute column {column!r} differs within family {f!r}: {shown}"
                        f"{' and more' if len(rows) > 6 else ''}; it must be constant within a family "
                        f"({len(mixed)} famil{'y' if len(mixed) == 1 else 'ies'} affected: "
                        f"{name_rows(mixed)}). Split the family or fix the column.")
    return values.astype(float)


def resolve_floors(benchmarks: Sequence[str], user_floors: dict[str, float] | None) -> dict[str, float]:
    """Floor of every benchmark; raise naming those without a known or user-given floor."""
    floors, unknown = {}, []
    for b, c in zip(benchmarks, floors_for(benchmarks, user_floors)):
        if c is None:
            unknown.append(b)
            continue
        if not (0.0 <= c < 1.0):
            raise DataError(f"floor of benchmark {b!r} is {c}; a guessing floor must lie in [0, 1).")
        floors[b] = c
    if unknown:
        example = ", ".join(f"'{b}': 0.25" for b in unknown[:3])
        cli = " ".join(f"--floor {b}=0.25" for b in unknown[:3])
        raise DataError(
            f"no random-guess floor known for benchmark(s) {name_rows(unknown)}. "
            f"Give one (0 for free-form answers, 1/#choices for multiple choice): "
            f"floors={{{example}}} in Python, or `{cli}` on the command line."
        )
    return floors


def check_scores(frame: pd.DataFrame, benchmarks: Sequence[str], floors: dict[str, float] | None = None) -> list[str]:
    """Make benchmark columns numeric fractions in place; percent columns become fractions.

    A column whose observed scores all lie in [0, 100] with maximum above 1 is read as percent
    and divided by 100 (with a warning), unless it looks mixed: values in (0, 1] next to values
    above 1 where the guessing floor is at least 5 % (a percent score of at most 1 would sit far
    below chance), or where they are most of the nonzero scores. Mixed columns and any other
    value outside [0, 1] are errors.
    """
    floors = floors or {}
    cols = list(benchmarks)
    block = frame[cols]
    numeric = all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in block.dtypes)
    if numeric:
        Y = block.to_numpy(dtype=float, copy=True)
    else:
        Y = np.column_stack([_to_numeric(block[b], b, "score").to_numpy() for b in cols])
    filled = np.where(np.isnan(Y), 0.5, Y)
    fine = (~np.isnan(Y)).any(axis=0) & (filled >= 0).all(axis=0) & (filled <= 1).all(axis=0)
    notes = []
    for j in np.flatnonzero(~fine):  # only the columns that need a closer look
        vals, note = _score_column(cols[j], pd.Series(Y[:, j], index=frame.index), floors.get(cols[j], 0.0))
        Y[:, j] = vals.to_numpy()
        if note:
            notes.append(note)
    frame[cols] = pd.DataFrame(Y, index=frame.index, columns=cols)
    return notes


def _score_column(b: str, vals: pd.Series, floor: float) -> tuple[pd.Series, str | None]:
    """One benchmark column with a score outside [0, 1] or no score: converted from percent (with a
    note), or an error naming the cells."""
    obs = vals.dropna()
    if obs.empty:
        raise DataError(
            f"benchmark column {b!r} has no observed score; drop it from the benchmarks "
            "(benchmarks=[...] / --benchmarks) or fill it in."
        )
    if np.isinf(obs.to_numpy()).any():
        bad = pd.Series(np.isinf(vals.to_numpy()), index=vals.index)
        raise DataError(f"infinite scores in column {b!r} for rows {_cells(bad, vals)}.")
    small = vals.notna() & (vals > 0) & (vals <= 1)
    if obs.min() >= 0 and 1 < obs.max() <= 100 and small.any():
        nonzero = int((obs > 0).sum())
        if floor >= MIN_FLOOR_FOR_CHECK or small.sum() > nonzero / 2:
            big = vals.notna() & (vals > 1)
            if big.sum() < small.sum():  # a few cells above 1 among fractions: those are the culprits
                raise DataError(
                    f"column {b!r} holds fractions, but rows {_cells(big, vals)} exceed 1. Fix these cells "
                    "(a row in percent: divide its scores by 100)."
                )
            if small.sum() < big.sum():
                raise DataError(
                    f"column {b!r} holds percent scores, but rows {_cells(small, vals)} are at most 1 "
                    "(fractions?). Fix these cells (a row of fractions: multiply by 100)."
                )
            raise DataError(
                f"column {b!r} mixes fractions and percent: rows {_cells(small, vals)} are in (0, 1] while rows "
                f"{_cells(big, vals)} exceed 1. Put the whole column on one scale."
            )
    if obs.min() >= 0 and 1 < obs.max() <= 100:
        return vals / 100.0, f"benchmark {b!r} looks like percent (scores in [0, 100], max {obs.max():g}); divided by 100."
    bad = vals.notna() & ((vals < 0) | (vals > 1))
    raise DataError(
        f"scores outside [0, 1] in column {b!r} for rows {_cells(bad, vals)}. Scores must be fractions (a whole "
        "column in percent, 0-100, is converted automatically); fix these cells."
    )


def below_floor_rows(
    frame: pd.DataFrame,
    floors: dict[str, float],
    ratio: float = BELOW_FLOOR_RATIO,
    min_count: int = BELOW_FLOOR_MIN_COUNT,
) -> list[str]:
    """Rows that score clearly below the guessing floor on several benchmarks at once.

    Raw accuracies of weak models sit at or a little under chance (on the real data at least
    0.84 x floor), one benchmark at a time. Leaderboard-normalized scores map chance to 0, so a
    weak-to-middling model lands far under the floor on every near-chance benchmark (GPQA, MuSR,
    BBH) together. A row is flagged when at least ``min_count`` benchmarks with a floor of at
    least 0.05 have a score below ``ratio * floor``.
    """
    cols = [b for b, c in floors.items() if c >= MIN_FLOOR_FOR_CHECK and b in frame.columns]
    if len(cols) < min_count:
        return []
    y = frame[cols].to_numpy(dtype=float)
    c = np.array([floors[b] for b in cols])
    below = np.nan_to_num(y < ratio * c, nan=0).sum(axis=1)
    return [str(m) for m in frame.index[below >= min_count]]


def mixed_scale_message(rows: Sequence[str], floors: dict[str, float]) -> str:
    """Warning text for rows found by :func:`below_floor_rows`."""
    cols = ", ".join(b for b, c in floors.items() if c >= MIN_FLOOR_FOR_CHECK)
    return (
        f"{len(rows)} rows score below {BELOW_FLOOR_RATIO:g} x the guessing floor on at least "
        f"{BELOW_FLOOR_MIN_COUNT} benchmarks at once ({cols}); they look like leaderboard-normalized "
        "scores (chance mapped to 0) mixed with raw accuracies, and floors apply to raw accuracies only. "
        f"Convert them to raw accuracies or drop them before fitting: {name_rows(rows, 50)}"
    )
