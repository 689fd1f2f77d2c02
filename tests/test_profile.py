"""Profile-likelihood intervals (``FitResult.profile``, ``latentscale confint``).

The ends are checked against an independent constrained maximization (scipy's L-BFGS-B with the
coordinate held by its bounds) of the same likelihood, against the Wald interval where ℓ is close
to quadratic, and for an estimate on the boundary (a residual SD of data without residuals: the
interval is open towards 0); a fit moved off its optimum is caught; the study and the command line
use the same intervals.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import chi2
from typer.testing import CliRunner

import latentscale as ls
from latentscale.cli.app import app
from latentscale.errors import InputError
from latentscale.evaluation.simstudy import StudyConfig, run_replication, simulation_study
from latentscale.model.params import layout
from latentscale.model.simulate import random_params, simulate
from latentscale.model.spec import ModelSpec
from latentscale.results.profile import NotAtOptimumError, _coordinate_map, profile_intervals


@pytest.fixture(scope="module")
def data():
    true = random_params(1, 3, seed=2)
    data, _, _ = simulate(true, k=1, n_benchmarks=3, n_families=150, family_sizes=3, seed=4)
    return data


@pytest.fixture(scope="module")
def fit(data):
    return ls.LatentScalingModel(1, n_starts=1).fit(data)


@pytest.fixture(scope="module")
def profiled(fit):
    return fit.profile(["intercept[b2]", "precision[b3]", "B[log_size,b1]"])


def _constrained_max(fit, k: int, t: float) -> float:
    """max ℓ over θ with θ_k = t, by scipy's L-BFGS-B from θ̂ (bounds hold θ_k)."""
    ml = fit.loglikelihood()
    bounds = list(fit.layout.bounds)
    bounds[k] = (t, t)
    x0 = np.array(fit.theta, float)
    x0[k] = t

    def f(th):
        v, g = ml.loglike_and_score(th)
        return -v, -g

    r = minimize(f, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 500, "gtol": 1e-8})
    return -float(r.fun)


def test_profile_ends_lie_where_the_likelihood_has_fallen_by_the_chi2_quantile(fit, profiled):
    half = chi2.ppf(0.95, 1) / 2.0
    ll_hat = fit.loglikelihood().loglike(fit.theta)
    names = fit.param_names
    for name in ("intercept[b2]", "B[log_size,b1]"):  # linear coordinates: the ends are θ_k itself
        k = names.index(name)
        for end in ("lower", "upper"):
            drop = ll_hat - _constrained_max(fit, k, profiled.at[name, end])
            assert drop == pytest.approx(half, abs=0.05), (name, end)
        # and the held parameter alone (the others at θ̂) falls further: the profile maximizes over them
        th = np.array(fit.theta, float)
        th[k] = profiled.at[name, "upper"]
        assert ll_hat - fit.loglikelihood().loglike(th) > half + 0.05
    k = names.index("precision[b3]")  # a log coordinate: the end is exp(θ_k)
    drop = ll_hat - _constrained_max(fit, k, float(np.log(profiled.at["precision[b3]", "lower"])))
    assert drop == pytest.approx(half, abs=0.05)
    assert (profiled[["lower_status", "upper_status"]] == "ok").all(axis=None) and profiled["converged"].all()


def test_profile_is_the_same_on_any_number_of_threads(fit, profiled):
    """Each end is searched on its own fork of the likelihood from θ̂'s modes: three threads give the
    fixture's intervals (one thread in the test workers) to the last bit, parameters in another order."""
    import pandas as pd

    from latentscale import config

    previous = config.set_evaluation_threads(3)
    try:
        again = fit.profile(["precision[b3]", "intercept[b2]"])
    finally:
        config.set_evaluation_threads(previous)
    pd.testing.assert_frame_equal(again, profiled.loc[["precision[b3]", "intercept[b2]"]], check_exact=True)


def test_profile_is_close_to_wald_where_the_likelihood_is_quadratic(profiled):
    width = profiled["upper"] - profiled["lower"]
    wald = profiled["wald_upper"] - profiled["wald_lower"]
    assert ((width / wald - 1).abs() < 0.2).all()
    assert ((profiled["lower"] < profiled["estimate"]) & (profiled["estimate"] < profiled["upper"])).all()
    # the precision's profile is skewed to the right like its log-scale Wald interval
    p = profiled.loc["precision[b3]"]
    assert p["upper"] - p["estimate"] > p["estimate"] - p["lower"]


