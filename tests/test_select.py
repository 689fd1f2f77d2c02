"""Choice of K: anchor rule, AIC/BIC table, the same answer locally and on a Dask cluster, CLI."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from latentscale.cli.app import app
from latentscale.evaluation.select import anchors_for, select_k
from latentscale.model.simulate import simulate


@pytest.fixture(scope="module")
def sim():
    data, _, _ = simulate(k=2, n_benchmarks=4, n_families=150, family_sizes=2, seed=11)
    return data


@pytest.fixture(scope="module")
def selection(sim):
    return select_k(sim, [1, 2], n_jobs=1, n_starts=1)  # one start: the table, not the search, is tested here


def test_anchor_rule():
    bm = ["a", "b", "c", "d"]
    assert anchors_for(2, bm, None) == ["a", "b"]
    assert anchors_for(3, bm, ["d", "c", "b", "a"]) == ["d", "c", "b"]
    assert anchors_for(2, bm, {2: ["c", "a"]}) == ["c", "a"]
    assert anchors_for(1, bm, {2: ["c", "a"]}) == ["a"]  # K not listed: the data order
    with pytest.raises(ValueError, match="give exactly 2"):
        anchors_for(2, bm, {2: ["a"]})
    with pytest.raises(ValueError, match="needs 3 anchors"):
        anchors_for(3, bm, ["a", "b"])


def test_table_and_criteria(selection, sim):
    t = selection.table
    assert list(t["k"]) == [1, 2]
    for _, row in t.iterrows():
        fit = selection.fits[row["k"]]
        assert row["aic"] == pytest.approx(2 * row["n_params"] - 2 * row["log_likelihood"])
        assert row["bic"] == pytest.approx(np.log(sim.n_families) * row["n_params"] - 2 * row["log_likelihood"])
        assert row["n_params"] == fit.spec.n_params
    # Data drawn with two skills: the second skill is worth far more than its parameters.
    assert selection.best_aic == 2 and selection.best_bic == 2
    assert t["log_likelihood"].iloc[1] > t["log_likelihood"].iloc[0]
    rec = selection.to_records()
    assert {"k", "log_likelihood", "n_params", "aic", "bic", "seconds"} <= set(rec[0])
    assert [r["best_aic"] for r in rec] == [False, True]


def test_dask_cluster_gives_the_same_table(selection, sim):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        remote = select_k(sim, [1, 2], scheduler=client)
    np.testing.assert_allclose(remote.table["log_likelihood"], selection.table["log_likelihood"], rtol=1e-10)
    assert list(remote.table["k"]) == [1, 2]


def test_plot_is_written(selection, tmp_path):
    path = selection.plot(tmp_path / "aic.png")
    assert path is not None
    assert (tmp_path / "aic.png").stat().st_size > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def _floor_args(sim):
    return [a for b, c in sim.floors.items() for a in ("--floor", f"{b}={c}")]


def test_cli_select_json(sim, selection, tmp_path, monkeypatch):
    from latentscale.estimation import mle

    asked = []
    curvature = mle._curvature
    monkeypatch.setattr(mle, "_curvature", lambda *a: asked.append(a[3]) or curvature(*a))
    csv = tmp_path / "scores.csv"
    sim.frame.reset_index().to_csv(csv, index=False)
    out = tmp_path / "table.csv"
    res = CliRunner().invoke(app, ["select", str(csv), "--k", "1..2", "-j", "1", "--json", "-o", str(out),
                                   "--starts", "1", "--benchmarks", ",".join(sim.benchmarks), *_floor_args(sim)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["k"] for r in doc["rows"]] == [1, 2]
    # The command's fits skip the Hessian (the table needs no standard errors): the same optimum and
    # verdict as the library's fits with their Hessians.
    assert asked == [None, None]
    np.testing.assert_allclose([r["log_likelihood"] for r in doc["rows"]], selection.table["log_likelihood"],
                               rtol=0, atol=1e-6)
    assert [r["converged"] for r in doc["rows"]] == list(selection.table["converged"])
    assert doc["best_aic"] == 2
    assert out.read_text().startswith("k,variant,log_likelihood,n_params,aic,bic")


@pytest.mark.parametrize("bad", ["0..2", "x", "1..9"])
def test_cli_select_bad_k(sim, tmp_path, bad):
    csv = tmp_path / "scores.csv"
    sim.frame.reset_index().to_csv(csv, index=False)
    res = CliRunner().invoke(app, ["select", str(csv), "--k", bad, "--benchmarks", ",".join(sim.benchmarks),
                                   *_floor_args(sim)])
    assert res.exit_code == 2
    assert "--k" in res.output


def test_penalized_variants_are_flagged_in_the_table():
    import pandas as pd

    from latentscale.evaluation.select import TABLE_COLUMNS, SelectionResult

    def table(variants):
        return pd.DataFrame([{"k": 1, "variant": v, "log_likelihood": 10.0 - i, "n_params": 5, "aic": -10.0 + i,
                              "bic": -8.0 + i, "converged": True, "seconds": 1.0, "anchors": "b1"}
                             for i, v in enumerate(variants)])[TABLE_COLUMNS]

    assert "penalized" in SelectionResult(table(["power", "power:1"])).format()
    assert "penalized" not in SelectionResult(table(["power", "residual"])).format()


def test_information_weights():
    """Δ and weights: exp(−Δ/2) normalized over the converged rows; a non-converged row gets none and does
    not count; the weights sum to one and order the rows like the criterion."""
    import pandas as pd

    from latentscale.evaluation.select import TABLE_COLUMNS, SelectionResult

    aic = [100.0, 96.0, 97.0, 50.0]
    bic = [110.0, 112.0, 115.0, 60.0]
    t = pd.DataFrame([{"k": i + 1, "variant": "plain", "log_likelihood": 0.0, "n_params": 1, "aic": a, "bic": b,
                       "converged": i < 3, "seconds": 1.0, "anchors": "b1"} for i, (a, b) in enumerate(zip(aic, bic))])
    w = SelectionResult(t[TABLE_COLUMNS]).weights()
    raw = np.exp(-0.5 * (np.array(aic[:3]) - 96.0))
    np.testing.assert_allclose(w["aic_weight"].iloc[:3], raw / raw.sum())
    np.testing.assert_allclose(w["delta_aic"].iloc[:3], [4.0, 0.0, 1.0])
    np.testing.assert_allclose(w["delta_bic"].iloc[:3], [0.0, 2.0, 5.0])
    assert w["bic_weight"].iloc[:3].sum() == pytest.approx(1.0)
    assert w.iloc[3].isna().all()  # the unconverged row's lower AIC is not comparable
    rec = SelectionResult(t[TABLE_COLUMNS]).to_records()
    assert rec[1]["aic_weight"] == pytest.approx(1 / (1 + np.exp(-2) + np.exp(-0.5)))
    text = SelectionResult(t[TABLE_COLUMNS]).format()
    assert "aic_weight" in text and "Akaike" in text and "(no weight)" in text
    # the lowest criteria of a fit that did not converge are not the choice
    sel = SelectionResult(t[TABLE_COLUMNS])
    assert sel.best_aic == 2 and sel.best_bic == 1
    assert [r["best_aic"] for r in rec] == [False, True, False, False]


def test_lowest_converged():
    from latentscale.evaluation.select import lowest_converged

    assert lowest_converged({1: (10.0, True), 2: (5.0, False), 3: (8.0, True)}) == 3  # 2 is lower but stopped short
    assert lowest_converged({1: (10.0, False), 2: (5.0, False)}) == 2  # none converged: the lowest of all
    assert lowest_converged({"a": (1.0, True)}) == "a"
