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
from test_likelihood import Reference


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
    fit = ls.LatentScalingModel(1, hetero_precision=True).fit(data)
    plain = ls.LatentScalingModel(1, hessian=None).fit(data)
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
    sel = select_k(small, [1], variants=["plain", "hetero"], hessian=None, n_starts=1)
    t = sel.table
    assert list(t["variant"]) == ["plain", "hetero"] and list(t["k"]) == [1, 1]
    assert t.loc[1, "n_params"] == t.loc[0, "n_params"] + 12
    assert sel.fits[(1, "hetero")].spec.hetero_precision and not sel.fits[(1, "plain")].spec.hetero_precision
    assert sel.best_aic_variant in ("plain", "hetero")
    assert "variant" in sel.format()
    with pytest.raises(InputError, match="unknown variant term"):
        select_k(small, [1], variants=["nosuch"])
