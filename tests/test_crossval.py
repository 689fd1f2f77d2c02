"""Leave-family-group-out protocol: complete cases and the n + 1 rule, the split (n smallest per held-out
family to training), no test score reaching any fit, group files, averaging, errors, parallel runs."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from latentscale.data import DataError, from_frame
from latentscale.errors import InputError
from latentscale.evaluation.crossval import (
    ERROR_COLUMNS, METHODS, FamilyGroupResult, complete_cases, family_group_cv, load_groups, split_folds,
)

BENCH = ["b0", "b1", "b2", "b3"]


def make_data(seed=0, n_families=14, per_family=4):
    """Families f0..f{F-1} (groups of two families: g0 = f0, f1, ...), sizes increasing within a family
    in a shuffled row order, scores from a smooth law plus noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(n_families):
        skill = rng.normal(0, 0.5)
        for i in rng.permutation(per_family):
            size = 0.5 * 2.0 ** i * (1 + 0.1 * f)
            tokens = 0.3 * (1 + i) * (1 + 0.05 * f)
            x = np.log(size) + 0.5 * np.log(tokens) + skill
            rows.append({"model": f"f{f}-m{i}", "family": f"f{f}", "group": f"g{f // 2}", "size": size,
                         "tokens": tokens, **{b: float(np.clip(0.25 + 0.7 / (1 + np.exp(-(0.6 * x - 0.3 * j)))
                                                               + rng.normal(0, 0.01), 0.01, 0.99))
                                              for j, b in enumerate(BENCH)}})
    df = pd.DataFrame(rows)
    return from_frame(df, group="group", benchmarks=BENCH, floors={b: 0.25 for b in BENCH})


FAST = ["flops-global", "flops-family", "size-tokens-family", "pca-flops", "sloth-basic-d1"]


def test_complete_cases_and_family_rule():
    data = make_data()
    frame = data.frame.copy()
    frame.loc["f0-m0", "b2"] = np.nan  # f0 keeps 3 complete rows
    frame.loc[["f1-m0", "f1-m1", "f1-m2"], "b1"] = np.nan  # f1 keeps 1 complete row
    data = type(data)(frame=frame, benchmarks=data.benchmarks, floors=data.floors)
    rows, dropped = complete_cases(data, BENCH, 1)
    assert "f0-m0" not in rows.index and dropped == ["f1"]
    rows2, dropped2 = complete_cases(data, BENCH, 3)
    assert "f0" in dropped2 and "f1" in dropped2 and "f2" not in dropped2
    assert rows2["family"].value_counts().min() >= 4


@pytest.mark.parametrize("n", [1, 2])
def test_split_puts_the_n_smallest_of_each_held_out_family_in_training(n):
    data = make_data()
    rows, _ = complete_cases(data, BENCH, n)
    folds = split_folds(rows, [["f3", "f4"], ["f7"]], n)
    for fold in folds:
        assert set(fold.train) | set(fold.test) == set(rows.index) and not set(fold.train) & set(fold.test)
        for fam in fold.families:
            fam_rows = rows[rows["family"] == fam].sort_values("size")
            assert set(fam_rows.index[:n]) <= set(fold.train)
            assert set(fam_rows.index[n:]) == {m for m in fold.test if rows.loc[m, "family"] == fam}
        # every other family is entirely in training
        assert set(rows.loc[list(fold.test), "family"]) == set(fold.families)


@pytest.mark.slow
def test_no_test_score_reaches_any_fit():
    """Poison one fold's test scores (valid values, so complete cases do not change): that fold's
    predictions stay exactly the same for every method, although the scored actuals change."""
    data = make_data(seed=1, n_families=10)
    groups = [["f2", "f3"], ["f8"]]
    methods = FAST + ["sloth-basic-d2", "latent-k1"]
    run = lambda d, ms=methods: family_group_cv(d, benchmarks="all", n_train=1, methods=ms, groups=groups)
    key = ["method", "model", "benchmark"]
    base = run(data)
    assert set(base.errors.columns) == set(ERROR_COLUMNS)
    rng = np.random.default_rng(5)
    for fold in (0, 1):
        test_models = base.errors.loc[base.errors["fold"] == fold, "model"].unique()
        frame = data.frame.copy()
        frame.loc[test_models, BENCH] = rng.uniform(0.26, 0.99, (len(test_models), len(BENCH)))
        poisoned = run(type(data)(frame=frame, benchmarks=data.benchmarks, floors=data.floors))
        a = base.errors[base.errors["fold"] == fold].sort_values(key).reset_index(drop=True)
        b = poisoned.errors[poisoned.errors["fold"] == fold].sort_values(key).reset_index(drop=True)
        assert np.array_equal(a["model"], b["model"])
        assert np.allclose(a["predicted"], b["predicted"], rtol=0, atol=1e-12)
        assert not np.allclose(a["actual"], b["actual"])
    # the family posterior does use the held-out family's training row: poisoning it moves the predictions
    frame2 = data.frame.copy()
    frame2.loc["f2-m0", BENCH] = 0.99  # f2's smallest model
    moved = run(type(data)(frame=frame2, benchmarks=data.benchmarks, floors=data.floors), ["latent-k1"])
    f2 = lambda r: r.errors[(r.errors["family"] == "f2") & (r.errors["method"] == "latent-k1")]["predicted"].to_numpy()
    assert np.abs(f2(moved) - f2(base)).max() > 0.01


