"""Family posteriors and predictions, checked against brute force and against data drawn from the model.

Most tests use the true parameters of a simulation (a FitResult built from them, no fit), so
the family posterior and the predictive distribution are exact Bayesian quantities whose
calibration can be checked directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit

from latentscale.data.validate import DataError
from latentscale.model.covariates import CovariateScaler
from latentscale.model.simulate import simulate
from latentscale.prediction import compare_families, family_posterior, family_posteriors, predict, scaling_curve
from latentscale.results.fit_result import FitResult
from test_likelihood import scipy_beta_logpdf


def truth_fit(data, true, spec, keep=None) -> FitResult:
    """A FitResult at the true parameters, carrying ``data`` (or its rows ``keep``) as its rows."""
    frame = data.frame if keep is None else data.frame.loc[keep]
    scaler = CovariateScaler.fit(data.frame["size"], data.frame["tokens"])  # as simulate() standardizes
    return FitResult.from_params(
        true, spec, scaler, log_likelihood=0.0, method="aghq", n_obs=int(frame[list(spec.benchmarks)].notna().sum().sum()),
        n_models=len(frame), n_families=frame["family"].nunique(), families=tuple(pd.unique(frame["family"])),
        models=tuple(frame.index), data=frame[["family", "group", "size", "tokens", *spec.benchmarks]],
    )


@pytest.fixture(scope="module")
def k1():
    data, true, spec = simulate(k=1, n_benchmarks=4, n_families=30, family_sizes=3, seed=3)
    return data, true, spec, truth_fit(data, true, spec)


def brute_force_moments(fit, family):
    """Mode, mean and sd of α (K = 1) on a fine grid: p(α | y) ∝ Π Beta(y | α) N(α; 0, 1)."""
    p = fit.constrained
    rows = fit.data[fit.data["family"] == family]
    X = fit.scaler.transform(rows["size"], rows["tokens"])
    y = np.clip(rows[list(fit.spec.benchmarks)].to_numpy(float), *fit.spec.clip)
    grid = np.linspace(-8, 8, 16001)
    c = np.asarray(fit.spec.floors)
    phi = p["precision"]
    theta = (X @ p["B"])[:, 0][None, :] + grid[:, None]  # (G, n)
    mu = c + (1 - c) * expit(theta[:, :, None] * p["loadings"][0] + p["intercepts"])
    logpost = np.nansum(scipy_beta_logpdf(y[None], phi * mu, phi * (1 - mu)), axis=(1, 2)) + stats.norm.logpdf(grid)
    w = np.exp(logpost - logpost.max())
    w /= w.sum()
    mean = np.sum(w * grid)
    return grid[np.argmax(logpost)], mean, np.sqrt(np.sum(w * (grid - mean) ** 2))


def test_posterior_matches_brute_force(k1):
    _, _, _, fit = k1
    for family in ("fam001", "fam007"):
        post = family_posterior(fit, family, parameter_uncertainty=False, n_samples=4000)
        mode, mean, sd = brute_force_moments(fit, family)
        assert post.mode[0] == pytest.approx(mode, abs=2e-3)
        assert post.mean[0] == pytest.approx(mean, abs=1e-3)
        assert post.sd[0] == pytest.approx(sd, rel=1e-2)
        # The importance-resampled draws agree within Monte Carlo error.
        assert post.samples.shape == (4000, 1)
        assert abs(post.samples.mean() - mean) < 4 * sd / np.sqrt(4000) * 3
        assert post.samples.std() == pytest.approx(sd, rel=0.08)
        assert post.ess > 50
        assert post.n_models == 3


def test_posterior_from_rows_equals_by_name_and_is_deterministic(k1):
    data, _, _, fit = k1
    by_name = family_posterior(fit, "fam002", seed=5, parameter_uncertainty=False)
    rows = data.frame[data.frame["family"] == "fam002"].rename_axis("model").reset_index()
    from_rows = family_posterior(fit, rows=rows, seed=5, parameter_uncertainty=False)
    np.testing.assert_allclose(from_rows.mean, by_name.mean, atol=1e-10)
    np.testing.assert_array_equal(from_rows.samples, by_name.samples)
    again = family_posterior(fit, "fam002", seed=5, parameter_uncertainty=False)
    np.testing.assert_array_equal(again.samples, by_name.samples)
    # Rows of a family the fit never saw give a posterior too: more rows, narrower posterior.
    new = rows.assign(family="brand-new", model=rows["model"] + "-copy")
    one = family_posterior(fit, rows=new.iloc[:1], parameter_uncertainty=False)
    three = family_posterior(fit, rows=new, parameter_uncertainty=False)
    assert three.sd[0] < one.sd[0] < 1.0


def test_posterior_errors(k1):
    _, _, _, fit = k1
    with pytest.raises(ValueError, match="not in the fit"):
        family_posterior(fit, "no-such-family")
    with pytest.raises(ValueError, match="exactly one"):
        family_posterior(fit)
    with pytest.raises(ValueError, match="Hessian"):
        family_posterior(fit, "fam001")  # a truth fit has no Hessian: no parameter uncertainty
    with pytest.raises(ValueError, match="different families"):
        compare_families(fit, "fam001", "fam001", parameter_uncertainty=False)


def test_compare_families_is_antisymmetric(k1):
    _, _, _, fit = k1
    ab = compare_families(fit, "fam001", "fam002", parameter_uncertainty=False)
    ba = compare_families(fit, "fam002", "fam001", parameter_uncertainty=False)
    np.testing.assert_allclose(ab["mean"], -ba["mean"], atol=1e-12)
    np.testing.assert_allclose(ab["P(fam001 > fam002)"] + ba["P(fam002 > fam001)"], 1.0, atol=1e-3)
    posts = family_posteriors(fit, ["fam001", "fam002"], parameter_uncertainty=False)
    assert ab["mean"].iloc[0] == pytest.approx(posts["fam001"].mean[0] - posts["fam002"].mean[0], abs=0.05)


def coverage(pred: pd.DataFrame, actual: pd.DataFrame) -> pd.Series:
    a = actual.stack(future_stack=True).rename("actual").rename_axis(["model", "benchmark"])
    p = pred.join(a, on=["model", "benchmark"]).dropna(subset=["actual"])
    inside = (p["actual"] >= p["lower"]) & (p["actual"] <= p["upper"])
    return inside.groupby(p["level"]).mean()


@pytest.mark.slow
def test_predictive_intervals_are_calibrated_on_simulated_families():
    """Hold out the third model of 600 three-model families; predict it from the other two at the
    true parameters. The exact Bayesian predictive must cover at the nominal rate."""
    data, true, spec = simulate(k=2, n_benchmarks=5, n_families=600, family_sizes=3, seed=21)
    f = data.frame
    held = f.index[f.index.str.endswith("-m3")]
    fit = truth_fit(data, true, spec, keep=f.index.difference(held))
    new = f.loc[held, ["family", "size", "tokens"]].rename_axis("model").reset_index()
    levels = (0.5, 0.8, 0.95)
    pred = predict(fit, new, levels, parameter_uncertainty=False, n_samples=1000)
    cov = coverage(pred, f.loc[held, list(spec.benchmarks)])
    for level in levels:
        assert abs(cov[level] - level) < 0.03, cov
    # Expected-score intervals are narrower than observed-score ones (the Beta noise on top).
    narrower = (pred["expected_upper"] - pred["expected_lower"]) < (pred["upper"] - pred["lower"])
    assert narrower.mean() > 0.95
    # A new family (prior) is predicted with wider intervals than a family with two evaluated models.
    unseen = new.assign(family="unseen", model=new["model"] + "-u").iloc[:50]
    wide = predict(fit, unseen, (0.8,), parameter_uncertainty=False, n_samples=1000)
    narrow = pred[(pred["level"] == 0.8) & pred["model"].isin(new["model"].iloc[:50])]
    assert wide["new_family"].all() and not narrow["new_family"].any()
    assert (wide["upper"] - wide["lower"]).mean() > (narrow["upper"] - narrow["lower"]).mean()


def test_prediction_table_shape_and_order(k1):
    _, _, spec, fit = k1
    new = pd.DataFrame({"model": ["a", "b"], "family": ["fam001", "zzz"], "size": [3.0, 70.0], "tokens": [1.0, 2.0]})
    pred = predict(fit, new, [0.8, 0.95], parameter_uncertainty=False, n_samples=500)
    assert list(pred.columns[:8]) == ["model", "family", "benchmark", "mean", "median", "level", "lower", "upper"]
    assert len(pred) == 2 * spec.J * 2
    assert list(pred["model"].iloc[:4]) == ["a"] * 4
    assert pred["new_family"].tolist() == [False] * 8 + [True] * 8
    w80 = pred[pred["level"] == 0.8]
    w95 = pred[pred["level"] == 0.95]
    assert np.all(w95["lower"].to_numpy() <= w80["lower"].to_numpy())
    assert np.all(w95["upper"].to_numpy() >= w80["upper"].to_numpy())
    assert np.all((pred["lower"] <= pred["median"]) & (pred["median"] <= pred["upper"]))
    floors = np.tile(np.repeat(np.asarray(spec.floors), 2), 2)  # rows: model, benchmark, level
    assert np.all(pred["expected_lower"].to_numpy() >= floors - 1e-12)
    # Same inputs and seed: the same numbers.
    again = predict(fit, new, [0.8, 0.95], parameter_uncertainty=False, n_samples=500)
    pd.testing.assert_frame_equal(pred, again)


def test_prediction_ignores_score_columns_and_own_family_rows_matter(k1):
    data, _, spec, fit = k1
    base = pd.DataFrame({"model": ["n1"], "family": ["fam003"], "size": [10.0], "tokens": [1.0]})
    with_scores = base.assign(**{b: 0.99 for b in spec.benchmarks})
    a = predict(fit, base, [0.9], parameter_uncertainty=False, n_samples=500)
    b = predict(fit, with_scores, [0.9], parameter_uncertainty=False, n_samples=500)
    pd.testing.assert_frame_equal(a, b)
    # Conditioning rows replace the fit's rows of that family: scores that say "high skill" (high
    # where the loading is positive, at the floor where it is negative) move every prediction
    # in the direction of its loading.
    rows = data.frame[data.frame["family"] == "fam003"].rename_axis("model").reset_index()
    lam = fit.constrained["loadings"][0]
    high = rows.assign(**{b: (0.97 if l > 0 else c + 0.01) for b, l, c in zip(spec.benchmarks, lam, spec.floors)})
    c = predict(fit, base, [0.9], rows=high, parameter_uncertainty=False, n_samples=500)
    shift = c["mean"].to_numpy() - a["mean"].to_numpy()
    assert np.all(shift * np.sign(lam) > 0), (shift, lam)


def test_prediction_warns_when_a_model_is_in_sample(k1):
    data, _, _, fit = k1
    row = data.frame.iloc[[0]][["family", "size", "tokens"]].rename_axis("model").reset_index()
    with pytest.warns(UserWarning, match="in-sample"):
        predict(fit, row, [0.9], parameter_uncertainty=False, n_samples=200)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.drop(columns="tokens"), "lacks column"),
    (lambda d: d.assign(size=[-1.0, 2.0]), "'size' must be a positive number"),
    (lambda d: d.assign(tokens=["x", 1.0]), "'tokens' must be a positive number"),
    (lambda d: d.assign(model=["a", "a"]), "listed twice"),
    (lambda d: d.assign(family=[None, "f"]), "'family' is empty"),
])
def test_new_models_errors_name_the_problem(k1, change, message):
    _, _, _, fit = k1
    new = pd.DataFrame({"model": ["a", "b"], "family": ["fam001", "f"], "size": [1.0, 2.0], "tokens": [1.0, 1.0]})
    with pytest.raises(DataError, match=message):
        predict(fit, change(new), [0.9], parameter_uncertainty=False)


def test_bad_levels(k1):
    _, _, _, fit = k1
    new = pd.DataFrame({"model": ["a"], "family": ["fam001"], "size": [1.0], "tokens": [1.0]})
    for levels in ([1.0], [0.0], []):
        with pytest.raises(ValueError, match="level"):
            predict(fit, new, levels, parameter_uncertainty=False)


def test_scaling_curve_rises_with_size_for_positive_effects(k1):
    _, true, spec, fit = k1
    curve = scaling_curve(fit, "fam001", n_points=6, levels=(0.8,), parameter_uncertainty=False, n_samples=500)
    assert set(curve["benchmark"]) == set(spec.benchmarks) and len(curve) == 6 * spec.J
    # Expected score is monotone in size with the sign of loading × (B on log size + interaction × log D).
    B, scale = fit.constrained["B"][:, 0], fit.scaler.scale
    log_d = np.log(curve["tokens"].iloc[0])
    for b, lam in zip(spec.benchmarks, true["loadings"][0]):
        m = curve[curve["benchmark"] == b].sort_values("size")["mean"].to_numpy()
        slope = lam * (B[0] / scale[0] + B[2] * log_d / scale[2])
        assert np.all(np.diff(m) * np.sign(slope) > -0.01)
    assert not curve["extrapolated"].any()
    far = scaling_curve(fit, "fam001", sizes=[1e4], levels=(0.8,), parameter_uncertainty=False, n_samples=200)
    assert far["extrapolated"].all()
    chin = scaling_curve(fit, "fam001", sizes=[10.0], tokens_per_param=20, levels=(0.8,),
                         parameter_uncertainty=False, n_samples=200)
    assert chin["tokens"].iloc[0] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="not both"):
        scaling_curve(fit, "fam001", tokens=1.0, tokens_per_param=20)


def test_padding_leaves_every_family_unchanged(k1):
    """Designs are padded to a few sizes per octave (fewer compilations): the real families' log
    likelihood terms and posteriors are exactly those of the unpadded design."""
    import jax
    import jax.numpy as jnp

    from latentscale.estimation.likelihood import MarginalLikelihood
    from latentscale.model.observation import family_loglik_at
    from latentscale.model.params import unpack
    from latentscale.prediction.posterior import family_design

    _, _, spec, fit = k1
    design = family_design(fit, ["fam001", "fam002", "fam003"])
    padded = design.padded()
    assert padded.n_families > design.n_families and padded.n_obs > design.n_obs
    params = unpack(np.asarray(fit.theta), spec)
    alpha = np.random.default_rng(0).normal(size=(padded.n_families, spec.K))
    with jax.enable_x64(True):
        floors = jnp.asarray(spec.floors)
        a = family_loglik_at(jnp.asarray(alpha[: design.n_families]), params, design.arrays(), floors,
                             design.n_families)
        b = family_loglik_at(jnp.asarray(alpha), params, padded.arrays(), floors, padded.n_families)
    np.testing.assert_allclose(np.asarray(b)[: design.n_families], np.asarray(a), rtol=1e-12)
    # The marginal likelihood of the padded and the unpadded design, per family.
    pad = MarginalLikelihood(spec, design).loglikeobs(fit.theta)
    plain = MarginalLikelihood(spec, design, pad=False).loglikeobs(fit.theta)
    np.testing.assert_allclose(pad, plain, rtol=1e-12, atol=1e-12)
    # Posterior moments of a family alone and among others (different size buckets) agree.
    alone = family_posteriors(fit, ["fam001"], parameter_uncertainty=False, n_samples=200)["fam001"]
    among = family_posteriors(fit, [f"fam{i:03d}" for i in range(1, 21)], parameter_uncertainty=False,
                              n_samples=200)["fam001"]
    np.testing.assert_allclose(alone.mode, among.mode, atol=1e-9)
    np.testing.assert_allclose(alone.mean, among.mean, atol=1e-9)
    np.testing.assert_allclose(alone.cov, among.cov, atol=1e-9)


def test_extrapolation_flags_follow_the_covariate_set():
    """A law in size and tokens extrapolates outside their ranges; a law in log FLOPs only outside the
    range of FLOPs (a size beyond the data's, at tokens that keep N·D inside, is not extrapolation for it)."""
    from types import SimpleNamespace

    from latentscale.prediction.predict import extrapolated

    data = pd.DataFrame({"size": [1.0, 10.0, 100.0], "tokens": [10.0, 1.0, 0.1]})  # N·D = 10 for every row
    new = pd.DataFrame({"size": [1000.0, 10.0, 1.0, 5.0], "tokens": [0.01, 1.0, 100.0, 0.5]})  # N·D 10, 10, 100, 2.5
    fit = lambda covariates: SimpleNamespace(data=data, spec=SimpleNamespace(covariates=covariates))  # noqa: E731
    assert list(extrapolated(fit("paper"), new)) == [True, False, True, False]
    assert list(extrapolated(fit("size-tokens"), new)) == [True, False, True, False]
    assert list(extrapolated(fit("flops"), new)) == [False, False, True, True]
    assert np.isnan(extrapolated(SimpleNamespace(data=None, spec=None), new)).all()


@pytest.mark.parametrize("shape", [(4000, 7, 3), (9, 2), (1, 4), (2,)])
def test_quantiles_equal_numpys(shape):
    from latentscale.prediction.predict import quantiles

    x = np.random.default_rng(len(shape)).normal(size=shape).round(1)  # ties too
    qs = np.array([0.5, 0.1, 0.9, 0.025, 0.975, 0.0, 1.0])
    np.testing.assert_allclose(quantiles(x, qs), np.quantile(x, qs, axis=0), rtol=0, atol=1e-15)


def test_proposal_modes_move_with_theta_as_their_exact_derivative(k1):
    """The importance-sampling proposals follow each parameter draw along the modes' derivative in θ,
    taken by differences of the mode search: it agrees with forward-mode differentiation of the
    tracked mode (implicit function theorem) to the differences' error (the modes converge to ~1e-9,
    differenced over steps of 1e-4); a wrong derivative would be off by its own size."""
    import jax
    import jax.numpy as jnp

    from latentscale.estimation.adaptive import mode_and_scale
    from latentscale.model.observation import eta_bound
    from latentscale.model.params import layout
    from latentscale.prediction.posterior import family_design
    from latentscale.prediction.sampling import _linearized_modes

    _, _, spec, fit = k1
    design = family_design(fit, ["fam001", "fam002", "fam003", "fam004"]).padded()
    with jax.enable_x64(True):
        arrays = {**design.arrays(), "floors": jnp.asarray(spec.floors)}
        center = jnp.asarray(fit.theta)
        mode0, _, _, dmode = _linearized_modes(center, arrays, spec.structure, design.n_families)
        zeros = jnp.zeros((design.n_families, spec.K))

        def tracked(th):
            return mode_and_scale(layout(spec).unpack(th), arrays, arrays["floors"], zeros, design.n_families, spec.J,
                                  eta_bound(spec.logit_clip), track=True)[0]

        exact = np.asarray(jax.jacfwd(tracked)(center))
        np.testing.assert_allclose(np.asarray(tracked(center)), np.asarray(mode0), atol=1e-8)
    assert np.abs(exact).max() > 0.01
    np.testing.assert_allclose(np.asarray(dmode), exact, rtol=1e-4, atol=1e-5 * np.abs(exact).max())
