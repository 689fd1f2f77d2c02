"""Optimal design and updates, checked against brute force on a one-skill model.

The fit is a FitResult at the true parameters of a simulation (no estimation), so the family
posterior is an exact Bayesian quantity a fine grid over α computes independently: the expected
variance reduction of a candidate must match a Monte Carlo estimate of it built on that grid,
and an updated fit's posteriors must equal those of a fit holding the same rows.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit
from typer.testing import CliRunner

from latentscale.cli.app import app
from latentscale.data.validate import DataError
from latentscale.design import design_evaluations
from latentscale.design.train import design_training
from latentscale.design.value import DesignProblem, FamilyDesign
from latentscale.errors import InputError
from latentscale.model.covariates import CovariateScaler
from latentscale.model.simulate import simulate
from latentscale.prediction import family_posteriors
from latentscale.prediction.update import update
from latentscale.results.fit_result import FitResult
from test_likelihood import scipy_beta_logpdf

FAMILY = "fam004"


@pytest.fixture(scope="module")
def k1():
    """A one-skill truth fit whose family FAMILY has 3 models and 5 of its 12 cells evaluated."""
    data, true, spec = simulate(k=1, n_benchmarks=4, n_families=30, family_sizes=3, seed=11)
    frame = data.frame.copy()
    rows = frame.index[frame["family"] == FAMILY]
    hide = np.ones((3, 4), bool)
    hide[[0, 0, 1, 2, 2], [0, 2, 1, 0, 3]] = False
    values = frame.loc[rows, list(spec.benchmarks)].to_numpy().copy()
    full = values.copy()
    values[hide] = np.nan
    frame.loc[rows, list(spec.benchmarks)] = values
    scaler = CovariateScaler.fit(data.frame["size"], data.frame["tokens"])
    fit = FitResult.from_params(
        true, spec, scaler, log_likelihood=0.0, method="aghq", n_obs=int(frame[list(spec.benchmarks)].notna().sum().sum()),
        n_models=len(frame), n_families=frame["family"].nunique(), families=tuple(pd.unique(frame["family"])),
        models=tuple(frame.index), data=frame[["family", "group", "size", "tokens", *spec.benchmarks]])
    return fit, full


def grid_posterior(fit, rows: pd.DataFrame):
    """α grid, log posterior (unnormalized) given the rows' evaluated cells, and μ (G, n, J),
    φ (J,) of the rows' models on the grid."""
    p = fit.constrained
    X = fit.scaler.transform(rows["size"], rows["tokens"])
    y = np.clip(rows[list(fit.spec.benchmarks)].to_numpy(float), *fit.spec.clip)
    grid = np.linspace(-7, 7, 1401)
    c = np.asarray(fit.spec.floors)
    phi = p["precision"]
    theta = (X @ p["B"])[:, 0][None, :] + grid[:, None]
    mu = c + (1 - c) * expit(theta[:, :, None] * p["loadings"][0] + p["intercepts"])
    logpost = np.nansum(scipy_beta_logpdf(y[None], phi * mu, phi * (1 - mu)), axis=(1, 2)) + stats.norm.logpdf(grid)
    return grid, logpost, mu, phi


def normalized(logpost: np.ndarray) -> np.ndarray:
    w = np.exp(logpost - logpost.max(axis=-1, keepdims=True))
    return w / w.sum(axis=-1, keepdims=True)


def target_variance(w, mu, phi, cells) -> np.ndarray:
    """Σ over cells (i, j) of the predictive variance of y_ij under grid weights w (..., G)."""
    total = 0.0
    for i, j in cells:
        m = mu[:, i, j]
        m1 = w @ m
        m2 = w @ (m**2 + m * (1 - m) / (1 + phi[j]))
        total = total + m2 - m1**2
    return total


def mc_reduction(fit, rows, cell, targets, rng, n: int = 2000) -> tuple[float, float, float]:
    """Monte Carlo over outcomes of ``cell``: α from the grid posterior, y from the model, the exact
    grid update; the variance of the ``targets`` cells before, and its expected reduction with its SE."""
    grid, logpost, mu, phi = grid_posterior(fit, rows)
    w = normalized(logpost)
    before = float(target_variance(w, mu, phi, targets))
    i, j = cell
    a = rng.choice(len(grid), size=n, p=w)
    m = mu[a, i, j]
    y = np.clip(rng.beta(phi[j] * m, phi[j] * (1 - m)), 1e-9, 1 - 1e-9)
    lik = scipy_beta_logpdf(y[:, None], phi[j] * mu[None, :, i, j], phi[j] * (1 - mu[None, :, i, j]))
    after = target_variance(normalized(logpost[None] + lik), mu, phi, [t for t in targets if t != cell])
    return before, before - after.mean(), after.std(ddof=1) / np.sqrt(n)


