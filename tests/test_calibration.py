"""Extrapolation calibration of prediction intervals (split conformal on the training families).

The conformal quantile is checked against its guarantee by Monte Carlo on exchangeable scores;
the nonconformity against the coverage it stands for; the whole path on data simulated with
family × benchmark residuals that the plain model leaves out, so its intervals under-cover.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from latentscale.cli.app import app
from latentscale.errors import InputError
from latentscale.evaluation.calibration import (
    Calibration, calibrate_fit, calibration_from_predictions, conformal_quantile, nonconformity, widen,
)
from latentscale.evaluation.holdout import evaluate_holdout
from latentscale.model.simulate import simulate

FAST = {"method": "laplace", "n_starts": 1}


@pytest.mark.parametrize("n,level", [(19, 0.95), (23, 0.95), (40, 0.8), (10, 0.5)])
def test_conformal_quantile_has_its_finite_sample_guarantee(n, level):
    """For n + 1 exchangeable scores, P(s_new <= q(s_1..s_n)) lies in [level, level + 1/(n + 1)]."""
    rng = np.random.default_rng(n)
    reps = 40_000
    s = rng.standard_t(3, size=(reps, n + 1))  # heavy tails: the guarantee is distribution-free
    q = np.array([conformal_quantile(row[:n], level) for row in s])
    hit = (s[:, n] <= q).mean()
    se = np.sqrt(level * (1 - level) / reps)
    assert level - 4 * se <= hit <= level + 1 / (n + 1) + 4 * se


def test_conformal_quantile_rank_and_too_few_scores():
    s = np.array([5.0, 1.0, np.nan, 3.0, 2.0, 4.0])  # five scores: the ceil(6·0.5) = 3rd smallest
    assert conformal_quantile(s, 0.5) == 3.0
    assert conformal_quantile(s, 0.8) == 5.0  # ceil(4.8) = 5
    assert conformal_quantile(s, 0.95) == np.inf  # ceil(5.7) = 6 > 5


def test_nonconformity_is_at_most_one_exactly_when_covered():
    rng = np.random.default_rng(1)
    m = rng.uniform(0.2, 0.8, 2000)
    lo, hi = m - rng.uniform(0.01, 0.15, 2000), m + rng.uniform(0.01, 0.15, 2000)
    a = np.clip(m + rng.normal(0, 0.12, 2000), 0.001, 0.999)
    s = nonconformity(a, m, lo, hi)
    covered = (a >= lo) & (a <= hi)
    np.testing.assert_array_equal(s <= 1, covered)
    # widening by a score's own nonconformity puts the score on the interval's edge
    wl, wh = widen(m, lo, hi, s)
    edge = np.where(a >= m, wh, wl)
    np.testing.assert_allclose(edge, a, rtol=1e-9, atol=1e-12)
    # factor 1 is the identity; larger factors nest
    l1, h1 = widen(m, lo, hi, 1.0)
    np.testing.assert_allclose(l1, lo, atol=1e-12)
    np.testing.assert_allclose(h1, hi, atol=1e-12)
    l2, h2 = widen(m, lo, hi, 1.7)
    assert np.all(l2 <= lo) and np.all(h2 >= hi) and np.all((l2 > 0) & (h2 < 1))
    assert np.isnan(nonconformity([np.nan], [0.5], [0.4], [0.6])[0])


def _held_out_table(n_per=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for b, spread in (("b1", 2.0), ("b2", 0.5)):
        for i in range(n_per):
            m = rng.uniform(0.3, 0.7)
            for level, half in ((0.5, 0.02), (0.95, 0.06)):
                rows.append({"model": f"m{i}", "family": f"f{i}", "benchmark": b, "level": level, "median": m,
                             "lower": m - half, "upper": m + half, "actual": m + rng.normal(0, 0.04 * spread)})
    for level in (0.5, 0.95):  # a benchmark without a held-out score
        rows.append({"model": "m0", "family": "f0", "benchmark": "b4", "level": level, "median": 0.5, "lower": 0.4,
                     "upper": 0.6, "actual": np.nan})
    rows.append({"model": "short", "family": "f", "benchmark": "b3", "level": 0.95, "median": 0.5, "lower": 0.45,
                 "upper": 0.55, "actual": 0.9})
    rows.append({"model": "short", "family": "f", "benchmark": "b3", "level": 0.5, "median": 0.5, "lower": 0.48,
                 "upper": 0.52, "actual": 0.9})
    return pd.DataFrame(rows)


def test_factors_per_benchmark_pooled_where_too_few_and_never_below_one():
    p = _held_out_table()
    cal = calibration_from_predictions(p, (0.5, 0.95))
    f = cal.factors.set_index(["benchmark", "level"])
    # b1 under-covers: its factor is its own conformal quantile, above 1
    s1 = nonconformity(*(p[(p.benchmark == "b1") & (p.level == 0.95)][c] for c in ("actual", "median", "lower", "upper")))
    assert f.loc[("b1", 0.95), "factor"] == pytest.approx(conformal_quantile(s1, 0.95)) and f.loc[("b1", 0.95), "factor"] > 1
    assert f.loc[("b1", 0.95), "source"] == "benchmark" and f.loc[("b1", 0.95), "n"] == 30
    assert f.loc[("b1", 0.95), "coverage_model"] == pytest.approx((s1 <= 1).mean())
    # b3 has one score: the pooled quantile of every benchmark's scores at that level
    at = p[p.level == 0.95]
    pooled = conformal_quantile(nonconformity(at.actual, at["median"], at.lower, at.upper), 0.95)
    assert f.loc[("b3", 0.95), "source"] == "pooled" and f.loc[("b3", 0.95), "quantile"] == pytest.approx(pooled)
    assert f.loc[("b4", 0.95), "source"] == "pooled" and f.loc[("b4", 0.95), "n"] == 0
    assert (cal.factors["factor"] >= 1).all()
    assert (cal.factors["factor"] >= cal.factors["quantile"]).all()
    # applied to the same table, the widened intervals cover at least the conformal share per benchmark
    wide = cal.apply(p.drop(columns="actual"))
    hit = (p["actual"] >= wide["lower"] - 1e-12) & (p["actual"] <= wide["upper"] + 1e-12)
    b1 = (p.benchmark == "b1") & (p.level == 0.95)
    assert hit[b1].mean() >= 0.95 - 1e-9
    assert (wide["model_lower"] == p["lower"]).all() and (wide["lower"] <= p["lower"] + 1e-12).all()


def test_format_tests_the_models_own_coverage_against_chance():
    """b1's own 95 % intervals cover far less than 95 % of 30 scores: named with its binomial p; b2 (narrow
    spread) and the benchmark without scores are not."""
    from math import comb

    cal = calibration_from_predictions(_held_out_table(), (0.5, 0.95))
    f = cal.factors.set_index(["benchmark", "level"])
    k = int(round(f.loc[("b1", 0.95), "coverage_model"] * 30))
    p = sum(comb(30, x) * 0.95**x * 0.05 ** (30 - x) for x in range(k + 1))
    line = cal.format().splitlines()[-1]
    assert line.startswith("the model's own intervals: under-coverage beyond chance")
    assert f"b1 at 95 % ({k}/30, p = {p:.3g})" in line
    assert "b2 at 95" not in line and "b4" not in line


def test_apply_leaves_new_families_alone_and_names_a_missing_level():
    p = _held_out_table()
    cal = calibration_from_predictions(p, (0.5, 0.95))
    t = p.drop(columns="actual").assign(new_family=False)
    t.loc[t.index[:4], "new_family"] = True
    out = cal.apply(t)
    assert (out.loc[t.index[:4], "calibration_factor"] == 1).all()
    np.testing.assert_array_equal(out.loc[t.index[:4], "lower"], t.loc[t.index[:4], "lower"])
    with pytest.raises(InputError, match=r"level 80%.*50%, 95%"):
        cal.apply(t.assign(level=0.8))
    with pytest.raises(InputError, match="no column"):
        cal.apply(t.drop(columns="median"))


def test_applied_intervals_stay_nested_across_levels():
    """A lower level's factor far above a higher level's: its widened interval reaches beyond the higher
    level's, which is then widened to hold it; intervals that were nested and not widened are unchanged."""
    p = _held_out_table()
    cal = calibration_from_predictions(p, (0.5, 0.95))
    cal.factors.loc[cal.factors["level"] == 0.5, "factor"] = 6.0
    cal.factors.loc[cal.factors["level"] == 0.95, "factor"] = 1.0
    t = p.drop(columns="actual")
    wide = (t["level"] == 0.95) & t["model"].isin([f"m{i}" for i in range(10)])  # room for the stretched 50 %
    t.loc[wide, "lower"], t.loc[wide, "upper"] = t.loc[wide, "median"] - 0.25, t.loc[wide, "median"] + 0.25
    out = cal.apply(t)
    key = ["model", "benchmark"]
    low, high = (out[out["level"] == lv].set_index(key).sort_index() for lv in (0.5, 0.95))
    assert (high["lower"] <= low["lower"]).all() and (high["upper"] >= low["upper"]).all()
    own = t[t["level"] == 0.95].set_index(key).sort_index()
    stretched = (low["lower"] < own["lower"]) | (low["upper"] > own["upper"])
    assert stretched.any() and (~stretched).any()  # the check has cases of both kinds
    np.testing.assert_array_equal(high.loc[~stretched, "lower"], own.loc[~stretched, "lower"])
    np.testing.assert_array_equal(high.loc[~stretched, "upper"], own.loc[~stretched, "upper"])
    np.testing.assert_allclose(high.loc[stretched, "lower"], np.minimum(own["lower"], low["lower"])[stretched])
    np.testing.assert_array_equal(out.index, t.index)  # rows in the caller's order


