"""Model variants: heteroscedastic precision (log φ_ij = log φ_j + γ_jᵀ x_i), and their comparison by AIC.

The likelihood of the variant is checked against an independent 1-D integration (scipy), the
estimator against data simulated from the variant (recovery of γ, and AIC preferring the true model),
and the names that pick variants.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import latentscale as ls
from latentscale.errors import InputError
from latentscale.estimation.likelihood import MarginalLikelihood
from latentscale.estimation.quadrature import QuadratureSpec
from latentscale.model.design import build_design
from latentscale.model.params import layout, pack
from latentscale.model.simulate import simulate
from latentscale.model.variants import extra_blocks, parse_variant, variant_name
from test_likelihood import Reference, scipy_beta_logpdf


@pytest.fixture(scope="module")
def hetero():
    """K = 1, J = 4, 300 families of 3 models drawn from the heteroscedastic model (γ scaled up so
    that the precision varies several-fold over the sample)."""
    from latentscale.model.simulate import random_params

    true = random_params(1, 4, seed=5, extra_blocks=("precision_slope",))
    true["precision_slope"] = np.array([[0.6, -0.5, 0.0, 0.4], [-0.4, 0.3, 0.5, 0.0], [0.0, 0.2, -0.3, 0.3]])
    data, true, spec = simulate(true, k=1, n_benchmarks=4, n_families=300, family_sizes=3, seed=6,
                                hetero_precision=True)
    return data, true, spec


def test_variant_names():
    assert parse_variant("plain") == {}
    assert parse_variant("hetero+flops") == {"hetero_precision": True, "covariates": "flops"}
    assert variant_name(parse_variant("hetero+size-tokens")) == "hetero+size-tokens"
    assert variant_name({"logit_clip": 4.5, "covariates": "paper"}) == "clamp"
    assert extra_blocks({"hetero_precision": True}) == ("precision_slope",)
    with pytest.raises(InputError, match="unknown variant term 'nosuch'"):
        parse_variant("hetero+nosuch")
    with pytest.raises(InputError, match="sets covariates twice"):
        parse_variant("flops+size-tokens")


def test_hetero_layout_and_likelihood_match_brute_force(hetero):
    """The γ block: p × J parameters named precision_slope[covariate,benchmark]; and the marginal
    likelihood of each family with heteroscedastic precision against scipy's 1-D integration."""
    data, true, spec = hetero
    lay = layout(spec)
    assert spec.block_names[-1] == "precision_slope"
    assert lay.size == layout(spec.replace(hetero_precision=False)).size + 3 * 4
    assert "precision_slope[log_size,b2]" in lay.names
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    theta = pack({k: true[k] for k in spec.block_names}, spec)
    ml = MarginalLikelihood(spec, design, QuadratureSpec(points=30))
    ref = Reference(data, spec, {k: np.asarray(v) for k, v in lay.unpack(theta).items()})
    names = list(design.families[:12])
    got = dict(zip(design.families, ml.loglikeobs(theta)))
    np.testing.assert_allclose([got[n] for n in names], [ref.integral_1d(n) for n in names], rtol=0, atol=1e-8)
    # without γ the same families have another likelihood: the slope is used
    plain = ref.__class__(data, spec, {**{k: np.asarray(v) for k, v in lay.unpack(theta).items()},
                                       "precision_slope": np.zeros((3, 4))})
    assert abs(plain.integral_1d(names[0]) - got[names[0]]) > 1e-3


@pytest.fixture(scope="module")
def hetero_fits(hetero):
    data, _, _ = hetero
    fit = ls.LatentScalingModel(1, hetero_precision=True, n_starts=1).fit(data)
    plain = ls.LatentScalingModel(1, hessian=None, n_starts=1).fit(data)
    return fit, plain