def test_expected_variance_reduction_matches_monte_carlo_on_the_grid(k1):
    fit, _ = k1
    rows = fit.data[fit.data["family"] == FAMILY]
    names, benchmarks = list(rows.index), list(fit.spec.benchmarks)
    missing = [(i, j) for i in range(3) for j in range(4) if np.isnan(rows.iloc[i, 4 + j])]
    rng = np.random.default_rng(0)
    # Target: every unevaluated score (a chosen cell leaves it).
    table = design_evaluations(fit, [FAMILY], n_draws=16000, n_fantasies=500, batch=0,
                               seed=3).table.set_index(["model", "benchmark"])
    assert len(table) == len(missing) == 7
    for cell in missing:
        before, mc, se = mc_reduction(fit, rows, cell, missing, rng)
        got = table.loc[(names[cell[0]], benchmarks[cell[1]])]
        assert got["variance_before"] == pytest.approx(before, rel=0.05)
        assert abs(got["reduction"] - mc) < 4 * se + 0.02 * mc, (cell, got["reduction"], mc, se)
    # Target: the last model's scores, candidates the other models' cells: the reduction is all information
    # (a few per cent of the variance, so the posterior needs many draws for a per-cent check).
    last = [c for c in missing if c[0] == 2]
    others = [c for c in missing if c[0] != 2]
    cands = pd.DataFrame({"model": [names[i] for i, _ in others], "benchmark": [benchmarks[j] for _, j in others]})
    table = design_evaluations(fit, [FAMILY], "model", model=names[2], candidates=cands, n_draws=16000,
                               n_fantasies=500, batch=0, seed=3).table.set_index(["model", "benchmark"])
    for cell in others:
        before, mc, se = mc_reduction(fit, rows, cell, last, rng)
        got = table.loc[(names[cell[0]], benchmarks[cell[1]])]
        assert got["variance_before"] == pytest.approx(before, rel=0.05)
        assert mc > 0 and abs(got["reduction"] - mc) < 4 * se + 0.08 * mc, (cell, got["reduction"], mc, se)


def test_engine_matches_closed_form_for_a_gaussian_like_cell():
    """Two draws, one informative cell: observing it tells which draw is true, so the expected
    remaining variance of a target that equals the draw index is ~0 and the reduction is its variance."""
    mu = np.array([[0.05], [0.95]])
    phi = np.full((2, 1), 500.0)
    g1 = np.array([[0.0], [1.0]])
    problem = DesignProblem("f", mu, phi, g1, g1**2, np.array([-1]), np.array([1.0]))
    fd = FamilyDesign(problem, n_fantasies=64, seed=0)
    assert fd.value() == pytest.approx(0.25)
    assert fd.values_with(np.array([0]))[0] == pytest.approx(0.0, abs=1e-10)


def test_greedy_batch_is_ordered_and_has_no_repeats(k1):
    fit, _ = k1
    result = design_evaluations(fit, [FAMILY], batch=3, n_draws=1000, n_fantasies=128)
    batch = result.batch
    assert list(batch["order"]) == [1, 2, 3]
    assert not batch.duplicated(["model", "benchmark"]).any()
    # The first pick is the best single candidate; every pick lowers the expected variance.
    assert (batch.iloc[0]["model"], batch.iloc[0]["benchmark"]) == tuple(
        result.table.sort_values("reduction_per_cost", ascending=False).iloc[0][["model", "benchmark"]])
    assert np.all(batch["reduction"] > 0)
    assert np.all(np.diff(batch["expected_variance"]) < 0)
    assert list(result.table["batch_order"].head(3)) == [1.0, 2.0, 3.0]


