"""Standard errors: covariance kinds, delta method, non-positive-definite handling, FD Hessian."""

import warnings

import numpy as np
import pytest

import latentscale as ls
from latentscale.errors import InputError, NotPositiveDefiniteWarning
from latentscale.estimation.likelihood import MarginalLikelihood, fd_hessian
from latentscale.model.design import build_design
from latentscale.model.params import parameter_names, unpack
from latentscale.model.simulate import simulate
from latentscale.results.inference import theta_covariance


@pytest.fixture(scope="module")
def fitted():
    data, true, spec = simulate(k=2, n_benchmarks=4, n_families=80, family_sizes=2, seed=3)
    result = ls.fit(data, k=2, n_starts=1)  # one start: the inference at the fit is tested here, not the search
    return data, result


def test_observed_opg_sandwich_relations():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(5, 5))
    info = A @ A.T + 5 * np.eye(5)
    S = rng.normal(size=(40, 5))
    outer = S.T @ S
    obs = theta_covariance(-info, outer, "observed")
    np.testing.assert_allclose(obs, np.linalg.inv(info), rtol=1e-12)
    np.testing.assert_allclose(theta_covariance(-info, outer, "opg"), np.linalg.inv(outer), rtol=1e-10)
    sand = theta_covariance(-info, outer, "sandwich")
    np.testing.assert_allclose(sand, np.linalg.inv(info) @ outer @ np.linalg.inv(info), rtol=1e-10)
    # When the information equality holds the sandwich is the observed-information covariance.
    np.testing.assert_allclose(theta_covariance(-outer, outer, "sandwich"), np.linalg.inv(outer), rtol=1e-8)


def test_not_positive_definite_warns_and_gives_nan():
    H = np.diag([-1.0, 0.5, -2.0])  # not negative definite
    with pytest.warns(NotPositiveDefiniteWarning, match="not positive definite"):
        cov = theta_covariance(H, None, "observed")
    assert np.all(np.isnan(cov))


@pytest.mark.parametrize("kind,hessian,outer,match", [
    ("bogus", np.eye(2), np.eye(2), "kind must be"),
    ("observed", None, None, "no Hessian"),
    ("sandwich", -np.eye(2), None, "per-family scores"),
])
def test_covariance_errors(kind, hessian, outer, match):
    with pytest.raises(ValueError, match=match):
        theta_covariance(hessian, outer, kind)


def test_delta_method_blocks(fitted):
    _, r = fitted
    cov = r.cov_theta()
    se_theta = np.sqrt(np.diag(cov))
    table = r.params_table()
    names = parameter_names(r.spec)
    # B is an identity block of θ; B_raw divides it by the covariate SDs.
    for i, c in enumerate(["log_size", "log_tokens", "log_size:log_tokens"]):
        for k, s in enumerate(r.skills):
            j = names.index(f"B[{c},{s}]")
            assert table.loc[("B", c, s), "se"] == pytest.approx(se_theta[j], rel=1e-10)
            assert table.loc[("B_raw", c, s), "se"] == pytest.approx(se_theta[j] / r.scaler.scale[i], rel=1e-10)
    # Precision = exp(log precision): SE by the delta method, interval on the log scale.
    for b in r.spec.benchmarks:
        j = names.index(f"precision[{b}]")
        row = table.loc[("precision", b, "")]
        assert row["se"] == pytest.approx(row["estimate"] * se_theta[j], rel=1e-10)
        assert row["lower_95"] == pytest.approx(row["estimate"] * np.exp(-1.959963984540054 * se_theta[j]), rel=1e-9)
        assert row["lower_95"] > 0
    # Structural zeros (anchors' other loadings) are not reported; every free loading is.
    loadings = table.xs("loading", level="block")
    assert len(loadings) == r.spec.K * (r.spec.J - r.spec.K) + r.spec.K
    # The correlation's SE matches a finite-difference delta method.
    j = names.index(f"corr[{r.skills[1]},{r.skills[0]}]")

    def rho(theta):
        L = np.asarray(unpack(theta, r.spec)["corr"])
        return (L @ L.T)[1, 0]

    h = 1e-6
    e = np.zeros_like(r.theta)
    e[j] = h
    grad = np.zeros_like(r.theta)
    grad[j] = (rho(r.theta + e) - rho(r.theta - e)) / (2 * h)
    se_fd = np.sqrt(grad @ cov @ grad)
    assert table.loc[("corr", r.skills[1], r.skills[0]), "se"] == pytest.approx(se_fd, rel=1e-5)