def test_hetero_fit_recovers_the_slopes(hetero, hetero_fits):
    _, true, spec = hetero
    fit, _ = hetero_fits
    assert fit.converged and fit.spec.hetero_precision
    names = [n for n in fit.param_names if n.startswith("precision_slope[")]
    est, se = fit.params[names].to_numpy(), fit.bse[names].to_numpy()
    truth = true["precision_slope"].reshape(-1)  # (covariate, benchmark) row-major, as the names
    assert np.all(se > 0) and np.all(se < 0.3)
    z = (est - truth) / se
    assert np.all(np.abs(z) < 4.0), z
    # the summary shows the block with its standard errors
    text = fit.summary().as_text()
    assert "precision_slope" in text and "heteroscedastic" in text


def test_aic_prefers_the_true_variant(hetero_fits):
    fit, plain = hetero_fits
    assert fit.n_params == plain.n_params + 12
    assert fit.llf > plain.llf + 12  # the extra 12 parameters pay for themselves
    assert fit.aic < plain.aic


def test_hetero_fit_round_trips_and_score_draws_use_the_slope(hetero, hetero_fits, tmp_path):
    """The saved fit keeps the variant; predictive score draws have the Beta variance of φ_ij,
    μ(1 − μ)/(1 + φ_ij), model by model."""
    from latentscale.model.observation import mean_score
    from latentscale.prediction.sampling import score_draws

    _, true, spec = hetero
    fit, _ = hetero_fits
    back = ls.FitResult.load(fit.save(tmp_path / "fit.json"))
    assert back.spec == fit.spec and back.n_params == fit.n_params
    np.testing.assert_allclose(back.params, fit.params)
    X = np.array([[-1.5, 0.0, 0.0], [1.5, 0.0, 0.0]])  # a small and a large model
    alpha = np.zeros((1, 1, 2, 1))
    theta = pack({k: true[k] for k in spec.block_names}, spec)
    mu, y = score_draws(theta[None], alpha, X, spec, np.random.default_rng(0), n_rep=40000)
    mu = mu[0, 0]  # (2, J)
    expected_mu = mean_score(X @ true["B"] @ true["loadings"] + true["intercepts"], np.asarray(spec.floors))
    np.testing.assert_allclose(mu, expected_mu, rtol=1e-10)
    phi = true["precision"] * np.exp(X @ true["precision_slope"])
    var = mu * (1 - mu) / (1 + phi)
    np.testing.assert_allclose(y[:, 0].var(axis=0), var, rtol=0.05)
    assert not np.allclose(var[0] / (mu[0] * (1 - mu[0])), var[1] / (mu[1] * (1 - mu[1])))


def test_select_compares_variants(hetero):
    from latentscale.evaluation.select import select_k

    data, _, _ = hetero
    small = data.subset(data.frame["family"].isin(data.frame["family"].unique()[:60]).to_numpy())
    sel = select_k(small, [1], variants=["plain", "hetero"], method="laplace", hessian=None, n_starts=1)
    t = sel.table
    assert list(t["variant"]) == ["plain", "hetero"] and list(t["k"]) == [1, 1]
    assert t.loc[1, "n_params"] == t.loc[0, "n_params"] + 12
    assert sel.fits[(1, "hetero")].spec.hetero_precision and not sel.fits[(1, "plain")].spec.hetero_precision
    assert sel.best_aic_variant in ("plain", "hetero")
    assert "variant" in sel.format()
    with pytest.raises(InputError, match="unknown variant term"):
        select_k(small, [1], variants=["nosuch"])


# ---- family × benchmark residual effects ------------------------------------------------------
def nested_integral(data, spec, params, name) -> float:
    """K = 1 with residuals: log ∫ N(α) Π_j ∫ N(u; 0, τ_j²) Π_i Beta(y_ij | η_ij + u) du dα from the
    model's definition (scipy's Beta density), by Simpson's rule on fine grids around the modes."""
    from scipy import integrate, special, stats

    from test_likelihood import standardized_covariates

    frame = data.frame
    X = standardized_covariates(frame)
    Y = np.clip(frame[list(spec.benchmarks)].to_numpy(float), *spec.clip)
    rows = np.flatnonzero(frame["family"].to_numpy() == name)
    c = np.asarray(spec.floors)
    eta0 = X[rows] @ params["B"] @ params["loadings"] + params["intercepts"]

    def log_simpson(log_f, grid):
        top = log_f.max()
        return top + np.log(integrate.simpson(np.exp(log_f - top), x=grid))

    def log_inner(a, j):
        obs = ~np.isnan(Y[rows, j])
        if not obs.any():
            return 0.0
        y, e0 = Y[rows, j][obs], eta0[obs, j] + a * params["loadings"][0, j]
        tau, phi = params["residual_sd"][j], params["precision"][j]
        u = np.linspace(-12 * tau, 12 * tau, 801)
        mu = c[j] + (1 - c[j]) * special.expit(e0[None, :] + u[:, None])
        log_f = scipy_beta_logpdf(y[None, :], phi * mu, phi * (1 - mu)).sum(axis=1) + stats.norm.logpdf(u, 0, tau)
        return log_simpson(log_f, u)

    alpha = np.linspace(-7.0, 7.0, 281)
    log_outer = np.array([sum(log_inner(a, j) for j in range(spec.J)) for a in alpha]) + stats.norm.logpdf(alpha)
    return log_simpson(log_outer, alpha)


