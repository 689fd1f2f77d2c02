"""The marginal likelihood against independent computations (SPEC §2-3).

Every reference value here is computed from the model's definition with numpy/scipy, not
with the package's quadrature code: covariates are standardized by hand, the Beta density is
scipy's, and the family integrals ∫ Π p(y_ij | α) N(α; 0, Σ) dα are done by 1-D adaptive
quadrature (K = 1) or by plain Monte Carlo from the prior (K = 2).

Two small problems keep the number of JAX compilations low (each costs seconds): a K = 1,
J = 4 table with 30 families (missing cells, and one family whose only model has a single
observed score), and a K = 2, J = 5 table with 8 families of 1-3 models.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import integrate, special, stats

import jax
import jax.numpy as jnp
from latentscale.estimation.likelihood import MarginalLikelihood
from latentscale.estimation.quadrature import QuadratureSpec
from latentscale.model.design import build_design
from latentscale.model.observation import beta_logpdf, log_prior
from latentscale.model.params import pack, unpack
from latentscale.model.simulate import random_params, simulate


def rule(spec, design, points=None, **kw):
    """The likelihood with the product rule of ``points`` nodes per skill (default rule if None)."""
    return MarginalLikelihood(spec, design, QuadratureSpec(points=points), **kw)


# ---- independent reference implementation ----------------------------------------------
def scipy_beta_logpdf(y, a, b):
    """log Beta(y | a, b) from scipy's special functions: scipy.stats.beta.logpdf's values (checked in
    test_beta_logpdf_matches_scipy) without its per-call argument checks, which dominated the brute-force
    integrations' time."""
    return (a - 1.0) * np.log(y) + (b - 1.0) * np.log1p(-y) - special.betaln(a, b)


def standardized_covariates(frame) -> np.ndarray:
    """(log N, log D, log N · log D), each column centred and scaled by its (population) SD."""
    ln, ld = np.log(frame["size"].to_numpy(float)), np.log(frame["tokens"].to_numpy(float))
    raw = np.column_stack([ln, ld, ln * ld])
    return (raw - raw.mean(axis=0)) / raw.std(axis=0)


def numpy_params(theta, spec) -> dict:
    return {k: np.asarray(v) for k, v in unpack(np.asarray(theta, float), spec).items()}