def test_z_and_p_values(fitted):
    _, r = fitted
    t = r.params_table(level=0.9)
    np.testing.assert_allclose(t["z"], t["estimate"] / t["se"])
    assert ((t["p_value"] >= 0) & (t["p_value"] <= 1)).all()
    anchors = {("loading", a, s) for a, s in zip(r.spec.anchors, r.skills)}
    # Positive quantities (precisions, anchor loadings) get log-scale intervals; the rest are symmetric.
    free = np.array([b != "precision" and (b, row, col) not in anchors for b, row, col in t.index])
    width = (t["upper_90"] - t["lower_90"])[free]
    np.testing.assert_allclose(width, 2 * 1.6448536269514722 * t["se"][free], rtol=1e-10)


def test_fd_hessian_matches_second_differences_of_the_value(fitted):
    data, r = fitted
    design, _ = build_design(data, r.spec.benchmarks, r.spec.clip)
    ml = MarginalLikelihood(r.spec, design, "laplace")
    theta = r.theta + 0.01  # away from the optimum too
    H = fd_hessian(ml, theta)
    np.testing.assert_allclose(H, H.T)
    f0, h = ml.loglike_and_score(theta)[0], 1e-3
    for i in range(0, theta.size, 3):
        e = np.zeros_like(theta)
        e[i] = h
        second = (ml.loglike_and_score(theta + e)[0] - 2 * f0 + ml.loglike_and_score(theta - e)[0]) / h**2
        assert H[i, i] == pytest.approx(second, rel=1e-4, abs=1e-4 * np.abs(np.diag(H)).max())


def test_start_curvature_is_the_hessian_by_forward_differences(fitted):
    """The quasi-Newton stages' starting metric: forward differences (P + 1 gradient calls) agree
    with the central-difference Hessian to their O(h) error, and ask for no per-family scores."""
    data, r = fitted
    design, _ = build_design(data, r.spec.benchmarks, r.spec.clip)
    ml = MarginalLikelihood(r.spec, design, "laplace")
    theta = r.theta + 0.01
    H = ml.hessian(theta, "fd")
    C = ml.start_curvature(theta)
    np.testing.assert_allclose(C, C.T)
    scale = np.abs(H).max()
    assert np.abs(C - H).max() < 1e-3 * scale
    assert np.abs(C - H).max() > 1e-12 * scale  # a different rule, not the same numbers
    with pytest.raises(InputError, match="central differences"):
        fd_hessian(ml, theta, with_scores=True, central=False)


def test_family_scores_sum_to_the_gradient(fitted):
    data, r = fitted
    design, _ = build_design(data, r.spec.benchmarks, r.spec.clip)
    ml = MarginalLikelihood(r.spec, design, "laplace")
    theta = r.theta + 0.02
    H, S = ml.hessian_and_scores(theta, "fd")
    _, g = ml.loglike_and_score(theta)
    np.testing.assert_allclose(S.sum(axis=0), g, rtol=1e-6, atol=1e-6 * np.abs(g).max())
    np.testing.assert_allclose(ml.score_obs(theta, "fd"), S, rtol=1e-5, atol=1e-8 * np.abs(S).max())
    np.testing.assert_allclose(ml.hessian(theta, "fd"), H, rtol=1e-5, atol=1e-8 * np.abs(H).max())