def test_save_load_round_trip_and_errors(tmp_path):
    cal = calibration_from_predictions(_held_out_table(), (0.5, 0.95), info={"held_out": 61})
    path = cal.save(tmp_path / "cal.json")
    back = Calibration.load(path)
    pd.testing.assert_frame_equal(back.factors, cal.factors)
    assert back.info["held_out"] == 61
    doc = json.loads(path.read_text())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**doc, "schema": "latentscale.fit"}))
    with pytest.raises(InputError, match="not a latentscale calibration"):
        Calibration.load(bad)
    doc["factors"][0]["factor"] = 0.5
    bad.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="factors.*>= 1"):
        Calibration.load(bad)
    bad.write_text("{")
    with pytest.raises(InputError, match="not a JSON file"):
        Calibration.load(bad)


# ---- the whole path on simulated data ---------------------------------------------------
@pytest.fixture(scope="module")
def misspecified():
    """Scores with family × benchmark random slopes in size (ω = 1) and residuals (τ = 0.3), which the
    plain model leaves out: a family's own law departs from the common one the further it is extrapolated."""
    from latentscale.model.simulate import random_params

    params = random_params(1, 4, seed=3, extra_blocks=("residual_sd", "slope_sd"))
    params["residual_sd"], params["slope_sd"] = np.full(4, 0.3), np.full(4, 1.0)
    data, _, _ = simulate(params, k=1, n_benchmarks=4, n_families=60, family_sizes=[3, 4, 5] * 20, seed=3,
                          residual=True, residual_slope=True)
    return data