class Reference:
    """log p(y_f | α) of each family from the definition of the model (numpy / scipy only)."""

    def __init__(self, data, spec, params):
        frame = data.frame
        self.X = standardized_covariates(frame)
        Y = frame[list(spec.benchmarks)].to_numpy(float)
        self.Y = np.where(np.isnan(Y), np.nan, np.clip(Y, *spec.clip))
        self.family = frame["family"].to_numpy()
        self.c = np.asarray(spec.floors)
        self.B, self.lam, self.b = params["B"], params["loadings"], params["intercepts"]
        self.phi = params["precision"]
        self.gamma = params.get("precision_slope")  # heteroscedastic precision: log φ_ij = log φ_j + γ_jᵀ x_i
        self.L = params["corr"]

    def family_names(self):
        return list(dict.fromkeys(self.family))

    def cells(self, name, drop=()):
        """Observed cells of a family: (fixed part of η, loadings (K, n), y, c, φ); ``drop`` lists
        (row-within-family, benchmark) cells to leave out."""
        rows = np.flatnonzero(self.family == name)
        obs = ~np.isnan(self.Y[rows])
        for r, j in drop:
            obs[r, j] = False
        eta0 = (self.X[rows] @ self.B) @ self.lam + self.b  # (m, J) at α = 0
        r_idx, j_idx = np.nonzero(obs)
        phi = self.phi[j_idx]
        if self.gamma is not None:
            phi = phi * np.exp(np.sum(self.X[rows][r_idx] * self.gamma.T[j_idx], axis=1))
        return eta0[r_idx, j_idx], self.lam[:, j_idx], self.Y[rows][r_idx, j_idx], self.c[j_idx], phi

    def loglik(self, name, alpha, drop=()):
        """log p(y_f | α) for α of shape (S, K), with scipy's Beta density."""
        eta0, lam, y, c, phi = self.cells(name, drop)
        eta = eta0 + alpha @ lam  # (S, n)
        mu = c + (1.0 - c) * special.expit(eta)
        return scipy_beta_logpdf(y, phi * mu, phi * (1.0 - mu)).sum(axis=1)

    def integral_1d(self, name, drop=()) -> float:
        """K = 1: log ∫ p(y_f | α) N(α; 0, 1) dα by adaptive quadrature around the mode."""
        def log_joint(a):
            return self.loglik(name, np.array([[a]]), drop)[0] + stats.norm.logpdf(a)

        grid = np.linspace(-8.0, 8.0, 3201)
        lg = self.loglik(name, grid[:, None], drop) + stats.norm.logpdf(grid)
        top, mode = lg.max(), grid[np.argmax(lg)]
        val, err = integrate.quad(lambda a: np.exp(log_joint(a) - top), mode - 10.0, mode + 10.0,
                                  epsabs=0.0, epsrel=1e-13, limit=400)
        assert err < 1e-11 * val
        return top + np.log(val)

    def prior_monte_carlo(self, names, n_draws: int, seed: int, chunk: int = 100_000):
        """log mean_s p(y_f | α_s), α_s ~ N(0, Σ), and its delta-method standard error, per family."""
        rng = np.random.default_rng(seed)
        K = self.L.shape[0]
        out = []
        for name in names:
            eta0, lam, y, c, phi = self.cells(name)
            const = (np.log(y), np.log1p(-y))
            logs = []
            for start in range(0, n_draws, chunk):
                alpha = rng.standard_normal((min(chunk, n_draws - start), K)) @ self.L.T
                mu = c + (1.0 - c) * special.expit(eta0 + alpha @ lam)
                a, b = phi * mu, phi * (1.0 - mu)
                # log B(a, b) = lgamma(a) + lgamma(b) - lgamma(φ), since a + b = φ
                log_beta = special.gammaln(a) + special.gammaln(b) - special.gammaln(phi)
                logs.append(((a - 1.0) * const[0] + (b - 1.0) * const[1] - log_beta).sum(axis=1))
            terms = np.concatenate(logs)
            top = terms.max()
            w = np.exp(terms - top)
            out.append((top + np.log(w.mean()), w.std(ddof=1) / np.sqrt(w.size) / w.mean()))
        return np.array(out).T


# ---- problems ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def k1():
    """K = 1, J = 4, 30 families, 10 % missing; the last family's only model keeps one score."""
    data, true, spec = simulate(k=1, n_benchmarks=4, n_families=30, family_sizes="real", missing=0.1, seed=3)
    frame = data.frame.copy()
    single = frame.groupby("family").size()
    lone = single[single == 1].index[-1]
    row = frame.index[frame["family"] == lone][0]
    bench = list(spec.benchmarks)
    keep = bench[2]
    if np.isnan(frame.loc[row, keep]):
        frame.loc[row, keep] = 0.6
    frame.loc[row, [b for b in bench if b != keep]] = np.nan
    data = replace(data, frame=frame)
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    theta = pack(true, spec) + np.random.default_rng(0).normal(0.0, 0.05, spec.n_params)  # off the truth
    return data, spec, design, theta, lone


@pytest.fixture(scope="module")
def k1_reference(k1):
    data, spec, design, theta, _ = k1
    ref = Reference(data, spec, numpy_params(theta, spec))
    return {name: ref.integral_1d(name) for name in design.families}, ref