@pytest.mark.slow
def test_exact_hessian_and_scores_match_differences_of_the_gradient(fitted):
    """Slow: the exact (forward-over-reverse) program takes about a minute to compile."""
    data, r = fitted
    design, _ = build_design(data, r.spec.benchmarks, r.spec.clip)
    ml = MarginalLikelihood(r.spec, design, "laplace")
    theta = r.theta + 0.02
    H_fd, S_fd = fd_hessian(ml, theta, with_scores=True)
    H, S = ml.hessian_and_scores(theta, "exact")
    scale = np.abs(H).max()
    np.testing.assert_allclose(H, H_fd, rtol=1e-4, atol=1e-6 * scale)
    np.testing.assert_allclose(S, S_fd, rtol=1e-4, atol=1e-6 * np.abs(S).max())
    _, g = ml.loglike_and_score(theta)
    np.testing.assert_allclose(S.sum(axis=0), g, rtol=1e-8, atol=1e-8 * np.abs(g).max())
    # Directions in batches give the same matrix as all at once.
    H2, _ = ml._exact_hessian_and_scores(theta, batch=7)
    np.testing.assert_allclose(H2, H, rtol=1e-10, atol=1e-10 * scale)


def test_summary_and_json_carry_standard_errors(fitted):
    _, r = fitted
    text = r.summary(kind="sandwich").as_text()
    assert "std err" in text and "sandwich" in text
    html = r.summary().as_html()
    assert "<table" in html and "log-likelihood" in html and "B_raw" not in html.split("<h3>")[0]
    doc = r.to_dict(se="opg")
    rows = doc["parameter_table"]
    assert doc["standard_errors"] == "opg"
    assert {"block", "row", "column", "estimate", "se", "z", "p_value"} <= set(rows[0])
    assert len(rows) == len(r.params_table())


def test_saved_fit_keeps_standard_errors(fitted, tmp_path):
    _, r = fitted
    path = r.save(tmp_path / "fit.json")
    back = type(r).load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b = r.params_table("sandwich"), back.params_table("sandwich")
    np.testing.assert_allclose(a.drop(columns="parameter").to_numpy(float),
                               b.drop(columns="parameter").to_numpy(float), rtol=1e-12)


def test_statsmodels_names_agree_with_the_table(fitted):
    """params, bse, tvalues, pvalues, conf_int and the labelled cov_params against params_table."""
    _, r = fitted
    t = r.params_table()
    rows = t[t["parameter"] != ""].set_index("parameter")
    assert list(r.params.index) == r.param_names == parameter_names(r.spec)
    assert len(r.params) == r.n_params == len(rows)
    rows = rows.reindex(r.params.index)
    np.testing.assert_allclose(r.params, rows["estimate"], rtol=1e-12)
    np.testing.assert_allclose(r.bse, rows["se"], rtol=1e-8)
    np.testing.assert_allclose(r.tvalues, rows["z"], rtol=1e-8)
    np.testing.assert_allclose(r.pvalues, rows["p_value"], rtol=1e-6, atol=1e-300)
    ci = r.conf_int(0.05)
    np.testing.assert_allclose(ci["lower"], rows["lower_95"], rtol=1e-8)
    np.testing.assert_allclose(ci["upper"], rows["upper_95"], rtol=1e-8)
    cov = r.cov_params()
    assert list(cov.index) == list(cov.columns) == list(r.params.index)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), rows["se"], rtol=1e-8)
    np.testing.assert_allclose(cov.to_numpy(), cov.to_numpy().T, rtol=1e-10)
    # The natural-scale covariance is the delta method of the unconstrained one: for a block that
    # is the identity (B) the two agree entry by entry.
    names = [n for n in r.param_names if n.startswith("B[")]
    idx = [r.param_names.index(n) for n in names]
    np.testing.assert_allclose(cov.loc[names, names].to_numpy(), r.cov_theta()[np.ix_(idx, idx)], rtol=1e-10)
    # The sandwich version of the same.
    se_s = r.params_table("sandwich").query("parameter != ''").set_index("parameter")["se"].reindex(r.params.index)
    np.testing.assert_allclose(np.sqrt(np.diag(r.cov_params("sandwich"))), se_s, rtol=1e-8)
    assert not np.allclose(se_s, r.bse)