def test_costs_divide_the_reduction(k1):
    fit, _ = k1
    base = design_evaluations(fit, [FAMILY], batch=0)
    cands = base.table[["model", "benchmark"]].copy()
    cands["cost"] = np.where(cands.index == 0, 100.0, 1.0)  # the best cell becomes expensive
    costly = design_evaluations(fit, [FAMILY], batch=0, candidates=cands)
    best = base.table.iloc[0]
    row = costly.table.set_index(["model", "benchmark"]).loc[(best["model"], best["benchmark"])]
    assert row["reduction"] == pytest.approx(best["reduction"], rel=0.1)  # other fantasies: Monte Carlo noise
    assert row["reduction_per_cost"] == pytest.approx(row["reduction"] / 100.0)
    assert costly.table.iloc[0]["model"] != best["model"] or costly.table.iloc[0]["benchmark"] != best["benchmark"]


def test_skill_and_ranking_targets(k1):
    fit, _ = k1
    skill = fit.spec.skills[0]
    alone = design_evaluations(fit, [FAMILY], "skill", skill=skill, batch=0)
    post = family_posteriors(fit, [FAMILY], parameter_uncertainty=False)[FAMILY]
    assert alone.table["variance_before"].iloc[0] == pytest.approx(post.sd[0] ** 2, rel=0.1)
    assert np.all(alone.table["reduction"] > 0)
    both = design_evaluations(fit, [FAMILY, "fam001"], "ranking", skill=skill, batch=1)
    assert set(both.table["family"]) == {FAMILY}  # fam001 is fully evaluated: no candidates of its own
    assert "difference" in both.target


def test_new_model_candidates_and_training_runs(k1):
    fit, _ = k1
    cands = pd.DataFrame({"model": ["new-big"] * 4, "benchmark": list(fit.spec.benchmarks), "family": FAMILY,
                          "size": 50.0, "tokens": 2.0})
    target_model = fit.data.index[fit.data["family"] == FAMILY][1]
    result = design_evaluations(fit, [FAMILY], "model", model=target_model, candidates=cands, batch=0)
    assert set(result.table["model"]) == {"new-big"}
    runs = pd.DataFrame({"size": [1.0, 10.0, 100.0], "tokens": [1.0, 1.0, 1.0]})
    train = design_training(fit, FAMILY, runs, "skill", skill=fit.spec.skills[0], at=(100.0, 1.0), batch=1)
    assert list(train.table["flops"].sort_values()) == pytest.approx([6e21, 6e22, 6e23])
    assert np.all(train.table["reduction"] > 0)
    scores = design_training(fit, FAMILY, runs, "scores", benchmarks=["b2"], batch=0)
    assert len(scores.table) == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"families": ["nope"]}, "unknown family"),
    ({"families": [FAMILY], "target": "what"}, "unknown target"),
    ({"families": [FAMILY], "target": "skill"}, "needs a skill"),
    ({"families": [FAMILY], "target": "ranking", "skill": "b1"}, "two families"),
    ({"families": [], "target": "scores"}, "name the famil"),
    ({"families": None, "target": "model", "model": "nope"}, "not among the evaluated rows"),
])
def test_design_errors(k1, kwargs, message):
    fit, _ = k1
    families = kwargs.pop("families")
    with pytest.raises(InputError, match=message):
        design_evaluations(fit, families, **kwargs)


@pytest.mark.parametrize("cands, message", [
    (pd.DataFrame({"model": ["x"]}), "lacks column"),
    (pd.DataFrame({"model": ["x"], "benchmark": ["zz"]}), "not among the fit's benchmarks"),
    (pd.DataFrame({"model": ["x"], "benchmark": ["b1"]}), "not in the data"),
    (pd.DataFrame({"model": ["m"], "benchmark": ["b1"], "cost": [0.0]}), "positive number"),
    (pd.DataFrame({"model": ["m", "m"], "benchmark": ["b2", "b2"]}), "listed twice"),
    (pd.DataFrame({"model": ["m"], "benchmark": ["b1"]}), "already evaluated"),
])
def test_candidate_errors(k1, cands, message):
    fit, _ = k1
    first = fit.data.index[fit.data["family"] == FAMILY][0]
    cands = cands.replace({"m": first})
    with pytest.raises((DataError, InputError), match=message):
        design_evaluations(fit, [FAMILY], candidates=cands)