@pytest.fixture(scope="module")
def k2():
    """K = 2, J = 5, 8 families of 1-3 models, 15 % missing, moderate precisions (wide posteriors)."""
    params = random_params(2, 5, seed=5)
    params["precision"] = np.exp(np.random.default_rng(5).uniform(np.log(10.0), np.log(40.0), 5))
    data, true, spec = simulate(params, k=2, n_benchmarks=5, n_families=8, family_sizes={1: 1, 2: 1, 3: 1},
                                missing=0.15, seed=5)
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    theta = pack(true, spec) + np.random.default_rng(1).normal(0.0, 0.1, spec.n_params)  # generic point
    return data, spec, design, theta


# ---- the Beta density and the prior -----------------------------------------------------
def test_beta_logpdf_matches_scipy():
    rng = np.random.default_rng(0)
    n = 2000
    eta = rng.uniform(-12.0, 12.0, n)
    c = rng.choice([0.0, 0.1, 0.25, 0.5], n)
    phi = np.exp(rng.uniform(np.log(0.5), np.log(2000.0), n))
    mu = c + (1.0 - c) * special.expit(eta)
    # y anywhere in (0, 1), including far below the floor and near the ends
    y = np.clip(rng.uniform(0.0, 1.0, n), 1e-3, 1 - 1e-3)
    expected = stats.beta.logpdf(y, phi * mu, phi * (1.0 - mu))
    np.testing.assert_allclose(scipy_beta_logpdf(y, phi * mu, phi * (1.0 - mu)), expected, rtol=1e-12, atol=1e-9)
    with jax.enable_x64(True):
        got = np.asarray(beta_logpdf(jnp.asarray(eta), jnp.log(y), jnp.log1p(-y), jnp.asarray(c), jnp.log(phi)))
        # Scalars broadcast; a hand-computed case: Beta(2, 2) density at 0.5 is 1.5.
        one = beta_logpdf(jnp.asarray(0.0), np.log(0.5), np.log(0.5), 0.0, np.log(4.0))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    assert float(one) == pytest.approx(np.log(1.5), abs=1e-12)


def test_log_prior_matches_scipy():
    rng = np.random.default_rng(1)
    C = np.array([[1.0, 0.3, -0.2], [0.3, 1.0, 0.5], [-0.2, 0.5, 1.0]])
    L = np.linalg.cholesky(C)
    alpha = rng.normal(size=(4, 7, 3))
    with jax.enable_x64(True):
        got = np.asarray(log_prior(jnp.asarray(alpha), jnp.asarray(L)))
    expected = stats.multivariate_normal(np.zeros(3), C).logpdf(alpha.reshape(-1, 3)).reshape(4, 7)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_pack_unpack_round_trip(k2):
    _, spec, _, theta = k2
    params = numpy_params(theta, spec)
    np.testing.assert_allclose(pack(params, spec), theta, rtol=1e-12, atol=1e-12)
    L = params["corr"]
    np.testing.assert_allclose(np.diag(L @ L.T), 1.0, atol=1e-14)  # a correlation matrix
    lam = params["loadings"]
    for k, j in enumerate(spec.anchor_index):  # anchors load on their own skill only, positively
        assert lam[k, j] > 0
        assert np.all(np.delete(lam[:, j], k) == 0.0)


# ---- gradients --------------------------------------------------------------------------
@pytest.mark.parametrize("points", [1, 3])
def test_gradient_matches_finite_differences(k2, points):
    _, spec, design, theta = k2
    ml = rule(spec, design, points)
    value, grad = ml.loglike_and_score(theta)
    assert np.isfinite(value) and np.linalg.norm(grad) > 1.0  # a generic point, not an optimum
    h = 1e-5
    fd = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        fd[i] = (ml.loglike(theta + e) - ml.loglike(theta - e)) / (2.0 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6 * np.linalg.norm(grad))


# ---- accuracy of the quadrature ---------------------------------------------------------
def test_aghq_matches_one_dimensional_integral(k1, k1_reference):
    _, spec, design, theta, _ = k1
    ref, _ = k1_reference
    per_family = rule(spec, design, 30).loglikeobs(theta)
    expected = np.array([ref[name] for name in design.families])
    np.testing.assert_allclose(per_family, expected, rtol=0, atol=1e-9)