def three_family_reference(data, true, spec, integral):
    """The first three families of ``data``: their design, the true θ, and ``integral(small, spec,
    params, family)`` (a brute-force log marginal likelihood) of each of them."""
    small = data.subset(data.frame["family"].isin(data.frame["family"].unique()[:3]).to_numpy())
    design, _ = build_design(small, spec.benchmarks, spec.clip)
    theta = pack({k: true[k] for k in spec.block_names}, spec)
    params = {k: np.asarray(v) for k, v in layout(spec).unpack(theta).items()}
    return design, theta, np.array([integral(small, spec, params, n) for n in design.families])


def assert_score_matches_differences(ml, theta, coords, h: float = 1e-5, abs_tol: float = 1e-5):
    """The exact gradient of ``ml`` at θ against central differences of ℓ, coordinate by coordinate."""
    g = ml.score(theta)
    for i in coords:
        e = np.zeros_like(theta)
        e[i] = h
        fd = (ml.loglike(theta + e) - ml.loglike(theta - e)) / (2 * h)
        assert g[i] == pytest.approx(fd, rel=1e-5, abs=abs_tol), i


@pytest.fixture(scope="module")
def residual():
    """K = 1, J = 4, 200 families of 3 models with residual SDs 0.5, 0.3, 0.8, 0.4."""
    from latentscale.model.simulate import random_params

    true = random_params(1, 4, seed=2, extra_blocks=("residual_sd",))
    true["residual_sd"] = np.array([0.5, 0.3, 0.8, 0.4])
    data, true, spec = simulate(true, k=1, n_benchmarks=4, n_families=200, family_sizes=3, seed=3, residual=True,
                                missing=0.1)
    return data, true, spec


def test_residual_likelihood_matches_nested_brute_force(residual):
    """The nested adaptive rule against scipy's nested integration, family by family; the default
    rule (15 × 7 nodes) within 1e-3 per family; the Laplace one in (α, u) visibly off."""
    data, true, spec = residual
    assert spec.n_effects == 1 + 4 and spec.block_names[-1] == "residual_sd"
    design, theta, ref = three_family_reference(data, true, spec, nested_integral)
    fine = MarginalLikelihood(spec, design, QuadratureSpec(points=30, inner_points=15)).loglikeobs(theta)
    np.testing.assert_allclose(fine, ref, rtol=0, atol=1e-5)
    default = MarginalLikelihood(spec, design, QuadratureSpec()).loglikeobs(theta)
    assert np.max(np.abs(default - ref)) < 1e-3
    laplace = MarginalLikelihood(spec, design, "laplace").loglikeobs(theta)
    assert np.max(np.abs(laplace - ref)) > 1e-3


def test_residual_gradient_matches_finite_differences(residual):
    data, true, spec = residual
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    ml = MarginalLikelihood(spec, design)
    theta = pack({k: true[k] for k in spec.block_names}, spec) + 0.05
    assert_score_matches_differences(ml, theta, (0, 4, theta.size - 3, theta.size - 1))  # B, a loading, residual SDs


@pytest.fixture(scope="module")
def residual_fits(residual):
    data, _, _ = residual
    return (ls.LatentScalingModel(1, residual=True, n_starts=1).fit(data),
            ls.LatentScalingModel(1, hessian=None, n_starts=1).fit(data))


