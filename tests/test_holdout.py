"""Held-out calibration (``evaluate --protocol holdout-largest``) and the prediction commands.

A small simulated table (K = 1, four benchmarks) is fitted once by Laplace with one start, so
the file stays fast; the leakage test refits after poisoning the held-out scores.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from latentscale.cli.app import app
from latentscale.data.dataset import ScoreData
from latentscale.data.validate import DataError
from latentscale.evaluation.holdout import evaluate_holdout, largest_per_family, named_holdout, read_holdout_file
from latentscale.model.simulate import simulate

FAST = {"method": "laplace", "n_starts": 1}
FAST_ARGS = ["--samples", "400"]


@pytest.fixture(scope="module")
def sim():
    data, true, spec = simulate(k=1, n_benchmarks=4, n_families=40, family_sizes=[1, 2, 3, 4] * 10, seed=5)
    return data, true, spec


def with_scores(data: ScoreData, frame: pd.DataFrame) -> ScoreData:
    return ScoreData(frame=frame, benchmarks=data.benchmarks, floors=data.floors, name=data.name)


def test_largest_per_family_rule(sim):
    data, _, _ = sim
    plan = largest_per_family(data)
    f = data.frame
    counts = f.groupby("family").size()
    eligible = set(counts.index[counts >= 3])
    assert {f.loc[m, "family"] for m in plan.predicted} == eligible  # one per family with >= 3 models
    for m in plan.predicted:
        fam = f[f["family"] == f.loc[m, "family"]]
        assert f.loc[m, "size"] == fam["size"].max()
    assert plan.removed == plan.predicted  # no base_model column: nothing else removed


def test_largest_removes_finetunes_built_on_the_held_out_model(sim):
    data, _, _ = sim
    f = data.frame.copy()
    plan = largest_per_family(data)
    tune = f.index[f["family"] == "fam001"][0]  # a one-model family "built on" a held-out model
    f["base_model"] = pd.Series(None, index=f.index, dtype=object)
    f.loc[tune, "base_model"] = plan.predicted[0]
    plan2 = largest_per_family(with_scores(data, f))
    assert plan2.predicted == plan.predicted
    assert set(plan2.removed) == set(plan.removed) | {tune}


def test_named_holdout_errors(sim, tmp_path):
    data, _, _ = sim
    with pytest.raises(DataError, match="not in the data"):
        named_holdout(data, ["nope"])
    with pytest.raises(DataError, match="empty"):
        named_holdout(data, ["  "])
    first = data.frame.index[0]
    with pytest.raises(DataError, match="twice"):
        named_holdout(data, [first, first])
    path = tmp_path / "h.txt"
    path.write_text(f"# held out\n{first}\n\n")
    assert read_holdout_file(path) == [first]


def test_held_out_scores_never_reach_the_fit_or_the_posterior(sim):
    """Poison every held-out score: the refit, the posteriors and the predictions are unchanged."""
    data, _, spec = sim
    a = evaluate_holdout(data, k=1, fit_options=FAST, predict_options={"n_samples": 400})
    f = data.frame.copy()
    held = list(a.plan.removed)
    rng = np.random.default_rng(0)
    f.loc[held, list(spec.benchmarks)] = rng.uniform(0.0, 1.0, (len(held), spec.J))
    b = evaluate_holdout(with_scores(data, f), k=1, fit_options=FAST, predict_options={"n_samples": 400})
    assert not set(held) & set(a.fit.data.index)  # the fit's rows exclude them
    assert a.fit.llf == b.fit.llf
    np.testing.assert_array_equal(a.fit.theta, b.fit.theta)
    cols = ["model", "benchmark", "level", "mean", "median", "lower", "upper"]
    pd.testing.assert_frame_equal(a.predictions[cols], b.predictions[cols])
    # ...and the comparison does use the (poisoned) actual scores.
    assert not np.allclose(a.predictions["actual"], b.predictions["actual"])
    table = a.table()
    assert set(table.columns) >= {"benchmark", "level", "coverage", "mean_width", "mae"}
    assert set(table["benchmark"]) == set(spec.benchmarks) | {"all"}
    assert table["coverage"].between(0, 1).all()
    # Wider levels cover at least as much.
    for _, g in table.groupby("benchmark"):
        assert np.all(np.diff(g.sort_values("level")["coverage"].to_numpy()) >= 0)
    # the baseline beside it: FlopsFamily fitted on exactly the training rows, scored on the same cases
    from latentscale.evaluation.baselines import FlopsFamily

    train = data.frame.drop(index=held)
    direct = FlopsFamily().fit(train, list(spec.benchmarks), data.floors).predict(data.frame.loc[list(a.plan.predicted)])
    p = a.predictions[a.predictions["level"] == a.levels[0]]
    for i, m in enumerate(a.plan.predicted):
        for j, bench in enumerate(spec.benchmarks):
            got = p.loc[(p["model"] == m) & (p["benchmark"] == bench), "mean_flops-family"]
            assert len(got) == 1 and got.iloc[0] == pytest.approx(direct[i, j], abs=1e-9)
    s = p.dropna(subset=["actual"])
    expected = (s["mean_flops-family"] - s["actual"]).abs().mean()
    assert table.loc[table["benchmark"] == "all", "mae_flops-family"].iloc[0] == pytest.approx(expected)
    assert "mae flops-family" in a.format()
    # the paired difference: the mean of per-score differences is the difference of the MAEs
    np.testing.assert_allclose(table["mae_diff_flops-family"], table["mae"] - table["mae_flops-family"], atol=1e-12)
    assert (table["mae_diff_flops-family_low"] <= table["mae_diff_flops-family"]).all()
    assert "MAE minus flops-family's" in a.format()


# ---- command line ------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(sim, tmp_path_factory):
    data, _, spec = sim
    d = tmp_path_factory.mktemp("pred")
    frame = data.frame.reset_index()
    csv = d / "sim.csv"
    frame.drop(columns=["group"], errors="ignore").to_csv(csv, index=False)
    fit = d / "fit.json"
    runner = CliRunner()
    floors = [a for b, c in data.floors.items() for a in ("--floor", f"{b}={c}")]
    res = runner.invoke(app, ["fit", str(csv), "-k", "1", "--method", "laplace", "--starts", "1", *floors,
                              "-o", str(fit), "--json"])
    assert res.exit_code == 0, res.output
    new = d / "new.csv"
    pd.DataFrame({"model": ["x1", "x2"], "family": ["fam003", "brand-new"], "size": [50.0, 7.0],
                  "tokens": [2.0, 1.0]}).to_csv(new, index=False)
    return {"dir": d, "csv": csv, "fit": fit, "new": new, "floors": floors}


def test_predict_command_writes_the_table(files):
    out = files["dir"] / "pred.csv"
    res = CliRunner().invoke(app, ["predict", str(files["fit"]), "--models", str(files["new"]), "--level", "0.8",
                                   "--level", "0.95", "-o", str(out), *FAST_ARGS])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert list(table.columns[:8]) == ["model", "family", "benchmark", "mean", "median", "level", "lower", "upper"]
    assert len(table) == 2 * 4 * 2  # models × benchmarks × levels
    assert (table["lower"] <= table["upper"]).all()
    assert table.loc[table["model"] == "x2", "new_family"].all()
    res = CliRunner().invoke(app, ["predict", str(files["fit"]), "--models", str(files["new"]), "--json",
                                   *FAST_ARGS])
    doc = json.loads(res.stdout)
    assert len(doc["rows"]) == 2 * 4 * 2 and {r["level"] for r in doc["rows"]} == {0.8, 0.95}


@pytest.mark.parametrize("args, message", [
    (["--level", "1.5"], "--level"),
    (["--models", "missing.csv"], "no such file"),
])
def test_predict_command_errors(files, args, message):
    base = ["predict", str(files["fit"]), "--models", str(files["new"])]
    if args[0] == "--models":
        base = ["predict", str(files["fit"]), "--models", str(files["dir"] / args[1])]
        args = []
    res = CliRunner().invoke(app, base + args + FAST_ARGS)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and "Traceback" not in res.output


def test_predict_command_names_a_bad_row(files):
    bad = files["dir"] / "bad.csv"
    pd.DataFrame({"model": ["a", "b"], "family": ["f", "f"], "size": [1.0, -2.0], "tokens": [1.0, 1.0]}).to_csv(bad)
    res = CliRunner().invoke(app, ["predict", str(files["fit"]), "--models", str(bad), *FAST_ARGS])
    assert res.exit_code == 2
    assert "'size'" in res.stderr and "b" in res.stderr


def test_posterior_and_compare_commands(files):
    res = CliRunner().invoke(app, ["posterior", str(files["fit"]), "fam003", "--json", *FAST_ARGS])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["skill"] for r in doc["skills"]] == ["b1"]
    row = doc["skills"][0]
    assert row["lower_95"] < row["mean"] < row["upper_95"]
    res = CliRunner().invoke(app, ["posterior", str(files["fit"]), "fam003", "--compare", "fam004", "--json",
                                   *FAST_ARGS])
    assert res.exit_code == 0, res.output
    diff = json.loads(res.stdout)["skills"][0]
    assert 0.0 <= diff["P(fam003 > fam004)"] <= 1.0
    res = CliRunner().invoke(app, ["posterior", str(files["fit"]), "no-such-family", *FAST_ARGS])
    assert res.exit_code == 2 and "not in the fit" in res.stderr


def test_curve_command(files):
    out, fig = files["dir"] / "curve.csv", files["dir"] / "curve.png"
    res = CliRunner().invoke(app, ["curve", str(files["fit"]), "--family", "fam003", "--points", "5",
                                   "-o", str(out), "--plot", str(fig), *FAST_ARGS])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert table["size"].nunique() == 5 and {"extrapolated", "tokens"} <= set(table.columns)
    assert fig.stat().st_size > 1000


def test_evaluate_holdout_command(files):
    hold = files["dir"] / "hold.txt"
    hold.write_text("fam004-m4\nfam008-m4\n")
    out = files["dir"] / "held.csv"
    res = CliRunner().invoke(app, ["evaluate", str(files["csv"]), "--protocol", "holdout-largest", "-k", "1",
                                   "--holdout", str(hold), *files["floors"], "--json", "-o", str(out),
                                   *FAST_ARGS])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    rows = pd.DataFrame(doc["rows"])
    assert {"benchmark", "level", "coverage", "mean_width", "mae"} <= set(rows.columns)
    assert set(rows["level"]) == {0.5, 0.8, 0.95} and "all" in set(rows["benchmark"])
    assert (rows.loc[rows["benchmark"] == "all", "n"] == 8).all()  # 2 models × 4 benchmarks
    assert rows.loc[rows["benchmark"] == "all", "p_under"].isna().all()  # the pooled row is not tested
    assert rows.loc[rows["benchmark"] != "all", "p_under"].between(0, 1).all()
    # the refit behind the predictions: its K, ℓ, convergence and the held-out models
    assert doc["fit"]["k"] == 1 and doc["fit"]["held_out"] == ["fam004-m4", "fam008-m4"]
    assert isinstance(doc["fit"]["converged"], bool) and np.isfinite(doc["fit"]["log_likelihood"])
    assert set(doc["fit"]["baselines_converged"]) == {"flops-family"}  # the baseline's convergence, reported
    saved = pd.read_csv(out)
    assert set(saved["model"]) == {"fam004-m4", "fam008-m4"}
    hold.write_text("not-a-model\n")
    res = CliRunner().invoke(app, ["evaluate", str(files["csv"]), "--holdout", str(hold), *files["floors"]])
    assert res.exit_code == 2 and "not-a-model" in res.stderr


def test_evaluate_family_group_command(tmp_path):
    """`evaluate --protocol family-group` on a small table: JSON rows method, benchmark, mae_pp (with the
    average), the tidy errors as CSV, and bad options as exit 2."""
    from test_crossval import BENCH, make_data

    data = make_data()
    csv = tmp_path / "groups.csv"
    data.frame.reset_index().to_csv(csv, index=False)
    floors = [a for b in BENCH for a in ("--floor", f"{b}=0.25")]
    out = tmp_path / "errors.csv"
    args = ["evaluate", str(csv), "--protocol", "family-group", "--group-col", "group", "--benchmarks", "all",
            "--n-train", "1", "--methods", "flops-global,sloth-d1", *floors]
    res = CliRunner().invoke(app, [*args, "--json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    rows = pd.DataFrame(json.loads(res.stdout)["rows"])
    assert set(rows["method"]) == {"flops-global", "sloth-basic-d1"}  # the older name is accepted
    margins = json.loads(res.stdout)["margins"]  # the other method against the lowest average
    assert len(margins["rows"]) == 1 and margins["reference"] in {"flops-global", "sloth-basic-d1"}
    assert margins["rows"][0]["low"] <= margins["rows"][0]["difference"] <= margins["rows"][0]["high"]
    assert set(rows["benchmark"]) == set(BENCH) | {"average"}
    assert (rows["mae_pp"] >= 0).all()
    errors = pd.read_csv(out)
    assert {"method", "fold", "model", "benchmark", "abs_error"} <= set(errors.columns)
    # The average row is the mean of the per-benchmark rows.
    for _, g in rows.groupby("method"):
        per = g[g["benchmark"] != "average"]["mae_pp"].mean()
        assert g[g["benchmark"] == "average"]["mae_pp"].iloc[0] == pytest.approx(per)
    res = CliRunner().invoke(app, [*args[:-len(floors)], "--methods", "no-such-method", *floors])
    assert res.exit_code == 2 and "no-such-method" in res.stderr


def test_predict_se_choice_changes_the_parameter_draws(files):
    """--se picks the covariance behind the parameter draws: the sandwich gives other intervals than
    the observed information, the point of the option (same seed, same everything else)."""
    tables = {}
    for se in ("observed", "sandwich"):
        out = files["dir"] / f"pred-{se}.csv"
        res = CliRunner().invoke(app, ["predict", str(files["fit"]), "--models", str(files["new"]), "--level", "0.9",
                                       "--se", se, "-o", str(out), *FAST_ARGS])
        assert res.exit_code == 0, res.output
        tables[se] = pd.read_csv(out)
    a, b = tables["observed"], tables["sandwich"]
    assert not np.allclose(a["expected_upper"] - a["expected_lower"], b["expected_upper"] - b["expected_lower"])
    res = CliRunner().invoke(app, ["predict", str(files["fit"]), "--models", str(files["new"]), "--se", "bogus"])
    assert res.exit_code == 2


def test_coverage_table_tests_under_coverage_against_the_binomial():
    """``p_under`` is P(X ≤ covered) for X ~ Binomial(n, level), summed by hand; the format names the
    benchmarks below it and leaves the pooled row untested."""
    from math import comb
    from types import SimpleNamespace

    from latentscale.evaluation.holdout import HoldoutPlan, HoldoutResult

    rows = []
    hits = {"a": 18, "b": 22}  # of 23 scores each
    for bench, k in hits.items():
        for i in range(23):
            for level in (0.5, 0.95):
                rows.append({"model": f"m{i}", "benchmark": bench, "level": level, "mean": 0.5, "actual": 0.5,
                             "covered": float(i < k) if level == 0.95 else float(i < 12), "width": 0.1})
    res = HoldoutResult(pd.DataFrame(rows), HoldoutPlan(tuple(f"m{i}" for i in range(23)), (), "test"),
                        SimpleNamespace(spec=SimpleNamespace(K=1), llf=0.0, converged=False), (0.5, 0.95))
    t = res.table().set_index(["benchmark", "level"])

    def below(k, n, p):
        return sum(comb(n, x) * p**x * (1 - p) ** (n - x) for x in range(k + 1))

    for bench, k in hits.items():
        assert t.loc[(bench, 0.95), "covered"] == k
        assert t.loc[(bench, 0.95), "p_under"] == pytest.approx(below(k, 23, 0.95), rel=1e-10)
        assert t.loc[(bench, 0.5), "p_under"] == pytest.approx(below(12, 23, 0.5), rel=1e-10)
    assert np.isnan(t.loc[("all", 0.95), "p_under"]) and t.loc[("all", 0.95), "covered"] == 40
    text = res.format()
    assert "a at 95 % (18/23, p = 0.00" in text  # 18 of 23 at 95 %: p = 0.0049
    assert "b at 95 %" not in text  # 22 of 23 is well within chance
    # nothing below chance: the line says so
    assert "NOT converged" in text  # the refit's failure is said in the head
    ok = HoldoutResult(res.predictions.assign(covered=1.0), res.plan,
                       SimpleNamespace(spec=SimpleNamespace(K=1), llf=0.0, converged=True), res.levels)
    assert ok.format().rstrip().endswith("none") and "NOT converged" not in ok.format()


def test_paired_mean_interval():
    """One difference per cluster: the paired t-interval. Each cluster's differences repeated: the same
    interval (dependent copies add no information), where an unclustered interval would shrink. Clustered
    data: the interval covers the true mean at about its level."""
    from scipy.stats import ttest_1samp

    from latentscale.evaluation.holdout import paired_mean_interval

    rng = np.random.default_rng(3)
    d = rng.normal(0.01, 0.02, 20)
    mean, low, high = paired_mean_interval(d, np.arange(20))
    ci = ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert mean == pytest.approx(d.mean()) and (low, high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    twice = paired_mean_interval(np.repeat(d, 2), np.repeat(np.arange(20), 2))
    assert twice == pytest.approx((mean, low, high), rel=1e-10)
    assert np.isnan(paired_mean_interval(d[:3], np.zeros(3))[1])  # one cluster: no interval
    assert np.isnan(paired_mean_interval(np.array([]), np.array([]))[0])
    with_gap = paired_mean_interval(np.append(d, np.nan), np.arange(21))  # a missing difference is left out
    assert with_gap == pytest.approx((mean, low, high), rel=1e-10)
    # clusters of 1-12 scores sharing a cluster effect (SD 0.03) around a true mean of 0.005
    hits = 0
    for _ in range(1000):
        sizes = rng.integers(1, 13, 25)
        cluster = np.repeat(np.arange(25), sizes)
        diff = 0.005 + rng.normal(0, 0.03, 25)[cluster] + rng.normal(0, 0.02, cluster.size)
        _, lo, hi = paired_mean_interval(diff, cluster)
        hits += lo <= 0.005 <= hi
    assert 0.91 <= hits / 1000 <= 0.975


def test_an_unconverged_baseline_is_flagged():
    from types import SimpleNamespace

    from latentscale.evaluation.holdout import HoldoutPlan, HoldoutResult

    rows = [{"model": f"m{i}", "benchmark": "a", "level": 0.95, "mean": 0.5, "actual": 0.5 + 0.01 * i,
             "mean_flops-family": 0.52, "covered": 1.0, "width": 0.1} for i in range(5)]
    fit = SimpleNamespace(spec=SimpleNamespace(K=1), llf=0.0, converged=True)
    plan = HoldoutPlan(tuple(f"m{i}" for i in range(5)), (), "test")
    bad = HoldoutResult(pd.DataFrame(rows), plan, fit, (0.95,), {"baselines_converged": {"flops-family": False}})
    assert "mae flops-family *" in bad.format() and "* flops-family: its fit did not converge" in bad.format()
    good = HoldoutResult(pd.DataFrame(rows), plan, fit, (0.95,), {"baselines_converged": {"flops-family": True}})
    assert "*" not in good.format()
