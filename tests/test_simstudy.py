"""Simulation study: a small run end to end (coverage, selection, CLI); the full study is in the docs."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from latentscale.cli.app import app
from latentscale.evaluation.simstudy import BLOCKS, GUARD_CLIP, StudyConfig, run_replication, simulation_study


@pytest.fixture(scope="module")
def small():
    cfg = StudyConfig(k=1, n_benchmarks=3, n_families=120, family_sizes=2, missing=0.1, compare_k=(1, 2),
                      fit_options={"n_starts": 1})  # one start: these tests check the study, not the search
    return simulation_study(cfg, 3)


def test_replications_share_the_design_and_truth(small):
    p = small.params
    truth = p.pivot_table(index=["block", "row", "column"], columns="replication", values="truth")
    assert np.abs(truth.sub(truth.iloc[:, 0], axis=0)).to_numpy().max() < 1e-12  # same truth in every replication
    est = p.pivot_table(index=["block", "row", "column"], columns="replication", values="estimate")
    assert not np.allclose(est.iloc[:, 0], est.iloc[:, 1])  # but new scores each time


def test_block_summary_is_consistent(small):
    t = small.by_block()
    per = small.by_parameter()
    assert set(t.index) == set(per.index.get_level_values("block"))  # every reported block has a row
    assert {"B", "loading", "intercept", "precision"} <= set(t.index)
    assert list(t.index[:4]) == [b for b in BLOCKS if b in t.index][:4]  # the known blocks first, in order
    assert ((t["coverage"] >= 0) & (t["coverage"] <= 1)).all()
    b = per.xs("B", level="block")
    assert t.loc["B", "rmse"] == pytest.approx(float(np.sqrt(np.mean(b["rmse"] ** 2))))
    # A data set of 120 families recovers K = 1 data well: the estimates sit near the truth.
    assert t.loc["B", "rmse"] < 0.25
    assert (small.replications["converged"]).all()


def test_coverage_monte_carlo_errors(small):
    """Block MC SE: SD over replications of the block's covered share, over √R; per parameter the
    binomial sqrt(c(1 - c)/R); the summary names the blocks beyond 2 MC SE of the level and only those."""
    t, per = small.by_block(), small.by_parameter()
    p = small.params
    for block in t.index:
        shares = [g["covered"].mean() for _, g in p[p["block"] == block].groupby("replication")]
        assert t.loc[block, "coverage_mcse"] == pytest.approx(np.std(shares, ddof=1) / np.sqrt(len(shares)))
    c = per["coverage"]
    np.testing.assert_allclose(per["coverage_mcse"], np.sqrt(c * (1 - c) / 3))
    line = small._coverage_line()
    for block, row in t.iterrows():
        se = max(row["coverage_mcse"], np.sqrt(0.95 * 0.05 / (3 * row["n_params"])))
        assert (f"{block} (" in line) == (abs(row["coverage"] - 0.95) > 2 * se)
    assert line in small.summary()
    assert "MC SE" in small.summary()


def test_selection_rates(small):
    rates = small.selection_rates()
    assert sum(rates["aic"].values()) == pytest.approx(1.0)
    assert rates["aic_true_k"] >= 2 / 3  # one skill drawn: K = 2 rarely pays for its parameters


def test_replication_is_deterministic():
    cfg = StudyConfig(k=1, n_benchmarks=3, n_families=120, family_sizes=2, missing=0.1, fit_options={"n_starts": 1})
    a, b = run_replication(5, cfg), run_replication(5, cfg)
    np.testing.assert_allclose(a["params"]["estimate"], b["params"]["estimate"], rtol=1e-10)


@pytest.mark.parametrize("variant", ["ceiling"])  # residual draws go through the same path (simulate's flags)
def test_replication_draws_from_and_fits_the_variant(variant):
    """The data come from the variant (its block's truth is in the table) and AIC weighs it against plain."""
    cfg = StudyConfig(k=1, n_benchmarks=3, n_families=120, family_sizes=2, missing=0.1, variant=variant,
                      compare_variants=("plain",), fit_options={"n_starts": 1})
    r = run_replication(0, cfg)
    block = {"ceiling": "ceiling", "residual": "residual_sd"}[variant]
    rows = r["params"][r["params"]["block"] == block]
    assert len(rows) == 3 and rows["truth"].notna().all() and rows["estimate"].notna().all()
    assert r["aic_variant"] in (variant, "plain")


def test_truth_ranges_reach_the_drawn_truth_and_the_summary():
    """--truth-range / truth_ranges: the replication's true values of the block lie in the range given."""
    cfg = StudyConfig(k=1, n_benchmarks=3, n_families=120, family_sizes=2, missing=0.1, variant="ceiling",
                      truth_ranges=(("ceiling", 0.4, 0.5),), fit_options={"n_starts": 1})
    r = run_replication(0, cfg)
    truth = r["params"].loc[r["params"]["block"] == "ceiling", "truth"]
    assert len(truth) == 3 and truth.between(0.4, 0.5).all()
    with pytest.raises(ValueError, match="no such block"):
        simulation_study(StudyConfig(k=1, n_benchmarks=3, truth_ranges=(("ceiling", 0.4, 0.5),)), 1)


def test_the_clip_of_the_scores_and_the_fits(monkeypatch):
    # Default: scores as drawn and fits that clip only at the float64 guard; with a clip, both.
    import latentscale.fitting as fitting

    seen = []
    real_fit = fitting.LatentScalingModel.fit

    def spy(self, data, *a, **kw):
        seen.append((self.clip, float(np.nanmin(data.frame[list(data.benchmarks)].to_numpy()))))
        return real_fit(self, data, *a, **kw)

    monkeypatch.setattr(fitting.LatentScalingModel, "fit", spy)
    base = dict(k=1, n_benchmarks=3, n_families=120, family_sizes=2, missing=0.1, compare_k=(1, 2))
    a = run_replication(0, StudyConfig(**base))
    b = run_replication(0, StudyConfig(**base, clip=(0.05, 0.95)))
    assert [c for c, _ in seen] == [GUARD_CLIP, GUARD_CLIP, (0.05, 0.95), (0.05, 0.95)]
    assert seen[0][1] < 0.05 and seen[2][1] >= 0.05  # the default scores reach below the clip
    assert a["log_likelihood_k1"] != b["log_likelihood_k1"] and set(a) >= {"log_likelihood_k1", "log_likelihood_k2"}


def test_bad_arguments():
    with pytest.raises(ValueError, match="replications"):
        simulation_study(StudyConfig(k=1, n_benchmarks=3), 0)
    with pytest.raises(ValueError, match="k <= n_benchmarks"):
        simulation_study(StudyConfig(k=4, n_benchmarks=3), 1)
    with pytest.raises(ValueError, match="compare_k"):
        simulation_study(StudyConfig(k=1, n_benchmarks=3, compare_k=(5,)), 1)


def test_cli_simulate_json_and_files(tmp_path):
    out, fig = tmp_path / "params.csv", tmp_path / "cov.png"
    res = CliRunner().invoke(app, ["simulate", "-k", "1", "-J", "3", "--families", "120", "--reps", "2",
                                   "--family-sizes", "2", "--missing", "0.1", "-j", "1", "--json",
                                   "-o", str(out), "--plot", str(fig)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["replications"] == 2
    assert {b["block"] for b in doc["blocks"]} >= {"B", "loading"}
    assert out.read_text().startswith("block,row,column,truth")
    assert fig.stat().st_size > 1000


@pytest.mark.parametrize("args,match", [
    (["--missing", "2"], "--missing"),
    (["--family-sizes", "x"], "--family-sizes"),
    (["-k", "4", "-J", "3"], "exceed"),
    (["--clip", "0.9,0.1"], "--clip"),
    (["--truth-range", "link_power"], "BLOCK=LOW:HIGH"),
    (["--truth-range", "link_power=3:x"], "BLOCK=LOW:HIGH"),
    (["--variant", "power", "--truth-range", "link_power=3:1"], "low < high"),
    (["--truth-range", "link_power=0.6:6"], "no such block"),
])
def test_cli_simulate_bad_input(args, match):
    res = CliRunner().invoke(app, ["simulate", "--reps", "1", *args])
    assert res.exit_code == 2
    assert match in res.output


def test_coverage_line_flags_only_coverage_off_beyond_monte_carlo_error():
    """20 replications: a block covering 60 % is flagged; one covering in every replication is not
    (its empirical MC SE is 0, the binomial floor keeps it), nor one at the level."""
    from latentscale.evaluation.simstudy import StudyResult

    rows = []
    for r in range(20):
        for block, covered in (("B", r < 12), ("loading", True), ("intercept", r != 0)):
            for col in range(2):
                rows.append({"block": block, "row": 0, "column": col, "replication": r, "estimate": 0.0,
                             "truth": 0.0, "se": 1.0, "covered": float(covered)})
    reps = pd.DataFrame({"replication": range(20), "converged": True, "hessian_pd": True})
    res = StudyResult(StudyConfig(k=1, n_benchmarks=2), pd.DataFrame(rows), reps)
    t = res.by_block()
    assert t.loc["B", "coverage"] == pytest.approx(0.6)
    assert t.loc["loading", "coverage_mcse"] == 0.0
    line = res._coverage_line()
    assert "B (60.0 ± 11.2)" in line  # sd of the 0/1 shares (ddof 1) over √20
    assert "loading" not in line and "intercept" not in line