def test_traces_pass_through_the_ends_and_plot(fit, profiled, tmp_path):
    from latentscale.results.profile import plot_profiles

    table, traces = fit.profile(["intercept[b2]", "precision[b3]"], with_traces=True)
    z = float(np.sqrt(chi2.ppf(0.95, 1)))
    for name in table.index:
        pts = traces[traces["parameter"] == name].sort_values("value")
        assert np.all(np.diff(pts["zeta"].to_numpy()) > 0)  # ζ increases with the parameter
        # interpolating the trace at ±z gives the interval's ends
        for end, target in (("lower", -z), ("upper", z)):
            assert np.interp(target, pts["zeta"], pts["value"]) == pytest.approx(table.at[name, end], rel=0.02)
        assert pts.loc[pts["zeta"] == 0.0, "value"].item() == pytest.approx(table.at[name, "estimate"])
    path = plot_profiles(table, traces, 0.95, tmp_path / "profiles.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_narrower_level_gives_a_nested_interval(fit, profiled):
    half = fit.profile("intercept[b2]", level=0.5).loc["intercept[b2]"]
    full = profiled.loc["intercept[b2]"]
    assert full["lower"] < half["lower"] < half["estimate"] < half["upper"] < full["upper"]
    np.testing.assert_allclose(fit.conf_int(0.5, method="profile", params="intercept[b2]").to_numpy(),
                               [[half["lower"], half["upper"]]], rtol=1e-6)


def test_an_sd_estimated_at_zero_has_an_interval_open_towards_zero():
    # no residuals in the data: τ of each benchmark is estimated on (or near) its lower bound
    true = random_params(1, 3, seed=2)
    data, _, _ = simulate(true, k=1, n_benchmarks=3, n_families=60, family_sizes=3, seed=5)
    fit = ls.LatentScalingModel(1, residual=True, n_starts=1).fit(data)
    row = fit.profile("residual_sd[b3]").loc["residual_sd[b3]"]
    assert row["lower_status"] == "bound"
    assert row["lower"] == pytest.approx(np.exp(fit.layout.lower[fit.param_names.index("residual_sd[b3]")]))
    assert row["upper_status"] == "ok" and 0.0 < row["upper"] < 2.0


def test_a_fit_off_its_optimum_is_caught(fit):
    theta = np.array(fit.theta, float)
    theta[fit.param_names.index("intercept[b1]")] += 0.3  # move one coordinate; profile another
    moved = replace(fit, theta=theta)
    with pytest.raises(NotAtOptimumError, match="not at the maximum"):
        moved.profile("precision[b2]")


def test_correlations_of_three_skills_depend_on_several_coordinates():
    spec = ModelSpec(benchmarks=("a", "b", "c", "d"), anchors=("a", "b", "c"), floors=(0.0,) * 4)
    lay = layout(spec)
    theta = np.random.default_rng(0).normal(0, 0.5, lay.size)
    coord = _coordinate_map(lay, theta)
    several = {n for n, c in zip(lay.names, coord) if c < 0}
    assert several == {"corr[c,a]", "corr[c,b]"}  # the third skill's row of L has two coordinates; corr[b,a] one
    single = [i for i, c in enumerate(coord) if c >= 0]
    assert all(coord[i] == i for i in single)  # every other parameter is its own coordinate's


def test_bad_requests(fit):
    with pytest.raises(InputError, match="neither a parameter nor a block.*intercept"):
        fit.profile("nonsense")
    with pytest.raises(InputError, match="level"):
        fit.profile("intercept", level=1.5)
    with pytest.raises(InputError, match="carries none"):
        replace(fit, data=None).profile("intercept")
    with pytest.raises(InputError, match="method"):
        fit.conf_int(method="bootstrap")
    with pytest.raises(InputError, match="max_evals"):
        profile_intervals(fit, "intercept", max_evals=1)


def test_study_reports_profile_coverage():
    cfg = StudyConfig(k=1, n_benchmarks=3, n_families=120, family_sizes=2, missing=0.1,
                      fit_options={"n_starts": 1}, profile_blocks=("intercept",))
    r = run_replication(0, cfg)
    p = r["params"]
    rows = p["block"] == "intercept"
    assert p.loc[rows, "profile_covered"].isin([0.0, 1.0]).all() and p.loc[~rows, "profile_covered"].isna().all()
    assert r["profile_status"] == "ok"
    with pytest.raises(InputError, match="not a parameter block.*intercept"):
        simulation_study(StudyConfig(k=1, n_benchmarks=3, profile_blocks=("link_power",)), 1)
    with pytest.raises(InputError, match="several coordinates"):
        simulation_study(StudyConfig(k=3, n_benchmarks=3, profile_blocks=("corr",)), 1)


def test_cli_confint(fit, profiled, tmp_path):
    path = fit.save(tmp_path / "fit.json")
    runner = CliRunner()
    res = runner.invoke(app, ["confint", str(path), "-p", "intercept[b2],B[log_size,b1]", "--json", "-q"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    got = {r["parameter"]: (r["lower"], r["upper"]) for r in doc["intervals"]}
    assert list(got) == ["intercept[b2]", "B[log_size,b1]"]
    for name, (lo, hi) in got.items():
        assert lo == pytest.approx(profiled.at[name, "lower"], abs=1e-4)
        assert hi == pytest.approx(profiled.at[name, "upper"], abs=1e-4)
    res = runner.invoke(app, ["confint", str(path), "-p", "intercept", "--method", "wald"])
    assert res.exit_code == 0 and "Wald" in res.stdout and "intercept[b3]" in res.stdout
    res = runner.invoke(app, ["confint", str(path), "-p", "intercept", "--method", "wald", "--plot",
                              str(tmp_path / "p.png")])
    assert res.exit_code == 2 and "--method profile" in res.output
    res = runner.invoke(app, ["confint", str(path), "-p", "slope"])
    assert res.exit_code == 2 and "neither a parameter nor a block" in res.output


class _Toy:
    """ℓ(θ) = −½(θ₁ − θ₀)² − e^{−2θ₀}: its profile in θ₀ is −e^{−2θ₀} (flat towards +∞, steep towards −∞)."""

    def loglike_and_score(self, th):
        a, b = float(th[0]), float(th[1])
        return -0.5 * (b - a) ** 2 - np.exp(-2 * a), np.array([(b - a) + 2 * np.exp(-2 * a), -(b - a)])

    def loglike(self, th):
        return self.loglike_and_score(th)[0]

    def fork(self):  # no state to keep apart: the profile's ends may share it
        return self

    def set_warm_modes(self, modes):  # no random effects, no modes
        pass


def test_an_end_far_along_a_flat_profile_is_found_exactly():
    # The maximum sits on the box's upper edge (θ₀ = 8) where the curvature is 4e^-16: the Wald step
    # reaches the box's other edge, and the profile is flat near θ̂ and steep far away (a ceiling far
    # above the data): interpolation alone stalls at the flat end. The lower end solves
    # e^{-2t} - e^{-16} = χ²₁(0.95)/2.
    from types import SimpleNamespace

    from latentscale.results.profile import _Profiler

    prof = object.__new__(_Profiler)
    prof.fit = SimpleNamespace(param_names=["a", "b"])
    prof.ml = _Toy()
    prof.theta = np.array([8.0, 8.0])
    prof.lo, prof.hi = np.array([-3.0, -50.0]), np.array([8.0, 50.0])
    prof.gtol, prof.maxiter = 1e-9, 200
    prof.ll_hat = prof.ml.loglike(prof.theta)
    prof.modes = []
    e = np.exp(-16.0)
    prof.H = -np.array([[1.0 + 4 * e, -1.0], [-1.0, 1.0]])
    prof.cov = np.linalg.inv(-prof.H)
    z = float(np.sqrt(chi2.ppf(0.95, 1)))
    t, status, fits, converged, _ = prof.end(0, -1, z, 0.01, 20)
    exact = -0.5 * np.log(z * z / 2 + e)
    assert status == "ok" and converged and fits <= 40  # 20 points, two fits for one beyond the threshold
    assert t == pytest.approx(exact, abs=0.01)
    t, status, _, _, _ = prof.end(0, 1, z, 0.01, 20)
    assert status == "bound" and t == 8.0  # open upwards: the profile never falls