def test_summary_averages_over_models_in_a_group_then_over_groups():
    errors = pd.DataFrame({
        "method": "m", "fold": [0, 0, 1], "group": ["A", "A", "B"], "family": ["a", "a", "b"],
        "model": ["a1", "a2", "b1"], "benchmark": "x", "predicted": 0.0, "actual": [0.1, 0.3, 0.5],
        "abs_error": [0.1, 0.3, 0.5]})
    errors = pd.concat([errors, errors.assign(benchmark="y", abs_error=[0.0, 0.0, 0.1])], ignore_index=True)
    r = FamilyGroupResult(errors=errors, benchmarks=("x", "y"), methods=("m",))
    s = r.summary().set_index("benchmark")["mae_pp"]
    assert s["x"] == pytest.approx(35.0)  # (mean(10, 30) + 50) / 2, not the model mean 30
    assert s["y"] == pytest.approx(5.0)
    assert s["average"] == pytest.approx(20.0)
    assert list(r.table().columns) == ["x", "y", "average"]
    assert r.to_records()[-1] == {"method": "m", "benchmark": "average", "mae_pp": pytest.approx(20.0)}
    assert "m" in r.format()


def test_group_files_and_default_groups(tmp_path):
    nested = {"description": "test", "groups": {"1": {"v1": [["x"]], "all": [["f1"], ["f4", "f5"]]},
                                                "2": {"all": [["f6"]]}}}
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(nested))
    assert load_groups(path, "all", 1) == [["f1"], ["f4", "f5"]]
    assert load_groups(path, "all", 2) == [["f6"]]
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps([["f1", "f2"]]))
    assert load_groups(plain, "v2", 1) == [["f1", "f2"]]
    with pytest.raises(DataError, match="no groups for n = 2, benchmark set 'v1'"):
        load_groups(path, "v1", 2)
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(DataError, match="lists of family names"):
        load_groups(bad, "all", 1)
    data = make_data(seed=2)
    r = family_group_cv(data, benchmarks="all", n_train=1, methods=["flops-family"], groups=path)
    assert sorted(r.folds["families"]) == ["f1", "f4,f5"]
    default = family_group_cv(data, benchmarks="all", n_train=2, methods=["flops-global"])
    assert len(default.folds) == 7  # every data group (two families each) held out once
    assert set(default.errors["family"]) == {f"f{i}" for i in range(14)}
    assert (default.errors.groupby("family")["model"].nunique() == 2).all()  # 4 rows, 2 kept


def test_errors_name_what_is_wrong():
    data = make_data()
    with pytest.raises(DataError, match="f99"):
        family_group_cv(data, methods=["flops-global"], groups=[["f1", "f99"]])
    with pytest.raises(ValueError, match="unknown method"):
        family_group_cv(data, methods=["lasso"], groups=[["f1"]])
    with pytest.raises(ValueError, match="unknown benchmark set"):
        family_group_cv(data, benchmarks="v3", methods=["flops-global"], groups=[["f1"]])
    with pytest.raises(DataError, match="needs column"):
        family_group_cv(data, benchmarks="v1", methods=["flops-global"], groups=[["f1"]])
    with pytest.raises(ValueError, match="n_train"):
        family_group_cv(data, n_train=-1, methods=["flops-global"])
    with pytest.raises(DataError, match="held out in one group only"):
        family_group_cv(data, methods=["flops-global"], groups=[["f1"], ["f1", "f2"]])
    with pytest.raises(DataError, match="no family has 9 or more rows"):
        family_group_cv(data, n_train=8, methods=["flops-global"])
    assert METHODS[-1] == "latent-auto" and "sloth-basic-d3" in METHODS
    with pytest.raises(ValueError, match="bad latent method"):
        family_group_cv(data, methods=["latent-kx"], groups=[["f1"]])
    with pytest.raises(ValueError, match="unknown variant term"):
        family_group_cv(data, methods=["latent-k1:nosuch"], groups=[["f1"]])