def test_laplace_differs_and_aghq_converges(k1, k1_reference):
    _, spec, design, theta, _ = k1
    ref, _ = k1_reference
    exact = sum(ref.values())
    errors = {q: abs(rule(spec, design, q).loglike(theta) - exact) for q in (1, 3, 9, 15)}
    assert errors[1] > 0.05  # Laplace is visibly off on 30 families ...
    assert errors[1] > errors[3] > errors[9] > errors[15]  # ... and more nodes close in
    assert errors[15] < 1e-5


def test_aghq_matches_prior_monte_carlo_k2(k2):
    data, spec, design, theta = k2
    per_family = rule(spec, design).loglikeobs(theta)  # default rule (9 × 9 nodes)
    ref = Reference(data, spec, numpy_params(theta, spec))
    mc, se = ref.prior_monte_carlo(design.families, n_draws=1_000_000, seed=2)
    assert np.all(se < 0.02), se  # the check below is informative
    z = (per_family - mc) / se
    assert np.all(np.abs(z) < 4.0), (per_family, mc, se)
    assert abs(per_family.sum() - mc.sum()) < 4.0 * np.sqrt(np.sum(se**2))


# ---- missing cells ----------------------------------------------------------------------
def test_missing_cells_are_skipped(k1, k1_reference):
    data, spec, design, theta, lone = k1
    ref, reference = k1_reference
    frame = data.frame
    per_family = dict(zip(design.families, rule(spec, design, 30).loglikeobs(theta)))
    with_gaps = [f for f in design.families
                 if frame.loc[frame["family"] == f, list(spec.benchmarks)].isna().any().any()]
    assert len(with_gaps) >= 3
    for name in with_gaps:  # equal to the integral over the observed cells only (ref skips NaN) ...
        assert per_family[name] == pytest.approx(ref[name], abs=1e-9)
    # ... which differs from any integral that uses a value for the missing cell.
    name = with_gaps[0]
    rows = frame.index[frame["family"] == name]
    r, j = np.argwhere(frame.loc[rows, list(spec.benchmarks)].isna().to_numpy())[0]
    filled = frame.copy()
    filled.loc[rows[r], spec.benchmarks[j]] = 0.5
    other = Reference(replace(data, frame=filled), spec, numpy_params(theta, spec)).integral_1d(name)
    assert abs(other - per_family[name]) > 1e-3
    # Dropping an observed cell by hand in the reference gives the same as leaving it NaN in the data.
    obs = np.argwhere(~frame.loc[rows, list(spec.benchmarks)].isna().to_numpy())[0]
    holed = frame.copy()
    holed.loc[rows[obs[0]], spec.benchmarks[obs[1]]] = np.nan
    holed_data = replace(data, frame=holed)
    holed_design, _ = build_design(holed_data, spec.benchmarks, spec.clip)
    assert holed_design.n_obs == design.n_obs - 1
    holed_ll = dict(zip(holed_design.families,
                        rule(spec, holed_design, 30).loglikeobs(theta)))
    assert holed_ll[name] == pytest.approx(reference.integral_1d(name, drop=[tuple(obs)]), abs=1e-9)
    for f in design.families:
        if f != name:
            assert holed_ll[f] == pytest.approx(per_family[f], abs=1e-10)


def test_model_with_a_single_observed_score(k1, k1_reference):
    data, spec, design, theta, lone = k1
    ref, _ = k1_reference
    assert int(data.frame.loc[data.frame["family"] == lone, list(spec.benchmarks)].notna().sum().sum()) == 1
    value = dict(zip(design.families, rule(spec, design, 30).loglikeobs(theta)))[lone]
    assert np.isfinite(value)
    assert value == pytest.approx(ref[lone], abs=1e-9)


