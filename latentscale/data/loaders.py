"""Build a validated :class:`ScoreData` from a pandas frame or a CSV / Parquet file."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from latentscale.data import validate as v
from latentscale.data.dataset import ID_COLUMNS, ScoreData

#: Columns that are never benchmarks when ``benchmarks=None`` (matched case-insensitively).
_ID_LIKE = re.compile(r"^(unnamed(: ?\d+)?|index|flops|flops \(1e21\)|id|)$", re.IGNORECASE)


def _auto_benchmarks(df: pd.DataFrame, taken: set[str]) -> list[str]:
    """Numeric columns (or columns of mostly numeric text) that are not id columns."""
    out = []
    for col in df.columns:
        name = str(col)
        if col in taken or _ID_LIKE.match(name.strip()):
            continue
        s = df[col]
        if pd.api.types.is_bool_dtype(s):
            continue
        if pd.api.types.is_numeric_dtype(s):
            out.append(col)
            continue
        present = s.dropna()
        if len(present) and pd.to_numeric(present, errors="coerce").notna().mean() >= 0.5:
            out.append(col)  # mostly numbers: a score column with a few bad cells
    return out


def build_score_data(
    df: pd.DataFrame,
    *,
    model: str = "model",
    family: str = "family",
    group: str | None = None,
    size: str | None = "size",
    tokens: str | None = "tokens",
    benchmarks: Sequence[str] | None = None,
    floors: dict[str, float] | None = None,
    name: str = "custom",
    require_covariates: bool = False,
    notes: Sequence[str] = (),
    check_mixed: bool = True,
    attributes: Sequence[str] = (),
) -> ScoreData:
    """:func:`from_frame` plus loader-supplied ``notes`` and a switch for the mixed-scale check."""
    if model not in df.columns and df.index.name == model:
        df = df.reset_index()
    v.check_columns(df, {"model": model, "family": family, "group": group, "size": size, "tokens": tokens})
    taken = {c for c in (model, family, group, size, tokens) if c is not None}
    attributes = [str(a) for a in attributes]
    absent = [a for a in attributes if a not in df.columns]
    if absent:
        raise v.DataError(f"family attribute column(s) {v.name_rows(absent)} not in the data; columns present: "
                          f"{v.name_rows(map(repr, df.columns), 40)}.")
    taken |= set(attributes)
    if benchmarks is None:
        benchmarks = _auto_benchmarks(df, taken)
        if not benchmarks:
            raise v.DataError(
                f"no benchmark columns found (numeric columns besides the id columns); columns present: "
                f"{v.name_rows(map(repr, df.columns), 40)}. Pass benchmarks=[...]."
            )
    benchmarks = list(benchmarks)
    missing = [b for b in benchmarks if b not in df.columns]
    if missing:
        raise v.DataError(
            f"benchmark column(s) {v.name_rows(missing)} not in the data; columns present: "
            f"{v.name_rows(map(repr, df.columns), 40)}."
        )
    clash = [b for b in benchmarks if b in taken or b in ID_COLUMNS]
    if clash:
        raise v.DataError(f"column(s) {v.name_rows(clash)} cannot be both an id column and a benchmark.")
    if len(set(benchmarks)) != len(benchmarks):
        raise v.DataError(f"benchmarks listed twice: {v.name_rows(sorted({b for b in benchmarks if benchmarks.count(b) > 1}))}.")

    index = v.check_models(df[model])
    nan = np.full(len(df), np.nan)
    family_values = df[family].to_numpy()
    frame = pd.concat([  # all columns at once (a wide table stays one block, no fragmentation)
        pd.DataFrame({"family": family_values,
                      "group": df[group].to_numpy() if group is not None else family_values,
                      "size": df[size].to_numpy() if size is not None else nan,
                      "tokens": df[tokens].to_numpy() if tokens is not None else nan}, index=index),
        pd.DataFrame({a: df[a].to_numpy() for a in attributes}, index=index),
        pd.DataFrame(df[list(benchmarks)].to_numpy(), index=index, columns=list(benchmarks)),
    ], axis=1)

    v.check_family(frame, family, "family")
    frame["family"] = frame["family"].astype("str").str.strip()
    notes = list(notes)
    if group is not None:
        empty = frame["group"].isna()
        if empty.any():
            frame.loc[empty, "group"] = frame.loc[empty, "family"]
            notes.append(f"group column {group!r} empty for {int(empty.sum())} rows; their family is used as group: "
                         f"{v.name_rows(empty[empty].index)}")
        frame["group"] = frame["group"].astype("str").str.strip()
    notes += v.check_covariates(frame, {"size": size, "tokens": tokens}, require_covariates)
    for a in attributes:
        frame[a] = v.check_family_attribute(frame, a)
    resolved = v.resolve_floors(benchmarks, floors)
    notes += v.check_scores(frame, benchmarks, resolved)
    if check_mixed:
        rows = v.below_floor_rows(frame[benchmarks], resolved)
        if rows:
            notes.append(v.mixed_scale_message(rows, resolved))
    for note in notes:
        warnings.warn(f"{name}: {note}", UserWarning, stacklevel=3)
    return ScoreData(
        frame=frame,
        benchmarks=tuple(benchmarks),
        floors=resolved,
        name=name,
        warnings=tuple(notes),
        attributes=tuple(attributes),
    )


def from_frame(
    df: pd.DataFrame,
    *,
    model: str = "model",
    family: str = "family",
    group: str | None = None,
    size: str | None = "size",
    tokens: str | None = "tokens",
    benchmarks: Sequence[str] | None = None,
    floors: dict[str, float] | None = None,
    name: str = "custom",
    require_covariates: bool = False,
    attributes: Sequence[str] = (),
) -> ScoreData:
    """Validate a frame of scores (one row per model) into :class:`ScoreData`.

    Arguments name the columns; ``group=None`` uses the family as group, ``size``/``tokens``
    may be None when the data has none. ``benchmarks=None`` takes every remaining numeric column
    except id columns (flops, unnamed index columns). ``floors`` adds or overrides guessing
    floors. ``attributes``: columns constant within a family kept for use as family covariates
    (numbers or true/false). Problems raise :class:`DataError`; warnings are emitted and kept in
    ``.warnings``.
    """
    return build_score_data(
        df, model=model, family=family, group=group, size=size, tokens=tokens,
        benchmarks=benchmarks, floors=floors, name=name, require_covariates=require_covariates,
        attributes=attributes,
    )


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (also .csv.gz, .tsv) or Parquet file into a frame."""
    path = Path(path)
    if not path.is_file():
        raise v.DataError(f"no such file: {path}")
    suffixes = "".join(path.suffixes).lower()
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if ".tsv" in suffixes:
            return pd.read_csv(path, sep="\t")
        if ".csv" in suffixes or ".txt" in suffixes:
            return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise v.DataError(f"{path} is empty; give a table with a header line and one row per model") from None
    except UnicodeDecodeError as e:
        raise v.DataError(f"{path} is not UTF-8 text (byte {e.object[e.start]:#x} at position {e.start}); save it "
                          "as UTF-8 (for example from a spreadsheet: CSV UTF-8)") from None
    except (pd.errors.ParserError, ValueError, OSError) as e:
        if isinstance(e, OSError) and e.filename:  # the file itself: reported as such by the caller
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise v.DataError(f"{path} cannot be read as a table ({first}); is it a CSV / Parquet file?") from None
    raise v.DataError(f"unsupported file type {path.name!r}: use .csv, .csv.gz, .tsv or .parquet")


def read_scores(
    path: str | Path,
    *,
    model: str = "model",
    family: str = "family",
    group: str | None = None,
    size: str | None = "size",
    tokens: str | None = "tokens",
    benchmarks: Sequence[str] | None = None,
    floors: dict[str, float] | None = None,
    name: str | None = None,
    require_covariates: bool = False,
    attributes: Sequence[str] = (),
) -> ScoreData:
    """Read a CSV or Parquet score file and validate it like :func:`from_frame` (name: file stem)."""
    df = read_table(path)
    if df.empty:
        raise v.DataError(f"{path} has no rows (only a header); give one row per model")
    try:
        return build_score_data(
            df, model=model, family=family, group=group, size=size, tokens=tokens,
            benchmarks=benchmarks, floors=floors, name=name or Path(path).name.split(".")[0],
            require_covariates=require_covariates, attributes=attributes,
        )
    except v.DataError as e:
        raise v.DataError(f"{path}: {e}") from None