def test_parallel_gives_the_same_errors():
    data = make_data(seed=3)
    groups = [["f0"], ["f5"], ["f9", "f10"]]
    serial = family_group_cv(data, methods=FAST, groups=groups, n_jobs=1)
    parallel = family_group_cv(data, methods=FAST, groups=groups, n_jobs=2)
    pd.testing.assert_frame_equal(serial.errors, parallel.errors)


DATA_DIR = os.environ.get("LATENTSCALE_DATA_DIR")
GROUPS = Path(DATA_DIR or ".").parent / "protocols" / "sloth_heldout_groups.json"


@pytest.mark.integration
@pytest.mark.skipif(not DATA_DIR or not GROUPS.is_file(), reason="needs LATENTSCALE_DATA_DIR and the protocols folder")
@pytest.mark.parametrize("benchmarks, n, n_groups", [("v1", 1, 19), ("v2", 1, 12), ("all", 1, 11),
                                                     ("v1", 2, 15), ("v2", 2, 9), ("all", 2, 7)])
def test_sloth_groups_resolve_on_the_real_data(benchmarks, n, n_groups):
    import warnings

    from latentscale.data import load_dataset
    from latentscale.evaluation.crossval import benchmark_set, resolve_groups

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_dataset("sloth")
    cols = benchmark_set(data, benchmarks)
    rows, dropped = complete_cases(data, cols, n)
    groups, notes = resolve_groups(data, rows, load_groups(GROUPS, benchmarks, n), dropped)
    folds = split_folds(rows, groups, n)
    assert len(folds) == n_groups and not notes
    assert all(f.test for f in folds)


def test_published_results_are_aggregated_like_ours_and_matched_by_cases():
    """The peer's stored errors, aggregated as our tables (fold means, then the mean over folds);
    attached only when its test cases are ours."""
    from latentscale.evaluation.published import check_same_cases, published_table

    rng = np.random.default_rng(0)
    rows = []
    for fold, models in enumerate([["a1", "a2"], ["b1"]]):
        for m in models:
            for b in ("MMLU", "ARC"):
                rows.append({"exp": 0, "n_train_models": 1, "fold": fold, "model": m, "benchmark": b,
                             "method": "factor_trainlink_faminter_d=2", "abs_error": rng.uniform(0, 0.1)})
    errors = pd.DataFrame(rows)
    t = published_table("v1", 1, errors)
    assert list(t.index) == ["sloth-published-d2"]
    e = errors.set_index(["fold", "model", "benchmark"])["abs_error"]
    mmlu = (np.mean([e[0, "a1", "MMLU"], e[0, "a2", "MMLU"]]) + e[1, "b1", "MMLU"]) / 2 * 100
    assert t.loc["sloth-published-d2", "MMLU"] == pytest.approx(mmlu)
    assert t.loc["sloth-published-d2", "average"] == pytest.approx(t[["ARC", "MMLU"]].mean(axis=1).iloc[0])
    ours = FamilyGroupResult(errors=pd.DataFrame({"fold": [0, 0, 1], "model": ["a1", "a2", "b1"]}),
                             benchmarks=("MMLU", "ARC"), methods=("x",), benchmark_set="v1", n_train=1)
    assert check_same_cases(ours, errors) == []
    ours.errors = pd.DataFrame({"fold": [0, 1], "model": ["a1", "b1"]})
    assert check_same_cases(ours, errors)
    ours.add_published(errors)
    assert ours.published is None and "published results not shown" in ours.notes[-1]