# ---- invariance -------------------------------------------------------------------------
@pytest.mark.parametrize("problem", ["k1", "k2"])
def test_invariant_to_row_order_and_family_labels(problem, request):
    data, spec, design, theta = request.getfixturevalue(problem)[:4]
    points = 30 if problem == "k1" else None
    ml = rule(spec, design, points)
    base = dict(zip(design.families, ml.loglikeobs(theta)))
    total = sum(base.values())

    frame = data.frame.sample(frac=1.0, random_state=7)
    assert not frame.index.equals(data.frame.index)
    names = sorted(set(frame["family"]))
    relabel = dict(zip(names, [f"z-{n}" for n in reversed(names)]))  # new names, another sort order
    for case, df in [("shuffled", frame), ("shuffled and relabeled", frame.assign(family=frame["family"].map(relabel)))]:
        d, _ = build_design(replace(data, frame=df), spec.benchmarks, spec.clip)
        assert d.families != design.families
        got = dict(zip(d.families, rule(spec, d, points).loglikeobs(theta)))
        assert sum(got.values()) == pytest.approx(total, abs=1e-9), case
        back = {name: got[relabel[name] if "relabeled" in case else name] for name in base}
        for name in base:
            assert back[name] == pytest.approx(base[name], abs=1e-9), (case, name)


def _chunked(problem, request):
    data, spec, design, theta = request.getfixturevalue(problem)[:4]
    whole = rule(spec, design, 3)
    chunked = rule(spec, design, 3, chunk_cells=3 ** spec.K * 7)
    assert whole.n_chunks == 1 and chunked.n_chunks >= 3
    return whole, chunked, theta


@pytest.mark.parametrize("problem", ["k1", "k2"])
def test_family_chunks_give_the_same_likelihood_and_gradient(problem, request):
    """Cut into chunks of whole families (padded to one shape), ℓ, its gradient and the per-family
    values are those of the whole design."""
    whole, chunked, theta = _chunked(problem, request)
    v, g, per = whole.value_grad_families(theta)
    v2, g2, per2 = chunked.value_grad_families(theta)
    np.testing.assert_allclose(per2, per, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g2, g, rtol=1e-10, atol=1e-10 * np.abs(g).max())


@pytest.mark.slow
def test_family_chunks_give_the_same_exact_hessian(request):
    """The exact (automatic-differentiation) Hessian and scores, chunked or not, and against
    differences of the gradient (slow: the forward-over-reverse program compiles for a minute)."""
    whole, chunked, theta = _chunked("k2", request)
    H, S = whole.hessian_and_scores(theta, "exact")
    H2, S2 = chunked.hessian_and_scores(theta, "exact")
    np.testing.assert_allclose(H2, H, rtol=1e-9, atol=1e-9 * np.abs(H).max())
    np.testing.assert_allclose(S2, S, rtol=1e-9, atol=1e-9 * np.abs(S).max())
    H_fd, S_fd = whole.hessian_and_scores(theta, "fd")
    np.testing.assert_allclose(H_fd, H, rtol=1e-4, atol=1e-5 * np.abs(H).max())
    np.testing.assert_allclose(S_fd, S, rtol=1e-4, atol=1e-5 * np.abs(S).max())


def test_warm_started_modes_do_not_change_the_likelihood(k2):
    """The mode search starts from the last evaluation's modes; values do not depend on it."""
    _, spec, design, theta = k2
    ml = rule(spec, design, 3)
    cold = ml.value_grad_families(theta)
    ml.value_grad_families(theta + 0.3)  # leaves modes of a distant point behind
    warm = ml.value_grad_families(theta)
    ml.reset()
    again = ml.value_grad_families(theta)
    assert warm[0] == pytest.approx(cold[0], abs=1e-10)
    np.testing.assert_allclose(warm[1], cold[1], rtol=1e-8, atol=1e-8 * np.abs(cold[1]).max())
    np.testing.assert_array_equal(again[2], cold[2])  # reset: bit-for-bit the cold evaluation