def test_calibration_widens_the_intervals_that_under_cover(misspecified):
    res = evaluate_holdout(misspecified, k=1, fit_options=FAST, predict_options={"n_samples": 400},
                           baselines=(), calibrate=True)
    cal = res.info["calibration"]
    # the calibration saw only training rows: 60 families with 2-4 models left, each one's largest held out
    assert cal.info["held_out"] == 60 and not set(cal.info["models"]) & set(res.plan.removed)
    assert set(cal.info["models"]) <= set(res.fit.data.index)
    t = res.table().set_index(["benchmark", "level"])
    all95 = t.loc[("all", 0.95)]
    assert all95["coverage_model"] < 0.9  # the plain model's intervals miss the families' own slopes
    assert abs(all95["coverage"] - 0.95) < abs(all95["coverage_model"] - 0.95)
    # each widened interval is the model's stretched by the stored factor of its benchmark and level
    p = res.predictions
    f = cal.factors.set_index(["benchmark", "level"])["factor"]
    factor = np.array([f[(b, lv)] for b, lv in zip(p["benchmark"], p["level"])])
    assert (factor > 1).any()
    lo, hi = widen(p["median"], p["model_lower"], p["model_upper"], factor)
    w = factor > 1
    lo, hi = np.where(w, lo, p["model_lower"]), np.where(w, hi, p["model_upper"])
    # ... and then holds the intervals of the lower levels of its model and benchmark
    same = ((p["model"].to_numpy()[:, None] == p["model"].to_numpy()[None])
            & (p["benchmark"].to_numpy()[:, None] == p["benchmark"].to_numpy()[None])
            & (p["level"].to_numpy()[None] <= p["level"].to_numpy()[:, None]))
    np.testing.assert_allclose(p["lower"], np.where(same, lo[None], np.inf).min(axis=1), atol=1e-12)
    np.testing.assert_allclose(p["upper"], np.where(same, hi[None], -np.inf).max(axis=1), atol=1e-12)
    assert (p["lower"] < lo - 1e-9).sum() < 0.05 * len(p)  # nesting moves few
    assert "uncal@95%" in res.format()


