"""The power link μ = c + (1 − c)·κ·sigmoid(η + log γ)^γ per benchmark (variant ``power``).

γ = 1 is the sigmoid; γ → ∞ approaches the Gumbel link exp(−e^{−η}); the shift by log γ keeps the
curve's position as γ moves. The density and its hand-written derivatives are checked against scipy
and against automatic differentiation of a plain implementation; the model at γ = 1 against the model
without the link; the estimator against data drawn with the link.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import latentscale as ls
from latentscale.estimation.likelihood import MarginalLikelihood
from latentscale.model.design import build_design
from latentscale.model.observation import beta_eta_derivatives, beta_logpdf, link_shares, mean_score
from latentscale.model.params import layout, pack
from latentscale.model.simulate import random_params, simulate
from latentscale.model.variants import parse_variant, variant_name
from test_variants import assert_score_matches_differences


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def cells():
    rng = np.random.default_rng(0)
    n = 60
    return dict(eta=rng.normal(0, 2.5, n), y=rng.uniform(0.02, 0.98, n), c=rng.choice([0.0, 0.25], n),
                log_phi=rng.normal(3, 0.5, n), kappa=rng.uniform(0.6, 0.95, n), gamma=np.exp(rng.normal(0, 0.8, n)))


def _plain(eta, y, c, log_phi, kappa, gamma):
    """log Beta(y | φμ, φ(1 − μ)) written out, for automatic differentiation."""
    mu = c + (1 - c) * kappa * jax.nn.sigmoid(eta + jnp.log(gamma)) ** gamma
    phi = jnp.exp(log_phi)
    a, b = phi * mu, phi * (1 - mu)
    return ((a - 1) * jnp.log(y) + (b - 1) * jnp.log1p(-y) - jax.scipy.special.gammaln(a)
            - jax.scipy.special.gammaln(b) + jax.scipy.special.gammaln(phi))


def test_density_and_mean_match_scipy(cells):
    d = cells
    mu = d["c"] + (1 - d["c"]) * d["kappa"] / (1 + np.exp(-d["eta"]) / d["gamma"]) ** d["gamma"]
    phi = np.exp(d["log_phi"])
    ref = stats.beta.logpdf(d["y"], phi * mu, phi * (1 - mu))
    ours = beta_logpdf(jnp.asarray(d["eta"]), np.log(d["y"]), np.log1p(-d["y"]), d["c"], d["log_phi"],
                       kappa=(jnp.asarray(d["kappa"]), jnp.asarray(d["gamma"])))
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(mean_score(d["eta"], d["c"], kappa=(d["kappa"], d["gamma"])), mu, atol=1e-14)
    np.testing.assert_allclose(np.asarray(mean_score(jnp.asarray(d["eta"]), d["c"], kappa=(d["kappa"], d["gamma"]))),
                               mu, atol=1e-14)


def test_derivatives_match_automatic_differentiation(cells):
    d = {k: jnp.asarray(v) for k, v in cells.items()}
    args = (d["eta"], d["c"], d["log_phi"], d["kappa"], d["gamma"])

    def ours(eta, c, log_phi, kappa, gamma):
        return jnp.sum(beta_logpdf(eta, jnp.log(d["y"]), jnp.log1p(-d["y"]), c, log_phi, kappa=(kappa, gamma)))

    def plain(eta, c, log_phi, kappa, gamma):
        return jnp.sum(_plain(eta, d["y"], c, log_phi, kappa, gamma))

    for i in range(5):  # η, the floor, log φ, κ and γ
        np.testing.assert_allclose(np.asarray(jax.grad(ours, i)(*args)), np.asarray(jax.grad(plain, i)(*args)),
                                   rtol=1e-8, atol=1e-8)
    d1, d2, _ = beta_eta_derivatives(d["eta"], jnp.log(d["y"]), jnp.log1p(-d["y"]), d["c"], d["log_phi"],
                                     kappa=(d["kappa"], d["gamma"]))
    one = lambda e, y, c, lp, k, g: _plain(e, y, c, lp, k, g)  # noqa: E731
    inputs = (d["eta"], d["y"], d["c"], d["log_phi"], d["kappa"], d["gamma"])
    np.testing.assert_allclose(np.asarray(d1), np.asarray(jax.vmap(jax.grad(one))(*inputs)), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(np.asarray(d2), np.asarray(jax.vmap(jax.grad(jax.grad(one)))(*inputs)), rtol=1e-7,
                               atol=1e-7)


def test_power_one_is_the_sigmoid_and_large_power_the_gumbel_link(cells):
    d = cells
    args = (jnp.asarray(d["eta"]), np.log(d["y"]), np.log1p(-d["y"]), d["c"], d["log_phi"])
    ones = jnp.ones_like(args[0])
    np.testing.assert_allclose(np.asarray(beta_logpdf(*args, kappa=(jnp.asarray(d["kappa"]), ones))),
                               np.asarray(beta_logpdf(*args, kappa=jnp.asarray(d["kappa"]))), atol=1e-10)
    for a, b in zip(beta_eta_derivatives(*args, kappa=(ones, ones)), beta_eta_derivatives(*args)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-9)
    eta = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(mean_score(eta, 0.0, kappa=(1.0, 1e6)), np.exp(-np.exp(-eta)), atol=1e-5)


def test_variant_names_and_blocks():
    assert parse_variant("residual+ceiling+power") == {"residual": True, "ceiling": True, "link_power": True}
    assert variant_name({"link_power": True, "ceiling": True}) == "ceiling+power"
    assert link_shares({"ceiling": np.array([0.8])}) == pytest.approx(np.array([0.8]))
    k, g = link_shares({"link_power": np.array([2.0, 0.5])})
    np.testing.assert_array_equal(k, [1.0, 1.0])
    assert link_shares({}) is None


@pytest.fixture(scope="module")
def powered():
    """K = 1, J = 4, 400 families of 3 models whose scores follow link powers 0.7, 3, 1 and 2."""
    true = random_params(1, 4, seed=4, extra_blocks=("link_power",))
    true["link_power"] = np.array([0.7, 3.0, 1.0, 2.0])
    return simulate(true, k=1, n_benchmarks=4, n_families=400, family_sizes=3, seed=5, link_power=True)


def test_likelihood_at_power_one_is_the_sigmoid_model(powered):
    data, true, spec = powered
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    plain_spec = spec.replace(link_power=False)
    plain_theta = pack({k: true[k] for k in plain_spec.block_names}, plain_spec)
    ones = {**{k: true[k] for k in spec.block_names}, "link_power": np.ones(4)}
    ll_power = MarginalLikelihood(spec, design).loglike(pack(ones, spec))
    ll_plain = MarginalLikelihood(plain_spec, design).loglike(plain_theta)
    assert ll_power == pytest.approx(ll_plain, abs=1e-8)
    # and the gradient in log γ is the one finite differences give
    ml = MarginalLikelihood(spec, design)
    theta = pack({k: true[k] for k in spec.block_names}, spec)
    sl = layout(spec).slices["link_power"]
    assert_score_matches_differences(ml, theta, (sl.start, sl.start + 1))


@pytest.fixture(scope="module")
def power_fit(powered):
    """The unpenalized power fit of ``powered``."""
    return ls.LatentScalingModel(1, link_power=True, n_starts=1).fit(powered[0])


@pytest.fixture(scope="module")
def plain_fit(powered):
    """The model without the power, fitted to ``powered``."""
    return ls.LatentScalingModel(1, hessian=None, n_starts=1).fit(powered[0])


def test_fit_recovers_the_powers_and_aic_prefers_them(powered, power_fit, plain_fit):
    data, true, spec = powered
    fit, plain = power_fit, plain_fit
    assert fit.converged and fit.spec.link_power
    names = [f"link_power[{b}]" for b in spec.benchmarks]
    se = fit.bse[names].to_numpy()
    ok = np.isfinite(se)
    assert ok.sum() >= 3
    z = (np.log(fit.params[names].to_numpy()) - np.log(true["link_power"])) / (se / fit.params[names].to_numpy())
    assert np.all(np.abs(z[ok]) < 4.0), z
    assert fit.aic < plain.aic - 10
    assert "link power" in fit.summary().as_text()


# ---- the penalized link power (power_prior, variant term power:S) ----------------------------------
def test_penalty_is_the_normal_log_prior_and_its_gradient_exact(powered):
    data, true, spec = powered
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    s = 0.7
    pen_spec = spec.replace(power_prior=s)
    theta = pack({k: true[k] for k in spec.block_names}, spec)
    ml, pen = MarginalLikelihood(spec, design), MarginalLikelihood(pen_spec, design)
    log_gamma = np.log(true["link_power"])
    assert pen.loglike(theta) == pytest.approx(ml.loglike(theta) - np.sum(log_gamma**2) / (2 * s**2), abs=1e-9)
    # the per-family values are the likelihood's alone
    np.testing.assert_allclose(pen.loglikeobs(theta), ml.loglikeobs(theta), atol=1e-12)
    sl = layout(spec).slices["link_power"]
    np.testing.assert_allclose(pen.score(theta) - ml.score(theta),
                               np.r_[np.zeros(sl.start), -log_gamma / s**2, np.zeros(theta.size - sl.stop)], atol=1e-9)
    assert_score_matches_differences(pen, theta, range(sl.start, sl.stop))
    # both Hessians carry the penalty's -1/s² on the log γ diagonal
    H_fd = pen.hessian(theta, "fd")
    H_plain = ml.hessian(theta, "fd")
    np.testing.assert_allclose(np.diag(H_fd - H_plain)[sl], -1 / s**2, rtol=1e-4)


@pytest.mark.slow  # the exact Hessian's program takes ~20 s to compile
def test_exact_hessian_carries_the_penalty(powered):
    data, true, spec = powered
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    pen = MarginalLikelihood(spec.replace(power_prior=0.7), design)
    theta = pack({k: true[k] for k in spec.block_names}, spec)
    H_fd = pen.hessian(theta, "fd")
    np.testing.assert_allclose(pen.hessian(theta, "exact"), H_fd, rtol=1e-4, atol=1e-4 * np.abs(H_fd).max())


def test_penalized_fit_reports_the_likelihood_at_its_optimum_and_shrinks_the_powers(powered, power_fit):
    data, true, spec = powered
    s = 0.3
    fit = ls.LatentScalingModel(1, link_power=True, power_prior=s, n_starts=1).fit(data)
    free = power_fit
    assert fit.converged and fit.spec.power_prior == s
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    plain_ml = MarginalLikelihood(spec, design, fit.quadrature)
    log_gamma = np.log(fit.constrained["link_power"])
    # ℓ is the likelihood at θ̂; the objective adds the penalty
    assert fit.log_likelihood == pytest.approx(plain_ml.loglike(fit.theta), abs=1e-6)
    d = fit.diagnostics
    assert d["log_penalty"] == pytest.approx(-np.sum(log_gamma**2) / (2 * s**2), abs=1e-9)
    assert d["penalized_log_likelihood"] == pytest.approx(fit.log_likelihood + d["log_penalty"], abs=1e-9)
    # stationarity of the penalized objective: ∂ℓ/∂ log γ = log γ / s² at θ̂
    sl = layout(spec).slices["link_power"]
    np.testing.assert_allclose(plain_ml.score(fit.theta)[sl], log_gamma / s**2, atol=1e-3)
    # the penalty pulls every power towards 1, and costs likelihood
    assert np.all(np.abs(log_gamma) < np.abs(np.log(free.constrained["link_power"])))
    assert fit.log_likelihood < free.log_likelihood
    assert "penalized" in fit.summary().as_text() and "N(0, 0.3²)" in fit.summary().as_text()


def test_a_tight_penalty_gives_the_model_without_the_power(powered, plain_fit):
    data, _, _ = powered
    tight = ls.LatentScalingModel(1, link_power=True, power_prior=1e-3, n_starts=1, hessian=None).fit(data)
    plain = plain_fit
    np.testing.assert_allclose(tight.constrained["link_power"], 1.0, atol=1e-3)
    assert tight.log_likelihood == pytest.approx(plain.log_likelihood, abs=0.05)


def test_power_prior_is_saved_and_checked(powered, tmp_path):
    from latentscale.errors import InputError
    from latentscale.model.spec import ModelSpec

    data, _, _ = powered
    fit = ls.LatentScalingModel(1, link_power=True, power_prior=1.0, n_starts=1, hessian=None).fit(data)
    fit.save(tmp_path / "fit.json")
    back = ls.FitResult.load(tmp_path / "fit.json")
    assert back.spec.power_prior == 1.0 and back.spec == fit.spec
    assert back.options["power_prior"] == 1.0
    from latentscale.prediction.update import _refit_model

    assert _refit_model(back).power_prior == 1.0  # update --refit keeps the penalty
    from typer.testing import CliRunner

    from latentscale.cli.app import app

    res = CliRunner().invoke(app, ["confint", str(tmp_path / "fit.json"), "-p", "link_power[b1]"])
    assert res.exit_code == 0 and "penalized objective" in res.stdout.splitlines()[0], res.output
    assert _refit_model(back.__class__.load(tmp_path / "fit.json")).spec_for(data).power_prior == 1.0
    assert parse_variant("ceiling+power:1.5") == {"ceiling": True, "link_power": True, "power_prior": 1.5}
    assert variant_name({"link_power": True, "power_prior": 0.5}) == "power:0.5"
    for bad in ("power:0", "power:-1", "power:x", "power:", "power:1+power:2"):
        with pytest.raises(InputError, match="power"):
            parse_variant(bad)
    with pytest.raises(InputError, match="link_power"):
        ls.LatentScalingModel(1, power_prior=1.0)
    with pytest.raises(InputError, match="positive"):
        ls.LatentScalingModel(1, link_power=True, power_prior=0.0)
    with pytest.raises(InputError, match="link_power"):
        ModelSpec(benchmarks=("a",), anchors=("a",), floors=(0.0,), power_prior=1.0)
    with pytest.raises(InputError, match="psga"):
        ls.LatentScalingModel(1, method="psga", link_power=True, power_prior=1.0).fit(data)


@pytest.mark.slow  # two fits and eight profiles: 35 s
def test_profiles_of_a_penalized_fit(powered, power_fit, tmp_path):
    """The profile intervals of a penalized fit profile its objective: they hold the estimate, match the
    unpenalized ones where the data pin γ down, and are narrower where they do not (the penalty's curvature)."""
    import json

    from typer.testing import CliRunner

    from latentscale.cli.app import app

    data, _, spec = powered
    names = [f"link_power[{b}]" for b in spec.benchmarks]
    plain = power_fit.profile(["link_power"])
    fit = ls.LatentScalingModel(1, link_power=True, power_prior=1.0, n_starts=1).fit(data)
    pen = fit.profile(["link_power"])
    assert pen["converged"].all()
    assert np.all((pen["lower"] <= pen["estimate"]) & (pen["estimate"] <= pen["upper"]))
    width = lambda t: np.log(t.loc[names, "upper"]) - np.log(t.loc[names, "lower"])  # noqa: E731
    pinned = (width(plain) < 0.5).to_numpy()  # intervals well inside the box [0.5, 10]
    assert pinned.sum() >= 2 and (~pinned).sum() >= 1
    np.testing.assert_allclose(width(pen)[pinned], width(plain)[pinned], rtol=0.1)
    assert np.all(width(pen)[~pinned] < width(plain)[~pinned] - 0.1)
    path = fit.save(tmp_path / "pen.json")
    res = CliRunner().invoke(app, ["confint", str(path), "-p", names[0], "--json", "-q"])
    got = json.loads(res.stdout)["intervals"][0]
    assert got["lower"] == pytest.approx(pen.loc[names[0], "lower"], abs=1e-4)