def test_residual_fit_recovers_the_sds_and_aic_prefers_it(residual, residual_fits):
    _, true, spec = residual
    fit, plain = residual_fits
    assert fit.converged and fit.spec.residual
    names = [f"residual_sd[{b}]" for b in spec.benchmarks]
    z = (fit.params[names].to_numpy() - true["residual_sd"]) / fit.bse[names].to_numpy()
    assert np.all(np.abs(z) < 4.0), z
    assert fit.n_params == plain.n_params + 4 and fit.aic < plain.aic
    assert "residual" in fit.summary().as_text()
    # the posterior modes of the residuals track the drawn ones
    u_hat = fit.loglikelihood().joint_modes(fit.theta)[:, 1:]
    assert np.corrcoef(u_hat.ravel(), true["residual"].ravel())[0, 1] > 0.6


def test_residual_predictions_agree_between_quadrature_and_sampling(residual, residual_fits):
    """The cross-validation's posterior mean (nested quadrature nodes) and the sampling-based
    predictive mean of latentscale.predict (joint importance sampling of α and u) agree, for a
    family in the fit and for a new one; the family's own residual moves its prediction."""
    from latentscale.evaluation.baselines import LatentMethod
    from latentscale.prediction import predict

    data, true, spec = residual
    fit, _ = residual_fits
    method = LatentMethod.from_fit(fit)  # the quadrature prediction of this fit
    frame = data.frame
    new = pd.DataFrame({"model": ["a", "b"], "family": [frame["family"].iloc[0], "brand-new"], "size": [20.0, 20.0],
                        "tokens": [3.0, 3.0]})
    quad = method.predict(new)
    pred = predict(method.fit_, new, parameter_uncertainty=False, n_samples=20000, levels=(0.5,))
    mean = pred.pivot(index="model", columns="benchmark", values="mean").loc[["a", "b"], list(spec.benchmarks)]
    assert np.abs(mean.to_numpy() - quad).max() < 0.01
    assert np.abs(quad[0] - quad[1]).max() > 0.02  # the known family's α and u matter


# ---- a fitted ceiling per benchmark -----------------------------------------------------------
@pytest.fixture(scope="module")
def ceiling():
    """K = 1, J = 4, 300 families of 3 models whose expected scores top out at c + (1 − c)·κ."""
    from latentscale.model.simulate import random_params

    true = random_params(1, 4, seed=2, extra_blocks=("ceiling",))
    true["ceiling"] = np.array([0.9, 0.75, 0.95, 0.85])
    data, true, spec = simulate(true, k=1, n_benchmarks=4, n_families=300, family_sizes=3, seed=3, ceiling=True)
    return data, true, spec


def test_ceiling_likelihood_and_gradient(ceiling):
    """The ceiling enters the Beta mean: the likelihood against scipy's 1-D integration with
    μ = c + (1 − c)·κ·sigmoid(η), and the gradient in the logit of κ against differences."""
    from scipy import integrate, special, stats

    from test_likelihood import standardized_covariates

    data, true, spec = ceiling
    small = data.subset(data.frame["family"].isin(data.frame["family"].unique()[:4]).to_numpy())
    design, _ = build_design(small, spec.benchmarks, spec.clip)
    theta = pack({k: true[k] for k in spec.block_names}, spec)
    ml = MarginalLikelihood(spec, design, QuadratureSpec(points=30))
    frame = small.frame
    X = standardized_covariates(frame)  # standardized over the rows of the design, as build_design does
    Y = np.clip(frame[list(spec.benchmarks)].to_numpy(float), *spec.clip)
    c, kappa, phi = np.asarray(spec.floors), true["ceiling"], true["precision"]
    for f, name in enumerate(design.families):
        rows = np.flatnonzero(frame["family"].to_numpy() == name)
        eta0 = X[rows] @ true["B"] @ true["loadings"] + true["intercepts"]

        def log_joint(a):
            mu = c + (1 - c) * kappa * special.expit(eta0 + a * true["loadings"][0])
            return np.nansum(scipy_beta_logpdf(Y[rows], phi * mu, phi * (1 - mu))) + stats.norm.logpdf(a)

        top = max(log_joint(a) for a in np.linspace(-6, 6, 241))
        v, _ = integrate.quad(lambda a: np.exp(log_joint(a) - top), -8, 8, epsabs=0, epsrel=1e-12, limit=200)
        assert ml.loglikeobs(theta)[f] == pytest.approx(top + np.log(v), abs=1e-8)
    assert_score_matches_differences(ml, theta + 0.03, range(theta.size - 4, theta.size), abs_tol=1e-6)  # logits of κ