def test_training_errors(k1):
    fit, _ = k1
    with pytest.raises(DataError, match="lacks column"):
        design_training(fit, FAMILY, pd.DataFrame({"size": [1.0]}), skill="b1")
    with pytest.raises(DataError, match="positive number"):
        design_training(fit, FAMILY, pd.DataFrame({"size": [-1.0], "tokens": [1.0]}), skill="b1")
    with pytest.raises(InputError, match="needs a skill"):
        design_training(fit, FAMILY, pd.DataFrame({"size": [1.0], "tokens": [1.0]}))
    with pytest.raises(InputError, match="at must be"):
        design_training(fit, FAMILY, pd.DataFrame({"size": [1.0], "tokens": [1.0]}), skill="b1", at=(0.0, 1.0))


# ---- update --------------------------------------------------------------------------------
def test_update_gives_the_posteriors_of_a_fit_holding_the_rows(k1):
    fit, full = k1
    fam_rows = fit.data.index[fit.data["family"] == FAMILY]
    # The fit with every cell of FAMILY, and one without its rows: updating the latter with them
    # must give the former's posteriors (same parameters, same data).
    complete = fit.data.copy()
    complete.loc[fam_rows, list(fit.spec.benchmarks)] = full
    with_rows = dataclasses.replace(fit, data=complete)
    without = dataclasses.replace(fit, data=complete.drop(index=fam_rows[1:]))
    new = complete.loc[fam_rows[1:]].rename_axis("model").reset_index()
    updated = update(without, new)
    assert updated.diagnostics["update"]["scores_added"] == int(np.isfinite(full[1:]).sum())
    assert updated.diagnostics["update"]["models_added"] == 2
    np.testing.assert_array_equal(updated.theta, fit.theta)
    a = family_posteriors(updated, [FAMILY], parameter_uncertainty=False, seed=3)[FAMILY]
    b = family_posteriors(with_rows, [FAMILY], parameter_uncertainty=False, seed=3)[FAMILY]
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-10)
    np.testing.assert_allclose(a.cov, b.cov, atol=1e-10)
    # Filling cells of a model already in the fit works the same way.
    partial = update(fit, pd.DataFrame({"model": [fam_rows[0]], "family": [FAMILY],
                                        "size": [fit.data.loc[fam_rows[0], "size"]],
                                        "tokens": [fit.data.loc[fam_rows[0], "tokens"]], "b2": [full[0, 1]]}))
    assert partial.diagnostics["update"]["models_updated"] == 1
    assert partial.data.loc[fam_rows[0], "b2"] == pytest.approx(full[0, 1])


def test_update_of_a_new_family_and_save_round_trip(k1, tmp_path):
    fit, full = k1
    new = pd.DataFrame({"model": ["n1", "n2"], "family": "brand-new", "size": [2.0, 8.0], "tokens": [1.0, 1.0],
                        "b1": [0.4, 0.6], "b3": [0.3, np.nan]})
    updated = update(fit, new)
    assert updated.diagnostics["update"]["families_added"] == ["brand-new"]
    post = family_posteriors(updated, ["brand-new"], parameter_uncertainty=False)["brand-new"]
    assert post.n_obs == 3
    path = updated.save(tmp_path / "u.json")
    back = FitResult.load(path)
    assert back.diagnostics["update"]["scores_added"] == 3
    assert "n2" in back.data.index


def test_update_refit_starts_at_the_fit_and_records_the_update(k1):
    fit, full = k1
    fam_rows = fit.data.index[fit.data["family"] == FAMILY]
    new = pd.DataFrame({"model": [fam_rows[0]], "family": [FAMILY], "size": [fit.data.loc[fam_rows[0], "size"]],
                        "tokens": [fit.data.loc[fam_rows[0], "tokens"]], "b2": [full[0, 1]]})
    refit = update(fit, new, refit=True)
    assert refit.converged and refit.diagnostics["start_given"] and refit.options["n_starts"] == 1
    assert refit.diagnostics["update"]["refit"] and refit.n_obs == fit.n_obs + 1
    # The truth is near the optimum of 30 families' data, but not at it: the refit moves, a little.
    assert 0 < np.max(np.abs(refit.theta - fit.theta)) < 1.0


def test_update_errors(k1):
    fit, _ = k1
    first = fit.data.index[fit.data["family"] == FAMILY][0]
    row = fit.data.loc[[first]].rename_axis("model").reset_index()
    with pytest.raises(DataError, match="already in the fit"):
        update(fit, row)
    moved = row.assign(family="fam001", b1=np.nan, b2=np.nan, b3=np.nan, b4=0.5)
    with pytest.raises(DataError, match="another family"):
        update(fit, moved)


