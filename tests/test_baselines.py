"""Baselines of the head-to-head evaluation: each recovers its own parameters on data simulated from
it; the shared interface (score columns never read at prediction, unseen families, bad input);
the latent method's padding and its posterior-mean prediction against latentscale.prediction.predict."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from latentscale.evaluation.baselines import (
    BASELINES, FlopsFamily, FlopsGlobal, LatentMethod, PCAFlops, SizeTokensFamily, Sloth, make_baseline,
)
from latentscale.evaluation.baselines._common import covariates


def design(n_families=12, per_family=8, seed=0):
    """Models with sizes 0.1–70 B and tokens 0.2–15 T in families named f0, f1, ..."""
    rng = np.random.default_rng(seed)
    n = n_families * per_family
    return pd.DataFrame({
        "family": np.repeat([f"f{i}" for i in range(n_families)], per_family),
        "size": np.exp(rng.uniform(np.log(0.1), np.log(70), n)),
        "tokens": np.exp(rng.uniform(np.log(0.2), np.log(15), n)),
    }, index=pd.Index([f"m{i}" for i in range(n)], name="model"))


BENCH = ["b0", "b1", "b2", "b3", "b4", "b5"]
FLOORS = {"b0": 0.25, "b1": 0.0, "b2": 0.25, "b3": 0.5, "b4": 0.1, "b5": 0.0}


def with_scores(frame, Y, noise, seed=1):
    rng = np.random.default_rng(seed)
    Y = np.clip(Y + rng.normal(0, noise, Y.shape), 0, 1)
    return frame.assign(**{b: Y[:, j] for j, b in enumerate(BENCH[: Y.shape[1]])})


def codes(frame):
    return frame["family"].str[1:].astype(int).to_numpy()


@pytest.mark.parametrize("cls, family, fit_floor", [(FlopsGlobal, False, True), (FlopsFamily, True, True),
                                                     (SizeTokensFamily, True, False)])
def test_sigmoid_laws_recover_their_parameters(cls, family, fit_floor):
    frame = design(seed=3)
    Z, _ = covariates(frame, kind="flops" if cls is not SizeTokensFamily else "paper")
    rng = np.random.default_rng(4)
    J, p, F = 3, Z.shape[1], 12
    w = rng.normal(0, 1.0, (J, p)) + 1.0
    a = rng.normal(0, 0.8, (F, J)) if family else np.repeat(rng.normal(0, 0.5, (1, J)), F, axis=0)
    c = np.array([0.25, 0.1, 0.3]) if fit_floor else np.array([FLOORS[b] for b in BENCH[:J]])
    Y = c + (1 - c) * expit(Z @ w.T + a[codes(frame)])
    train = with_scores(frame, Y, 0.002)
    m = cls().fit(train, BENCH[:J], FLOORS)
    assert np.allclose(m.coef_, w, atol=0.08)
    assert np.allclose(m.floors_, c, atol=0.02)
    fitted_a = m.intercepts_ if family else m.intercepts_[:1]
    true_a = a[[int(f[1:]) for f in m.families_.names]] if family else a[:1]
    assert np.allclose(fitted_a, true_a, atol=0.1)
    assert np.abs(m.predict(frame) - Y).max() < 0.01


def test_pca_flops_recovers_components_slopes_and_family_effects():
    frame = design(seed=5)
    z = covariates(frame, kind="flops")[0][:, 0]
    rng = np.random.default_rng(6)
    V = np.linalg.qr(rng.normal(size=(6, 3)))[0]  # orthonormal (J, d)
    slope = np.array([0.12, 0.04, 0.02])
    fam = rng.normal(0, [0.06, 0.03, 0.015], (12, 3))
    mean = np.full(6, 0.5)
    T = z[:, None] * slope + fam[codes(frame)]
    T = T - T.mean(axis=0)
    Y = mean + T @ V.T
    m = PCAFlops(3).fit(with_scores(frame, Y, 1e-4), BENCH, FLOORS)
    # the fitted components span the true subspace
    assert np.allclose(np.linalg.svd(V.T @ m.components_, compute_uv=False), 1.0, atol=1e-3)
    # per-benchmark slopes and family contrasts (invariant to the components' signs and order)
    assert np.allclose(m.components_ @ m.slope_, V @ slope, atol=2e-3)
    idx = [int(f[1:]) for f in m.families_.names]
    fitted = m.intercepts_ @ m.components_.T
    true = fam[idx] @ V.T
    assert np.allclose(fitted - fitted[0], true - true[0], atol=3e-3)
    assert np.abs(m.predict(frame) - Y).max() < 3e-3


@pytest.mark.parametrize("d", [1, 2])
def test_sloth_recovers_its_parameters_up_to_rotation(d):
    frame = design(n_families=15, per_family=6, seed=7)
    X, _ = covariates(frame, kind="paper")
    rng = np.random.default_rng(8)
    A = rng.normal(0, 0.7, (15, d))
    B = rng.normal(0, 0.6, (3, d))
    L = rng.normal(0, 1.0, (d, 6)) + 0.8
    b = rng.normal(0, 0.5, 6)
    c = np.array([FLOORS[x] for x in BENCH])
    Y = c + (1 - c) * expit((A[codes(frame)] + X @ B) @ L + b)
    m = Sloth(d).fit(with_scores(frame, Y, 0.001), BENCH, FLOORS)
    # identified combinations: covariate effects on every benchmark's logit, family contrasts, intercepts
    assert np.allclose(m.B_ @ m.loadings_, B @ L, atol=0.05)
    idx = [int(f[1:]) for f in m.families_.names]
    fam_fit = m.family_skills_ @ m.loadings_
    fam_true = A[idx] @ L
    assert np.allclose(fam_fit - fam_fit[0], fam_true - fam_true[0], atol=0.1)
    assert np.abs(m.predict(frame) - Y).max() < 0.01


def test_interface_scores_never_read_unseen_family_and_errors():
    frame = design(n_families=5, per_family=5, seed=9)
    rng = np.random.default_rng(10)
    train = frame.assign(**{b: rng.uniform(0.3, 0.7, len(frame)) for b in BENCH})
    test = design(n_families=5, per_family=2, seed=11).rename(index=lambda s: "new" + s)
    poisoned = test.assign(**{b: 999.0 for b in BENCH})
    for name in BASELINES:
        m = make_baseline(name).fit(train, BENCH, FLOORS)
        p = m.predict(test[["family", "size", "tokens"]])
        assert p.shape == (len(test), 6) and np.all(np.isfinite(p))
        assert np.array_equal(p, m.predict(poisoned))  # score columns are ignored
        unseen = m.predict(test.assign(family="never-seen"))
        assert np.all(np.isfinite(unseen))
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("sloth-dx")
    bad = train.copy()
    bad.iloc[2, bad.columns.get_loc("b3")] = 1.5
    with pytest.raises(ValueError, match="'m2' / 'b3'"):
        FlopsFamily().fit(bad, BENCH, FLOORS)
    # a missing score: the per-benchmark laws fit each benchmark on its observed rows
    gap = train.copy()
    gap.iloc[2, gap.columns.get_loc("b3")] = np.nan
    j = BENCH.index("b3")
    with_gap = FlopsFamily().fit(gap, BENCH, FLOORS).predict(test)
    without_row = FlopsFamily().fit(train.drop(index=train.index[2]), BENCH, FLOORS).predict(test)
    assert np.allclose(with_gap[:, j], without_row[:, j], atol=1e-4)
    assert not np.allclose(with_gap[:, :j], without_row[:, :j], atol=1e-6)  # the row still counts elsewhere
    with pytest.raises(ValueError, match="'m2' / 'b3'"):
        make_baseline("sloth-basic-d1").fit(gap, BENCH, FLOORS)


@pytest.fixture(scope="module")
def latent_problem():
    from latentscale.model.simulate import simulate

    data, _, _ = simulate(k=1, n_benchmarks=4, n_families=30, family_sizes=3, seed=2, clip=(0.001, 0.999))
    frame = data.frame
    fams = list(pd.unique(frame["family"]))
    test_mask = frame["family"].isin(fams[:3]) & frame.groupby("family")["size"].rank(method="first").gt(1)
    return data, frame[~test_mask], frame[test_mask]


def test_latent_method_is_latentscale_fit_and_prediction_matches_predict(latent_problem):
    """The cross-validation's latent method runs the same estimator as ``latentscale fit``: the same
    ℓ and estimates on the same training rows (warm-started or not), and its posterior-mean
    prediction agrees with the sampling-based predictive mean of latentscale.predict."""
    import latentscale as ls
    from latentscale.data.dataset import ScoreData
    from latentscale.prediction import predict

    data, train, test = latent_problem
    bench = list(data.benchmarks)
    cv = LatentMethod(1, bench[:1]).fit(train, bench, data.floors)
    rows = ScoreData(frame=train, benchmarks=tuple(bench), floors=dict(data.floors))
    direct = ls.LatentScalingModel(1, bench[:1]).fit(rows)  # the default: three starts, standard errors
    assert cv.converged_ and direct.converged
    assert cv.log_likelihood_ == pytest.approx(direct.llf, abs=1e-6)
    np.testing.assert_allclose(cv.theta_, direct.theta, atol=1e-4)
    assert cv.fit_.quadrature == direct.quadrature
    # a warm start (as the folds get) reaches the same optimum
    warm = LatentMethod(1, bench[:1], start=direct.theta + 0.05).fit(train, bench, data.floors)
    assert warm.log_likelihood_ == pytest.approx(direct.llf, abs=1e-6)
    assert warm.fit_.diagnostics["start_given"]
    # the quadrature posterior mean against the sampling-based predictive mean
    p_cv = cv.predict(test[["family", "size", "tokens"]])
    pred = predict(cv.to_fit_result(), test[["family", "size", "tokens"]], parameter_uncertainty=False,
                   n_samples=20000, levels=(0.5,))
    mean = pred.pivot(index="model", columns="benchmark", values="mean").loc[test.index, bench].to_numpy()
    assert np.abs(mean - p_cv).max() < 0.01
