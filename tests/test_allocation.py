"""Compute-optimal allocation: the closed form against brute force on the budget line, the family
effect's invariance, closed form vs numeric search of the score itself, extrapolation and
feasibility flags, intervals from the parameters' covariance, errors, and the CLI.

The fit is built from known parameters of a simulation (no estimation): a concave skill (positive
size × tokens interaction), a convex one (negative interaction) and a Hessian we choose, so every
expected optimum and interval width can be computed independently here.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from typer.testing import CliRunner

from latentscale.allocation import FLOPS_UNIT, allocate, flops_range, plot_frontier
from latentscale.model.covariates import CovariateScaler
from latentscale.prediction.predict import predict
from latentscale.model.simulate import random_params, simulate
from latentscale.results.fit_result import FitResult

B_TRUE = np.array([[0.3, 0.8],    # log N
                   [0.5, 0.2],    # log D
                   [0.4, -0.3]])  # log N · log D: skill b1 concave on the budget line, b2 convex


def make_fit(se: float = 0.05, with_hessian: bool = True) -> FitResult:
    params = random_params(2, 5, seed=11)
    params["B"] = B_TRUE.copy()
    data, true, spec = simulate(params, k=2, n_benchmarks=5, n_families=40, family_sizes=3, seed=4)
    frame = data.frame
    scaler = CovariateScaler.fit(frame["size"], frame["tokens"])
    fit = FitResult.from_params(
        true, spec, scaler, log_likelihood=0.0, method="aghq",
        n_obs=int(frame[list(spec.benchmarks)].notna().sum().sum()), n_models=len(frame),
        n_families=frame["family"].nunique(), families=tuple(pd.unique(frame["family"])), models=tuple(frame.index),
        data=frame[["family", "group", "size", "tokens", *spec.benchmarks]],
    )
    if with_hessian:
        fit.hessian = -np.eye(fit.theta.size) / se**2
    return fit


@pytest.fixture(scope="module")
def fit():
    return make_fit()


def brute_force(fit, flops, objective, box=None, n=200001):
    """argmax over a fine grid of sizes on the budget line, the objective evaluated through the
    standardized covariates (fit.scaler.transform), independently of the raw-scale closed form."""
    (n_lo, n_hi), (d_lo, d_hi) = box or ((fit.data["size"].min(), fit.data["size"].max()),
                                         (fit.data["tokens"].min(), fit.data["tokens"].max()))
    nd = flops / FLOPS_UNIT
    lo, hi = max(n_lo, nd / d_hi), min(n_hi, nd / d_lo)
    sizes = np.geomspace(lo, hi, n)
    tokens = nd / sizes
    X = fit.scaler.transform(sizes, tokens)
    vals = objective(X)
    i = int(np.argmax(vals))
    return sizes[i], tokens[i], vals[i]


BUDGETS = [3e20, 3e21, 3e22, 3e23, 3e24]


@pytest.mark.parametrize("k", [0, 1])
def test_skill_optimum_matches_brute_force(fit, k):
    skill = fit.spec.skills[k]
    table = allocate(fit, skill=skill, flops=BUDGETS, uncertainty=False)
    assert list(table["target"]) == [skill] * len(BUDGETS)
    B = fit.constrained["B"]
    for _, row in table.iterrows():
        n, d, v = brute_force(fit, row["flops"], lambda X: X @ B[:, k])
        assert row["size"] == pytest.approx(n, rel=2e-4)
        assert row["tokens"] == pytest.approx(d, rel=2e-4)
        assert row["value"] == pytest.approx(v, abs=1e-8)
        assert 6 * row["size"] * 1e9 * row["tokens"] * 1e12 == pytest.approx(row["flops"], rel=1e-12)
        assert row["tokens_per_param"] == pytest.approx(1000 * row["tokens"] / row["size"], rel=1e-12)
    # The convex skill sits on an edge of the box at every budget, the concave one inside for some.
    if k == 1:
        assert (table["position"] != "interior").all()
    else:
        assert (table["position"] == "interior").any()


def test_concave_optimum_has_the_closed_form_ratio(fit):
    """With b3 > 0 the optimum on log N + log D = s is u* = (b1 − b2 + b3 s)/(2 b3), so D*/N* = exp((b2 − b1)/b3)
    (×1000 for trillions over billions) whatever the budget."""
    b1, b2, b3 = fit.B_raw.iloc[:3, 0]
    table = allocate(fit, skill=fit.spec.skills[0], flops=BUDGETS, uncertainty=False, box=((1e-3, 1e4), (1e-4, 1e4)))
    inside = table[table["position"] == "interior"]
    assert len(inside) == len(BUDGETS)
    np.testing.assert_allclose(inside["tokens_per_param"], 1000 * np.exp((b2 - b1) / b3), rtol=1e-9)


def test_benchmark_optimum_matches_brute_force_with_a_family(fit):
    p = fit.constrained
    j = 3
    bench = fit.spec.benchmarks[j]
    fam = fit.families[5]
    from latentscale.prediction import family_posterior

    alpha = family_posterior(fit, fam, parameter_uncertainty=False, n_samples=50).mean
    c = fit.spec.floors[j]
    table = allocate(fit, benchmark=bench, family=fam, flops=BUDGETS, uncertainty=False)
    assert (table["kind"] == "benchmark").all() and (table["family"] == fam).all()
    for _, row in table.iterrows():
        mu = lambda X: c + (1 - c) * expit((X @ p["B"] + alpha) @ p["loadings"][:, j] + p["intercepts"][j])  # noqa: E731
        n, d, v = brute_force(fit, row["flops"], mu)
        assert row["size"] == pytest.approx(n, rel=2e-4)
        assert row["value"] == pytest.approx(v, abs=1e-9)
        assert 0 <= row["value"] <= 1


def test_family_effect_does_not_move_the_optimum(fit):
    base = allocate(fit, flops=BUDGETS, uncertainty=False)
    fam = fit.families[2]
    from latentscale.prediction import family_posterior

    alpha = family_posterior(fit, fam, parameter_uncertainty=False, n_samples=50).mean
    with_fam = allocate(fit, flops=BUDGETS, family=fam, uncertainty=False)
    np.testing.assert_allclose(with_fam["size"], base["size"], rtol=1e-12)
    np.testing.assert_allclose(with_fam["tokens"], base["tokens"], rtol=1e-12)
    shift = np.repeat(alpha, len(BUDGETS))  # skill blocks in order
    np.testing.assert_allclose(with_fam["value"] - base["value"], shift, atol=1e-10)
    assert np.any(np.abs(alpha) > 1e-3)
    # A benchmark's optimum does not move either; its score does.
    b0 = allocate(fit, benchmark="b5", flops=BUDGETS, uncertainty=False)
    b1 = allocate(fit, benchmark="b5", flops=BUDGETS, family=fam, uncertainty=False)
    np.testing.assert_allclose(b1["size"], b0["size"], rtol=1e-12)
    assert not np.allclose(b1["value"], b0["value"])


@pytest.mark.parametrize("target", [{"skill": "b1"}, {"skill": "b2"}, {"benchmark": "b4"}, {"benchmark": "b5"}])
def test_closed_form_equals_numeric_search(fit, target):
    fam = fit.families[7]
    closed = allocate(fit, **target, family=fam, flops=BUDGETS, uncertainty=False, method="closed")
    numeric = allocate(fit, **target, family=fam, flops=BUDGETS, uncertainty=False, method="numeric")
    np.testing.assert_allclose(numeric["size"], closed["size"], rtol=1e-5)
    np.testing.assert_allclose(numeric["value"], closed["value"], rtol=1e-9, atol=1e-9)
    assert list(numeric["position"]) == list(closed["position"])


def test_extrapolation_and_feasibility_flags(fit):
    sizes, tokens = fit.data["size"], fit.data["tokens"]
    inside = allocate(fit, flops=BUDGETS, uncertainty=False)
    assert not inside["extrapolated"].any() and inside["feasible"].all()
    assert inside["size"].between(sizes.min() * (1 - 1e-9), sizes.max() * (1 + 1e-9)).all()
    # A wider box: the convex skill (b2) runs to the box's edge, beyond the data, and says so.
    wide = ((sizes.min() / 100, sizes.max() * 100), (tokens.min() / 100, tokens.max() * 100))
    table = allocate(fit, skill="b2", flops=BUDGETS + [1e27], box=wide, uncertainty=False)
    out = (table["size"] < sizes.min()) | (table["size"] > sizes.max()) | (table["tokens"] < tokens.min()) | (
        table["tokens"] > tokens.max())
    assert out.any()
    assert list(table["extrapolated"]) == list(out)
    assert table.loc[table["extrapolated"], "note"].str.contains("extrapolation").all()
    # A budget whose line misses the box entirely.
    lo_c = FLOPS_UNIT * sizes.min() * tokens.min()
    none = allocate(fit, skill="b1", flops=[lo_c / 10, lo_c * 10], uncertainty=False)
    assert list(none["feasible"]) == [False, True]
    assert none.loc[0, "note"].startswith("the budget line does not meet the box")
    assert np.isnan(none.loc[0, "size"]) and none.loc[0, "position"] == "none"


def test_default_budgets_span_the_data(fit):
    table = allocate(fit, skill="b1", uncertainty=False, points=7)
    flops = FLOPS_UNIT * fit.data["size"] * fit.data["tokens"]
    assert len(table) == 7
    assert table["flops"].iloc[0] == pytest.approx(flops.min()) and table["flops"].iloc[-1] == pytest.approx(flops.max())


def test_intervals_cover_the_estimate_and_shrink_with_the_covariance():
    widths = {}
    for se in (0.2, 0.02):
        f = make_fit(se=se)
        t = allocate(f, flops=BUDGETS, level=0.9, n_draws=800, seed=1)
        for col in ("size", "tokens", "tokens_per_param", "value"):
            assert (t[f"{col}_lower"] <= t[col] * (1 + 1e-9) + 1e-12).all(), col
            assert (t[f"{col}_upper"] >= t[col] * (1 - 1e-9) - 1e-12).all(), col
        inner = t[t["position"] == "interior"]
        assert len(inner)
        widths[se] = (np.log(inner["tokens_per_param_upper"] / inner["tokens_per_param_lower"]).to_numpy(),
                      (t["value_upper"] - t["value_lower"]).to_numpy())
        assert t["p_interior"].between(0, 1).all()
    assert np.all(widths[0.02][0] < widths[0.2][0] / 3)
    assert np.all(widths[0.02][1] < widths[0.2][1] / 3)
    # Same seed, same intervals; the draws are reproducible.
    f = make_fit(se=0.2)
    a = allocate(f, skill="b1", flops=BUDGETS, seed=3, n_draws=300)
    b = allocate(f, skill="b1", flops=BUDGETS, seed=3, n_draws=300)
    pd.testing.assert_frame_equal(a, b)


def test_interval_covers_the_true_ratio_by_simulation():
    """The interval for D*/N* comes from the spread of the optimum over draws: with se small, the
    95% interval of log(D*/N*) is close to the delta-method one, ±1.96·sd of (b2 − b1)/b3."""
    se = 0.01
    f = make_fit(se=se)
    t = allocate(f, skill="b1", flops=[3e22], box=((1e-3, 1e4), (1e-4, 1e4)), n_draws=4000, seed=2)
    scale = f.scaler.scale
    b1, b2, b3 = f.constrained["B"][:, 0] / scale
    # gradient of (b2 − b1)/b3 in the standardized B entries (each with variance se²)
    g = np.array([-1 / b3, 1 / b3, -(b2 - b1) / b3**2]) / scale
    sd = se * np.sqrt(np.sum(g**2))
    width = np.log(t["tokens_per_param_upper"] / t["tokens_per_param_lower"]).iloc[0]
    assert width == pytest.approx(2 * 1.959964 * sd, rel=0.08)


def test_errors(fit):
    with pytest.raises(ValueError, match="unknown skill 'nope'.*b1, b2"):
        allocate(fit, skill="nope")
    with pytest.raises(ValueError, match="unknown benchmark 'zz'"):
        allocate(fit, benchmark="zz")
    with pytest.raises(ValueError, match="not both"):
        allocate(fit, skill="b1", benchmark="b3")
    with pytest.raises(ValueError, match="level"):
        allocate(fit, level=1.5)
    with pytest.raises(ValueError, match="method"):
        allocate(fit, method="newton")
    with pytest.raises(ValueError, match="positive finite FLOPs"):
        allocate(fit, flops=[-1.0])
    with pytest.raises(ValueError, match="positive finite FLOPs"):
        allocate(fit, flops=[float("nan")])
    with pytest.raises(ValueError, match="size side of the box is reversed"):
        allocate(fit, box=((10, 1), None))
    with pytest.raises(ValueError, match="tokens side of the box must be positive"):
        allocate(fit, box=(None, (0, 1)))
    with pytest.raises(ValueError, match="box must be"):
        allocate(fit, box=(1, 2, 3))
    with pytest.raises(ValueError, match="n_draws"):
        allocate(fit, n_draws=1)
    with pytest.raises(ValueError, match="not in the fit's data"):
        allocate(fit, family="no-such-family", uncertainty=False)
    with pytest.raises(ValueError, match="reversed"):
        flops_range(1e22, 1e20)
    with pytest.raises(ValueError, match="at least 2"):
        flops_range(1e20, 1e22, 1)
    bare = make_fit(with_hessian=False)
    with pytest.raises(ValueError, match="no Hessian.*uncertainty=False"):
        allocate(bare)
    assert allocate(bare, uncertainty=False, flops=[1e22])["size_lower"].isna().all()
    nodata = make_fit()
    nodata.data = None
    with pytest.raises(ValueError, match="carries no data.*box="):
        allocate(nodata, uncertainty=False, flops=[1e22])
    t = allocate(nodata, uncertainty=False, flops=[1e22], box=((0.1, 100), (0.1, 10)))
    assert t["feasible"].all() and not t["extrapolated"].any()
    assert t["note"].str.contains("no data").all()
    # A Hessian that is not negative definite: allocate and predict refuse its covariance with the same advice.
    bent = make_fit()
    bent.hessian = np.eye(bent.theta.size)
    new = pd.DataFrame({"model": ["m"], "family": [bent.families[0]], "size": [5.0], "tokens": [1.0]})
    with pytest.warns(UserWarning, match="not positive definite"):
        with pytest.raises(ValueError, match="observed covariance is not finite.*--se opg; cov_kind='opg'.*--draws 0"):
            allocate(bent, flops=[1e22])
    bent = make_fit()  # a fresh one: the covariance (and its warning) is cached per fit
    bent.hessian = np.eye(bent.theta.size)
    with pytest.warns(UserWarning, match="not positive definite"):
        with pytest.raises(ValueError, match="observed covariance is not finite.*--se opg; se='opg'.*parameter-unc"):
            predict(bent, new, se="observed")


def test_plot_frontier_writes_png(fit, tmp_path):
    table = allocate(fit, flops=flops_range(1e20, 1e24, 5), n_draws=200)
    out = plot_frontier(table, fit, tmp_path / "frontier.png")
    assert out is not None
    data = (tmp_path / "frontier.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with pytest.raises(ValueError, match="empty"):
        plot_frontier(table.iloc[:0])


# ---- CLI -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fit_file(tmp_path_factory, fit):
    path = tmp_path_factory.mktemp("alloc") / "fit.json"
    fit.save(path)
    return path


def run(*args):
    from latentscale.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_allocate_table_csv_and_json(fit_file, tmp_path, fit):
    out = tmp_path / "t.csv"
    r = run("allocate", fit_file, "--skill", "b1", "--flops", "1e20..1e24", "--points", "5", "-o", out,
            "--draws", "300", "--plot", tmp_path / "f.png")
    assert r.exit_code == 0, r.output
    assert "skill b1" in r.stdout and "N* (B)" in r.stdout and "D*/N*" in r.stdout
    table = pd.read_csv(out)
    assert len(table) == 5 and set(table["target"]) == {"b1"}
    np.testing.assert_allclose(table["flops"], np.geomspace(1e20, 1e24, 5))
    direct = allocate(fit, skill="b1", flops=np.geomspace(1e20, 1e24, 5), n_draws=300)
    np.testing.assert_allclose(table["size"], direct["size"], rtol=1e-9)
    assert (tmp_path / "f.png").stat().st_size > 10_000
    r = run("allocate", fit_file, "--benchmark", "b4", "--flops", "1e21,1e23", "--json", "--draws", "0")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [row["target"] for row in doc["rows"]] == ["b4", "b4"] and doc["rows"][0]["size_lower"] is None
    r = run("allocate", fit_file, "--flops", "1e22", "--draws", "50", "--box-size", "0.01,1000",
            "--box-tokens", "0.01,100")
    assert r.exit_code == 0, r.output
    assert "skill b1" in r.stdout and "skill b2" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--skill", "math"], "unknown skill 'math'; this fit's skills are b1, b2"),
    (["--benchmark", "mmlu"], "unknown benchmark 'mmlu'"),
    (["--skill", "b1", "--benchmark", "b3"], "not both"),
    (["--flops", "1e20-1e25"], "bad --flops '1e20-1e25'"),
    (["--flops", "1e25..1e20"], "reversed"),
    (["--flops", "-5"], "bad --flops"),
    (["--flops", "1e20..1e22", "--points", "1"], "at least 2 points"),
    (["--box-size", "1"], "bad --box-size '1'"),
    (["--box-tokens", "5,1"], "reversed"),
    (["--box-size", "0,10"], "positive"),
    (["--level", "95"], "bad --level"),
    (["--family", "nobody"], "unknown family 'nobody'"),
])
def test_cli_allocate_errors(fit_file, args, message):
    r = run("allocate", fit_file, *args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr


def test_cli_allocate_bad_files(tmp_path):
    r = run("allocate", tmp_path / "missing.json")
    assert r.exit_code == 2 and "no such" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = run("allocate", bad)
    assert r.exit_code == 2 and "not a latentscale fit" in r.stderr
    r = run("allocate", tmp_path)
    assert r.exit_code == 2 and "is a folder" in r.stderr