def test_ceiling_fit_recovers_the_shares_on_the_logit_scale(ceiling, monkeypatch):
    """κ is recovered within the Wald interval, formed on the logit scale (a share near 1 has a wide
    interval reaching up to 1, never beyond); AIC prefers the model with the ceiling."""
    _, true, spec = ceiling
    data = ceiling[0]
    fit = ls.LatentScalingModel(1, ceiling=True, n_starts=1).fit(data)
    plain = ls.LatentScalingModel(1, hessian=None, n_starts=1).fit(data)
    assert fit.converged and fit.aic < plain.aic
    table = fit.params_table().xs("ceiling", level="block")
    lo, hi = table["lower_95"].to_numpy(), table["upper_95"].to_numpy()
    assert np.all((lo > 0) & (hi < 1) & (lo < table["estimate"]) & (table["estimate"] < hi))
    z = (fit.theta[-4:] - np.log(true["ceiling"] / (1 - true["ceiling"]))) / np.sqrt(np.diag(fit.cov_theta()))[-4:]
    assert np.all(np.abs(z) < 4.0), z
    ci = fit.conf_int().loc[[f"ceiling[{b}]" for b in spec.benchmarks]]
    np.testing.assert_allclose(ci["lower"], lo, rtol=1e-10)
    # collinear_pairs: the pairs of estimates correlated beyond the threshold, by hand from cov_theta
    C = fit.cov_theta()
    R = C / np.sqrt(np.outer(np.diag(C), np.diag(C)))
    i, j = np.triu_indices(len(R), 1)
    top = np.argmax(np.abs(R[i, j]))
    r_max = R[i, j][top]
    pairs = fit.collinear_pairs(abs(r_max) - 1e-9)
    assert len(pairs) == 1 and pairs.loc[0, "corr"] == pytest.approx(r_max, abs=1e-12)
    assert {pairs.loc[0, "parameter_1"], pairs.loc[0, "parameter_2"]} == {fit.layout.names[i[top]],
                                                                          fit.layout.names[j[top]]}
    lower = fit.collinear_pairs(0.5)
    assert len(lower) == int(np.sum(np.abs(R[i, j]) >= 0.5)) and np.all(np.diff(np.abs(lower["corr"])) <= 0)
    assert fit.collinear_pairs(min(abs(r_max) + 1e-9, 0.999999)).empty
    assert plain.collinear_pairs().empty  # no standard errors, nothing to say
    with pytest.raises(InputError, match="threshold"):
        fit.collinear_pairs(1.0)
    # the summary names the pair when it passes the summary's threshold, and says nothing otherwise
    import latentscale.results.fit_result as fr

    monkeypatch.setattr(fr, "COLLINEAR_THRESHOLD", abs(r_max) - 1e-9)
    text = fit.summary().as_text()
    assert "Nearly collinear" in text and pairs.loc[0, "parameter_1"] in text.split("Nearly collinear")[1]
    import json

    doc = json.loads(json.dumps(fit.to_dict()["collinear_pairs"]))  # --json carries them too
    assert doc == [{"parameter_1": pairs.loc[0, "parameter_1"], "parameter_2": pairs.loc[0, "parameter_2"],
                    "corr": pytest.approx(r_max, abs=1e-12)}]
    monkeypatch.setattr(fr, "COLLINEAR_THRESHOLD", min(abs(r_max) + 1e-9, 0.999999))
    assert "Nearly collinear" not in fit.summary().as_text()
    assert fit.to_dict()["collinear_pairs"] == []