def test_margins_are_t_intervals_over_groups_with_the_published_methods_paired():
    """The margin of every method over the reference is the difference of the tables' averages, with
    Student's t-interval over the groups' own differences; the published method's errors are matched
    to our folds by test model (its fold labels differ); an unknown reference is an error."""
    from scipy.stats import ttest_1samp

    rng = np.random.default_rng(1)
    ours, theirs = [], []
    for fold in range(6):
        for m in (f"f{fold}a", f"f{fold}b"):
            for b in ("MMLU", "ARC"):
                for method, scale in (("best", 0.03), ("other", 0.05)):
                    ours.append({"method": method, "fold": fold, "model": m, "benchmark": b,
                                 "abs_error": rng.uniform(0, scale)})
                theirs.append({"exp": 0, "n_train_models": 1, "fold": 100 + fold, "model": m, "benchmark": b,
                               "method": "factor_trainlink_faminter_d=2", "abs_error": rng.uniform(0, 0.04)})
    r = FamilyGroupResult(errors=pd.DataFrame(ours), benchmarks=("MMLU", "ARC"), methods=("best", "other"),
                          benchmark_set="v1", n_train=1)
    r.add_published(pd.DataFrame(theirs))
    assert r.published is not None
    m = r.margins().set_index("method")
    t = r.table()["average"]
    best = t.idxmin()
    assert r.margins().attrs["reference"] == best
    other = "other" if best == "best" else "best"
    assert m.loc[other, "difference"] == pytest.approx(t[other] - t[best])
    assert m.loc["sloth-published-d2", "difference"] == pytest.approx(r.published.loc["sloth-published-d2", "average"]
                                                                       - t[best])
    e = pd.DataFrame(ours)
    group = e.groupby(["method", "fold", "benchmark"])["abs_error"].mean().groupby(["method", "fold"]).mean() * 100
    d = (group[other] - group[best]).to_numpy()
    ci = ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert (m.loc[other, "low"], m.loc[other, "high"]) == pytest.approx((ci.low, ci.high))
    assert (m["groups"] == 6).all()
    assert f"margins of {best}" in r.format()
    with pytest.raises(InputError, match="no method 'nope'"):
        r.margins("nope")


@pytest.mark.integration
@pytest.mark.skipif(not DATA_DIR, reason="needs LATENTSCALE_DATA_DIR")
def test_published_sloth_tables_match_the_paper():
    """Sloth's best published averages (its paper's heatmaps): 4.06 / 4.10 / 2.86 / 3.25 / 3.52 / 3.96."""
    from latentscale.evaluation.published import published_errors, published_table

    errors = published_errors()
    best = [published_table(s, n, errors)["average"].min() for s, n in
            [("v1", 1), ("v1", 2), ("v2", 1), ("v2", 2), ("all", 1), ("all", 2)]]
    np.testing.assert_allclose(best, [4.06, 4.10, 2.86, 3.25, 3.52, 3.96], atol=0.005)


def test_unseen_families_with_n_train_zero():
    """n = 0 holds out whole families: none of their rows is a training row, and the methods predict
    them as families they never saw."""
    data = make_data(seed=4)
    rows, _ = complete_cases(data, BENCH, 0)
    folds = split_folds(rows, [["f2", "f3"], ["f9"]], 0)
    for fold in folds:
        held = set(rows.index[rows["family"].isin(fold.families)])
        assert set(fold.test) == held and not held & set(fold.train)
    r = family_group_cv(data, n_train=0, methods=["flops-global", "flops-family"], groups=[["f2", "f3"], ["f9"]])
    assert set(r.errors["model"]) == set(rows.index[rows["family"].isin(["f2", "f3", "f9"])])
    # every method predicts the unseen families (flops-family gives them the average family intercept)
    assert r.table()["average"].notna().all()


def test_family_attributes_reach_latent_methods_and_auto_candidates():
    """A family attribute travels with the rows: latent-auto's candidates add it as a family covariate,
    and a latent method with a family:COLUMN term predicts unseen families (which needs the column to
    reach its prediction: without it the prediction is an error)."""
    from latentscale.evaluation.crossval import _latent_names, auto_candidates
    from latentscale.model.variants import PREDICTION_VARIANT

    assert auto_candidates() == [f"latent-k{k}:{PREDICTION_VARIANT}" for k in (1, 2, 3, 4)]
    both = auto_candidates(("kind",))
    assert both[4:] == [f"latent-k{k}:{PREDICTION_VARIANT}+family:kind" for k in (1, 2, 3, 4)]
    assert _latent_names(["latent-auto", "flops-global"], both) == both
    data = make_data(seed=4)
    frame = data.frame.assign(kind=[int(f[1:]) % 2 for f in data.frame["family"]])
    kinds = from_frame(frame.reset_index(), group="group", benchmarks=BENCH, floors=data.floors, attributes=["kind"])
    r = family_group_cv(kinds, n_train=0, methods=["latent-k1:family:kind"], groups=[["f2", "f3"]])
    assert set(r.errors["family"]) == {"f2", "f3"} and r.errors["predicted"].notna().all()
    assert r.fits["converged"].all()