# ---- command line --------------------------------------------------------------------------
def test_cli_update_and_design(k1, tmp_path):
    fit, full = k1
    runner = CliRunner()
    path = fit.save(tmp_path / "fit.json")
    new = pd.DataFrame({"model": ["n1"], "family": [FAMILY], "size": [3.0], "tokens": [1.0], "b1": [0.5]})
    new.to_csv(tmp_path / "new.csv", index=False)
    res = runner.invoke(app, ["update", str(path), "--rows", str(tmp_path / "new.csv"), "-o",
                              str(tmp_path / "fit2.json"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["update"]["scores_added"] == 1 and doc["posteriors"][0]["family"] == FAMILY
    res = runner.invoke(app, ["design", "evaluate", str(tmp_path / "fit2.json"), "-f", FAMILY, "-b", "2",
                              "-o", str(tmp_path / "next.csv"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert len(doc["batch"]) == 2
    saved = pd.read_csv(tmp_path / "next.csv")
    assert len(saved) == len(doc["candidates"]) and "n1" in set(saved["model"])
    pd.DataFrame({"size": [1.0, 30.0], "tokens": [1.0, 1.0]}).to_csv(tmp_path / "runs.csv", index=False)
    res = runner.invoke(app, ["design", "train", str(path), "-f", FAMILY, "--runs", str(tmp_path / "runs.csv"),
                              "--skill", "b1", "--at", "30,1"])
    assert res.exit_code == 0, res.output
    assert "reduction_per_flop" in res.stdout
    res = runner.invoke(app, ["design", "evaluate", str(path), "-f", FAMILY, "--draws", "5"])
    assert res.exit_code == 2 and "at least 100" in res.stderr
    res = runner.invoke(app, ["update", str(path), "--rows", str(tmp_path / "new.csv"), "-o", str(path)])
    assert res.exit_code == 2 and "also an input" in res.stderr


# ---- what to train next for D*/N*: the expected information of a run ------------------------------
def with_hessian(fit):
    """The truth fit with the Hessian of its likelihood at the truth (the design's Σ)."""
    from latentscale.estimation.likelihood import MarginalLikelihood
    from latentscale.model.design import build_design
    from latentscale.prediction.predict import as_rows

    design, _ = build_design(as_rows(fit, fit.data), fit.spec.benchmarks, fit.spec.clip, scaler=fit.scaler)
    H = MarginalLikelihood(fit.spec, design, fit.quadrature).hessian(fit.theta, method="fd")
    return dataclasses.replace(fit, hessian=H)


def fantasies(fit, runs, M, seed=3):
    from latentscale.design.draws import family_draws

    draws = family_draws(fit, fit.data, [FAMILY], n_draws=M, seed=seed)[FAMILY]
    mu, phi = draws.scores(fit, runs["size"], runs["tokens"])
    return np.random.default_rng(seed).beta(phi * mu, phi * (1 - mu))


def test_run_information_is_the_expected_negative_hessian(k1):
    """E[s sᵀ] of the fantasies' conditional scores equals −E[ΔH] of the family's log-likelihood
    (information identity): it holds only if the fantasies come from the family's predictive."""
    from latentscale.design.information import LAPLACE, SplitDesign, pseudo_families
    from latentscale.design.train import check_runs
    from latentscale.estimation.likelihood import MarginalLikelihood
    from latentscale.model.design import build_design
    from latentscale.prediction.predict import as_rows

    fit, _ = k1
    P = fit.theta.size
    runs = check_runs(pd.DataFrame({"size": [30.0], "tokens": [2.0]}))
    M = 400
    rows = fit.data[fit.data["family"] == FAMILY]
    design = SplitDesign(fit, FAMILY, rows, runs, fantasies(fit, runs, M), np.eye(P), np.zeros(P))
    S = design.conditional_scores([[0]])[0]  # (M, P)
    opg = S.T @ S / M

    def hessian(frame):
        d, _ = build_design(as_rows(fit, frame), fit.spec.benchmarks, fit.spec.clip, scaler=fit.scaler)
        return MarginalLikelihood(fit.spec, d, LAPLACE).hessian(fit.theta, method="fd")

    frame = pseudo_families(rows, FAMILY, [design._models(m, [0]) for m in range(M)])
    expected = -(hessian(frame) / M - hessian(rows))
    rng = np.random.default_rng(0)
    for v in [*rng.normal(size=(4, P)), np.linalg.eigh(expected)[1][:, -1]]:
        a, b = v @ opg @ v, v @ expected @ v
        assert a == pytest.approx(b, rel=0.2)
        sd = np.std(S @ v) / np.sqrt(M)
        assert abs(np.mean(S @ v)) < 4 * sd  # the conditional score has mean zero


def interior_budget(fit):
    """(an interior budget, an edge budget) of the fit's first skill, by ``allocate``."""
    from latentscale.allocation import allocate

    table = allocate(fit, skill=fit.spec.skills[0], flops=np.geomspace(1e20, 1e25, 11), uncertainty=False)
    inner = table[table["position"] == "interior"].iloc[0]
    return float(inner["flops"]), float(inner["tokens_per_param"]), float(
        table.loc[table["position"] != "interior", "flops"].iloc[-1])


def test_allocation_target_split_and_errors(k1, tmp_path):
    """g is log(D*/N*) of ``allocate``; the target needs an interior optimum, a Hessian and a skill
    (a stand-in Hessian suffices: the errors come before any fantasy)."""
    from latentscale.design.information import split_and_gradient

    fit = dataclasses.replace(k1[0], hessian=-np.eye(k1[0].theta.size))
    C, per_param, edge = interior_budget(fit)
    g, grad = split_and_gradient(fit, fit.spec.skills[0], C)
    assert np.exp(g) == pytest.approx(per_param, rel=1e-9)
    assert np.count_nonzero(grad) == 3  # B only: (b₂ − b₁)/b₃ of the skill
    runs = pd.DataFrame({"size": [0.5, 5.0, 50.0], "tokens": [1.0, 1.0, 1.0]})
    with pytest.raises(InputError, match="edge of the box"):
        design_training(fit, FAMILY, runs, "allocation", skill=fit.spec.skills[0], flops=edge)
    with pytest.raises(InputError, match="needs the fit's Hessian"):
        design_training(k1[0], FAMILY, runs, "allocation", skill=fit.spec.skills[0], flops=C)
    with pytest.raises(InputError, match="needs a skill"):
        design_training(fit, FAMILY, runs, "allocation", flops=C)
    path = fit.save(tmp_path / "fit.json")
    runs.to_csv(tmp_path / "runs.csv", index=False)
    res = CliRunner().invoke(app, ["design", "train", str(path), "-f", FAMILY, "--runs", str(tmp_path / "runs.csv"),
                                   "--target", "allocation", "--skill", fit.spec.skills[0], "--flops", "-1"])
    assert res.exit_code == 2 and "positive budget" in res.stderr


@pytest.mark.slow
def test_allocation_target_ranks_runs_by_information(k1, tmp_path):
    """The D*/N* target: the variance before is the delta method's, every run reduces it, a batch's
    second run adds less than it would alone; the command gives the same ranking."""
    from latentscale.design.information import split_and_gradient

    fit = with_hessian(k1[0])
    C, _, _ = interior_budget(fit)
    _, grad = split_and_gradient(fit, fit.spec.skills[0], C)
    runs = pd.DataFrame({"size": [0.5, 5.0, 50.0], "tokens": [1.0, 1.0, 1.0]})
    res = design_training(fit, FAMILY, runs, "allocation", skill=fit.spec.skills[0], flops=C, batch=2,
                          n_fantasies=32)
    cov = fit.cov_theta("observed")
    assert res.table["variance_before"].iloc[0] == pytest.approx(grad @ cov @ grad, rel=1e-9)
    assert (res.table["reduction"] > 0).all()
    assert (res.table["expected_variance"] < res.table["variance_before"]).all()
    first, second = res.batch["run"]
    alone = res.table.set_index("run")["reduction"]
    assert res.batch["reduction"].iloc[1] < alone[second]
    assert "tokens per parameter" in res.target
    path = fit.save(tmp_path / "fit.json")
    runs.to_csv(tmp_path / "runs.csv", index=False)
    out = CliRunner().invoke(app, ["design", "train", str(path), "-f", FAMILY, "--runs", str(tmp_path / "runs.csv"),
                                   "--target", "allocation", "--skill", fit.spec.skills[0], "--fantasies", "32",
                                   "--flops", f"{C:.17g}", "--batch", "2", "--json"])
    assert out.exit_code == 0, out.output
    assert [c["run"] for c in json.loads(out.stdout)["candidates"]] == list(res.table["run"])
