"""Validation of score tables: every error path names the rows and columns (synthetic data)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from latentscale.data import DataError, ScoreData, from_frame, load_dataset, read_scores
from latentscale.data.validate import below_floor_rows


def table(**overrides) -> pd.DataFrame:
    df = pd.DataFrame({
        "model": ["a-1b", "a-7b", "b-2b", "b-9b"],
        "family": ["a", "a", "b", "b"],
        "size": [1.0, 7.0, 2.0, 9.0],
        "tokens": [1.0, 2.0, 3.0, 4.0],
        "flops": [6.0, 84.0, 36.0, 216.0],
        "mmlu": [0.30, 0.55, 0.40, 0.62],
        "gpqa": [0.26, 0.30, 0.27, 0.33],
    })
    for k, v in overrides.items():
        df[k] = v
    return df


def write(tmp_path, df: pd.DataFrame, name: str = "scores.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_clean_csv_round_trip(tmp_path):
    path = write(tmp_path, table())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = read_scores(path)
    assert isinstance(data, ScoreData)
    assert data.benchmarks == ("mmlu", "gpqa")  # flops is an id column
    assert data.floors == {"mmlu": 0.25, "gpqa": 0.25}
    assert list(data.frame.columns) == ["family", "group", "size", "tokens", "mmlu", "gpqa"]
    assert data.frame.index.name == "model" and data.name == "scores"
    assert (data.frame["group"] == data.frame["family"]).all()
    assert data.warnings == ()


def test_parquet_and_unnamed_index(tmp_path):
    df = table()
    df.to_csv(tmp_path / "with_index.csv")  # writes an unnamed index column
    assert quiet(read_scores, tmp_path / "with_index.csv").benchmarks == ("mmlu", "gpqa")
    df.set_index("model").to_parquet(tmp_path / "s.parquet")
    data = quiet(load_dataset, tmp_path / "s.parquet")
    assert data.n_models == 4 and data.benchmarks == ("mmlu", "gpqa")


def test_family_column_missing_names_columns(tmp_path):
    path = write(tmp_path, table().rename(columns={"family": "fam"}))
    with pytest.raises(DataError, match="family") as e:
        read_scores(path)
    assert "'fam'" in str(e.value) and "'mmlu'" in str(e.value)
    assert quiet(read_scores, path, family="fam").n_families == 2


def test_duplicate_models(tmp_path):
    path = write(tmp_path, table(model=["a-1b", "a-7b", "a-7b", "b-9b"]))
    with pytest.raises(DataError, match="duplicate") as e:
        read_scores(path)
    assert "a-7b" in str(e.value) and "b-9b" not in str(e.value)


@pytest.mark.parametrize("column", ["size", "tokens"])
def test_non_positive_covariates(tmp_path, column):
    df = table()
    df.loc[2, column] = 0.0
    df.loc[3, column] = -1.0
    with pytest.raises(DataError, match=column) as e:
        read_scores(write(tmp_path, df))
    assert "b-2b" in str(e.value) and "b-9b" in str(e.value) and "a-1b" not in str(e.value)


def test_missing_covariates_warn_or_raise(tmp_path):
    df = table()
    df.loc[1, "tokens"] = np.nan
    path = write(tmp_path, df)
    with pytest.warns(UserWarning, match="a-7b"):
        data = read_scores(path)
    assert np.isnan(data.frame.loc["a-7b", "tokens"])
    assert any("tokens" in w and "a-7b" in w for w in data.warnings)
    with pytest.raises(DataError, match="tokens") as e:
        read_scores(path, require_covariates=True)
    assert "a-7b" in str(e.value)


def test_benchmark_without_scores(tmp_path):
    path = write(tmp_path, table(gpqa=[np.nan] * 4))
    with pytest.raises(DataError, match="'gpqa'.*no observed score"):
        read_scores(path, benchmarks=["mmlu", "gpqa"])


def test_unknown_benchmark_needs_floor(tmp_path):
    path = write(tmp_path, table(mybench=[0.1, 0.2, 0.3, 0.4]))
    with pytest.raises(DataError, match="mybench") as e:
        read_scores(path)
    msg = str(e.value)
    assert "floors={'mybench'" in msg and "--floor mybench=" in msg
    data = quiet(read_scores, path, floors={"mybench": 0.2})
    assert data.floors["mybench"] == 0.2


def test_percent_column_converted(tmp_path):
    path = write(tmp_path, table(mmlu=[30.0, 55.0, 40.0, 62.0]))
    with pytest.warns(UserWarning, match="'mmlu'.*percent"):
        data = read_scores(path)
    assert np.allclose(data.frame["mmlu"], [0.30, 0.55, 0.40, 0.62])
    assert np.allclose(data.frame["gpqa"], [0.26, 0.30, 0.27, 0.33])


def test_negative_score_is_error(tmp_path):
    path = write(tmp_path, table(gpqa=[0.26, -0.1, 0.27, 0.33]))
    with pytest.raises(DataError, match="outside") as e:
        read_scores(path)
    assert "'gpqa'" in str(e.value) and "a-7b" in str(e.value) and "b-2b" not in str(e.value)


def test_mixed_fraction_and_percent_is_error(tmp_path):
    path = write(tmp_path, table(mmlu=[0.30, 0.55, 40.0, 62.0]))
    with pytest.raises(DataError, match="mixes fractions and percent") as e:
        read_scores(path)
    assert "'mmlu'" in str(e.value) and "a-1b (0.3)" in str(e.value) and "b-2b (40)" in str(e.value)
    # one cell off among many: only that cell is named, with its plain value
    path = write(tmp_path, table(mmlu=[0.30, 0.55, 0.40, 62.5]))
    with pytest.raises(DataError, match="holds fractions, but rows") as e:
        read_scores(path)
    assert "(62.5)" in str(e.value) and "(0.3)" not in str(e.value) and "np.float64" not in str(e.value)
    path = write(tmp_path, table(mmlu=[30.0, 55.0, 0.4, 62.5]))
    with pytest.raises(DataError, match="holds percent scores, but rows") as e:
        read_scores(path)
    assert "(0.4)" in str(e.value) and "(30)" not in str(e.value)


def test_above_100_is_error(tmp_path):
    path = write(tmp_path, table(mmlu=[30.0, 155.0, 40.0, 62.0]))
    with pytest.raises(DataError, match="outside") as e:
        read_scores(path)
    assert "'mmlu'" in str(e.value) and "a-7b" in str(e.value)


def test_non_numeric_score_cell(tmp_path):
    path = write(tmp_path, table(gpqa=["0.26", "0.30", "n/a?", "0.33"]))
    for kwargs in ({}, {"benchmarks": ["mmlu", "gpqa"]}):
        with pytest.raises(DataError, match="non-numeric") as e:
            read_scores(path, **kwargs)
        assert "'gpqa'" in str(e.value) and "b-2b" in str(e.value) and "n/a?" in str(e.value)


def test_error_lists_at_most_ten_rows():
    df = pd.DataFrame({"model": [f"m{i}" for i in range(15)], "family": "f", "size": 1.0,
                       "tokens": 1.0, "mmlu": [-0.5] * 15})
    with pytest.raises(DataError, match="and 5 more"):
        from_frame(df)


def test_mixed_raw_and_normalized_rows_are_flagged():
    # raw rows sit at or a little under chance on one benchmark; normalized rows far under on several
    df = pd.DataFrame({
        "model": ["raw-1", "raw-2", "raw-3", "norm-1", "norm-2"],
        "family": ["r", "r", "r", "n1", "n2"],
        "size": 1.0, "tokens": 1.0,
        "BBH": [0.30, 0.29, 0.45, 0.05, 0.20],
        "GPQA": [0.23, 0.26, 0.30, 0.02, 0.06],
        "MUSR": [0.35, 0.33, 0.40, 0.04, 0.10],
        "MMLU-PRO": [0.11, 0.12, 0.30, 0.02, 0.25],
        "IFEval": [0.1, 0.2, 0.5, 0.3, 0.6],
    })
    with pytest.warns(UserWarning, match="normalized") as rec:
        data = from_frame(df)
    msg = [str(w.message) for w in rec if "normalized" in str(w.message)][0]
    assert "norm-1" in msg and "norm-2" in msg and "raw-" not in msg
    assert below_floor_rows(data.frame, data.floors) == ["norm-1", "norm-2"]
    assert any("norm-1" in w for w in data.warnings)


def test_group_and_missing_size_column():
    df = table(grp=["g", "g", "g", "h"]).drop(columns=["size"])
    data = quiet(from_frame, df, group="grp", size=None)
    assert list(data.frame["group"]) == ["g", "g", "g", "h"]
    assert data.frame["size"].isna().all()
    with pytest.raises(DataError, match="size"):
        from_frame(df, size=None, require_covariates=True)


def test_describe():
    df = table(mmlu=[0.30, np.nan, 0.40, 0.62])
    df.loc[0, "size"] = np.nan
    data = quiet(from_frame, df, name="toy")
    d = data.describe()
    assert d["name"] == "toy" and d["rows"] == 4 and d["families"] == 2 and d["groups"] == 2
    mmlu = d["benchmarks"][0]
    assert mmlu["name"] == "mmlu" and mmlu["floor"] == 0.25 and mmlu["observed"] == 3
    assert mmlu["missing_fraction"] == pytest.approx(0.25)
    assert mmlu["min"] == pytest.approx(0.30) and mmlu["max"] == pytest.approx(0.62)
    assert mmlu["mean"] == pytest.approx(np.mean([0.30, 0.40, 0.62]))
    assert d["rows_missing_size"] == ["a-1b"] and d["rows_missing_tokens"] == []
    assert len(d["warnings"]) == 1 and "a-1b" in d["warnings"][0]