def test_calibrate_command_and_predict_with_it(misspecified, tmp_path):
    csv = tmp_path / "sim.csv"
    small = misspecified.frame[misspecified.frame["family"] <= "fam015"]
    small.reset_index().drop(columns=["group"], errors="ignore").to_csv(csv, index=False)
    floors = [a for b, c in misspecified.floors.items() for a in ("--floor", f"{b}={c}")]
    fit = tmp_path / "fit.json"
    runner = CliRunner()
    res = runner.invoke(app, ["fit", str(csv), "-k", "1", "--method", "laplace", "--starts", "1", *floors,
                              "-o", str(fit), "--quiet"])
    assert res.exit_code == 0, res.output
    cal = tmp_path / "cal.json"
    res = runner.invoke(app, ["calibrate", str(fit), "-o", str(cal), "--samples", "400", "--level", "0.95",
                              "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert {r["level"] for r in doc["factors"]} == {0.95} and doc["info"]["held_out"] == 15
    # the same numbers as the library on the fit
    from latentscale.results.fit_result import FitResult

    lib = calibrate_fit(FitResult.load(fit), levels=(0.95,), predict_options={"n_samples": 400})
    np.testing.assert_allclose(Calibration.load(cal).factors["factor"], lib.factors["factor"])
    new = tmp_path / "new.csv"
    pd.DataFrame({"model": ["x1", "x2"], "family": ["fam003", "brand-new"], "size": [50.0, 7.0],
                  "tokens": [2.0, 1.0]}).to_csv(new, index=False)
    out = tmp_path / "pred.csv"
    res = runner.invoke(app, ["predict", str(fit), "--models", str(new), "--level", "0.95", "--samples", "400",
                              "--calibration", str(cal), "-o", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(out)
    seen = pred[pred["family"] == "fam003"]
    assert (seen["calibration_factor"] > 1).any() and (pred.loc[pred["family"] == "brand-new",
                                                                "calibration_factor"] == 1).all()
    assert (seen["upper"] - seen["lower"] >= seen["model_upper"] - seen["model_lower"] - 1e-12).all()
    # a calibration of another fit: a warning that says so
    other = json.loads(cal.read_text())
    other["info"]["fit"]["n_models"] += 1
    (tmp_path / "other.json").write_text(json.dumps(other))
    res = runner.invoke(app, ["predict", str(fit), "--models", str(new), "--level", "0.95", "--samples", "400",
                              "--calibration", str(tmp_path / "other.json")])
    assert res.exit_code == 0 and "made for another fit (n_models" in res.stderr
    assert "another fit" not in runner.invoke(app, ["predict", str(fit), "--models", str(new), "--level", "0.95",
                                                    "--samples", "400", "--calibration", str(cal)]).stderr
    # curve: the same widening of a seen family's bands along its sizes; a new family keeps the model's own
    out = tmp_path / "curve.csv"
    res = runner.invoke(app, ["curve", str(fit), "--family", "fam003", "--points", "3", "--level", "0.95",
                              "--samples", "400", "--calibration", str(cal), "-o", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    band = pd.read_csv(out)
    factors = Calibration.load(cal).factors.set_index("benchmark")["factor"]
    np.testing.assert_allclose(band["calibration_factor"], factors.loc[band["benchmark"]].to_numpy())
    assert (band["upper"] - band["lower"] >= band["model_upper"] - band["model_lower"] - 1e-12).all()
    assert ((band["upper"] - band["lower"] > band["model_upper"] - band["model_lower"] + 1e-9)
            == (band["calibration_factor"] > 1)).all()
    res = runner.invoke(app, ["curve", str(fit), "--family", "brand-new", "--new-family", "--points", "2",
                              "--level", "0.95", "--samples", "400", "--calibration", str(tmp_path / "other.json"),
                              "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert all(r["calibration_factor"] == 1 for r in doc["rows"])
    assert any("made for another fit" in w for w in doc["warnings"])
    # a level the calibration does not have: exit 2, naming it
    res = runner.invoke(app, ["predict", str(fit), "--models", str(new), "--level", "0.8", "--samples", "400",
                              "--calibration", str(cal)])
    assert res.exit_code == 2 and "no factors at 80%" in res.stderr and "predicting" not in res.stderr  # before work
    res = runner.invoke(app, ["curve", str(fit), "--family", "fam003", "--calibration", str(cal)])  # 50 % and 95 %
    assert res.exit_code == 2 and "no factors at 50%" in res.stderr and "predicting" not in res.stderr
    res = runner.invoke(app, ["evaluate", str(csv), "--protocol", "family-group", "--calibrate", *floors])
    assert res.exit_code == 2 and "--calibrate" in res.stderr