def test_difference_hessian_is_the_same_on_any_number_of_threads(k2):
    """The columns of the finite-difference Hessian start from the modes at θ and run on forks of the
    likelihood: 1 and 3 threads give the same numbers bit for bit, the forks leave the likelihood as
    evaluated at θ, and the Hessian matches differences of the gradient taken by hand."""
    from latentscale import config
    from latentscale.estimation.likelihood import fd_hessian

    _, spec, design, theta = k2
    ml = rule(spec, design, 3)
    previous = config.set_evaluation_threads(1)
    try:
        H1, S1 = ml.hessian_and_scores(theta, "fd")
        config.set_evaluation_threads(3)
        H3, S3 = ml.hessian_and_scores(theta, "fd")
        F3 = fd_hessian(ml, theta, central=False)
    finally:
        config.set_evaluation_threads(previous)
    np.testing.assert_array_equal(H3, H1)
    np.testing.assert_array_equal(S3, S1)
    np.testing.assert_array_equal(ml._last[0], theta)  # left at θ: the next call at θ is free
    # against central differences by hand, each point's modes searched from 0 by a fresh likelihood
    h = 1e-4 * np.maximum(1.0, np.abs(theta))
    by_hand = np.empty_like(H1)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h[i]
        by_hand[:, i] = (rule(spec, design, 3).score(theta + e) - rule(spec, design, 3).score(theta - e)) / (2 * h[i])
    np.testing.assert_allclose(H1, (by_hand + by_hand.T) / 2, rtol=1e-6, atol=1e-7 * np.abs(H1).max())
    np.testing.assert_allclose(F3, H1, rtol=1e-2, atol=1e-3 * np.abs(H1).max())  # forward differences: O(h)
    # the per-family scores add up to the gradient
    np.testing.assert_allclose(S1.sum(axis=0), ml.score(theta), rtol=1e-6, atol=1e-7 * np.abs(S1).max())


def test_subset_of_families_keeps_their_scores(k1):
    data, spec, design, theta, _ = k1
    idx = np.array([0, 3, 4, 17, design.n_families - 1])
    sub = design.subset_families(idx)
    assert sub.families == tuple(design.families[i] for i in idx)
    whole = dict(zip(design.families, rule(spec, design, 5).loglikeobs(theta)))
    part = rule(spec, sub, 5).loglikeobs(theta)
    np.testing.assert_allclose(part, [whole[design.families[i]] for i in idx], rtol=1e-12)
    keep = np.isin(design.obs_family, idx)
    assert sub.n_obs == keep.sum()
    np.testing.assert_array_equal(np.sort(sub.y), np.sort(design.y[keep]))


def test_exact_hessian_chunks_stay_under_the_score_cap(monkeypatch):
    """The exact Hessian's compiled calls never see more than HESSIAN_MAX_SCORES scores (larger calls
    hang on jaxlib 0.10.2's CPU runtime, benchmarks/hessian_hang.py); every family is covered once."""
    import latentscale.estimation.likelihood as lik

    data, true, spec = simulate(k=1, n_benchmarks=4, n_families=400, family_sizes=3, seed=2)
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    ml = MarginalLikelihood(spec, design, QuadratureSpec("laplace"))
    assert design.n_obs > 2 * lik.HESSIAN_MAX_SCORES  # the default bound alone would make one chunk
    seen = []

    def record(theta, arrays, nodes, log_w, signs, alpha0, static, n_families, batch):
        seen.append((int(np.sum(np.asarray(arrays["obs_family"]) < n_families)), arrays["log_y"].shape[0]))
        P = theta.shape[0]
        return jnp.zeros((P, P)), jnp.zeros((n_families, P))

    monkeypatch.setattr(lik, "_hessian_and_scores", record)
    theta = pack({k: v for k, v in true.items() if k != "alpha"}, spec)
    H, S = ml._exact_hessian_and_scores(np.asarray(theta))
    assert len(seen) > 2 and all(padded <= lik.HESSIAN_MAX_SCORES for _, padded in seen)
    assert sum(n for n, _ in seen) == design.n_obs and S.shape == (design.n_families, theta.shape[0])
