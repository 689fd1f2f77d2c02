"""The simulator: shapes, the laws it draws from, missingness, determinism, argument errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import special

from latentscale.model.simulate import (
    REAL_FAMILY_SIZES,
    SIZE_RANGE,
    TOKEN_RANGE,
    TRUTH_LAWS,
    random_params,
    simulate,
)


@pytest.fixture(scope="module")
def big():
    """Many families with the real-data laws of family sizes and missingness."""
    return simulate(k=2, n_benchmarks=6, n_families=20_000, family_sizes="real", missing="real", seed=4)


def scores(data):
    return data.frame[list(data.benchmarks)].to_numpy(float)


def test_shapes_and_names():
    data, true, spec = simulate(k=2, n_benchmarks=5, n_families=40, family_sizes=3, seed=1)
    assert data.benchmarks == ("b1", "b2", "b3", "b4", "b5")
    assert spec.benchmarks == data.benchmarks and spec.anchors == ("b1", "b2") and spec.K == 2 and spec.J == 5
    assert data.n_models == 120 and data.n_families == 40
    assert data.frame.index.is_unique
    assert list(data.frame.columns[:4]) == ["family", "group", "size", "tokens"]
    assert (data.frame.groupby("family").size() == 3).all()
    assert true["B"].shape == (3, 2) and true["loadings"].shape == (2, 5)
    assert true["intercepts"].shape == (5,) and true["precision"].shape == (5,)
    assert true["corr"].shape == (2, 2) and true["alpha"].shape == (40, 2)
    # Anchor structure of the returned truth; floors alternate 0 / 0.25 by default.
    assert true["loadings"][1, 0] == 0.0 and true["loadings"][0, 1] == 0.0
    assert true["loadings"][0, 0] > 0 and true["loadings"][1, 1] > 0
    assert spec.floors == (0.0, 0.25, 0.0, 0.25, 0.0)
    assert data.floors == dict(zip(data.benchmarks, spec.floors))
    assert not np.isnan(scores(data)).any()  # missing=0 by default


def test_scores_sizes_tokens_in_range(big):
    data, _, spec = big
    y = scores(data)
    obs = y[~np.isnan(y)]
    assert obs.size > 0 and np.all((obs >= 0.0) & (obs <= 1.0))
    f = data.frame
    assert f["size"].between(*SIZE_RANGE).all() and f["tokens"].between(*TOKEN_RANGE).all()
    # Clipping on request.
    d, _, s = simulate(k=1, n_benchmarks=3, n_families=200, clip=(0.05, 0.95), seed=2)
    y = scores(d)
    assert s.clip == (0.05, 0.95) and y.min() >= 0.05 and y.max() <= 0.95
    assert np.any(y == 0.05) or np.any(y == 0.95)  # the clip did bind somewhere
    assert spec.clip == (0.001, 0.999)  # default: the package's fitting clip


def test_family_sizes_follow_the_real_law(big):
    data, _, _ = big
    F = 20_000
    sizes = data.frame.groupby("family").size()
    assert len(sizes) == F
    freq = sizes.value_counts(normalize=True)
    prob = np.array(list(REAL_FAMILY_SIZES.values()))
    prob = prob / prob.sum()
    for m, p in zip(REAL_FAMILY_SIZES, prob):
        assert abs(freq.get(m, 0.0) - p) < 4.0 * math.sqrt(p * (1 - p) / F) + 1e-3, (m, freq.get(m), p)
    assert set(freq.index) <= set(REAL_FAMILY_SIZES)
    assert sizes.mean() == pytest.approx(1.68, abs=0.03)  # the real data's mean family size


def test_family_size_options():
    d, _, _ = simulate(k=1, n_benchmarks=3, n_families=30, family_sizes={2: 1.0}, seed=0)
    assert (d.frame.groupby("family").size() == 2).all()
    arr = np.arange(1, 11)
    d, _, _ = simulate(k=1, n_benchmarks=3, n_families=10, family_sizes=arr, seed=0)
    assert d.frame.groupby("family", sort=False).size().tolist() == arr.tolist()


def test_missing_fraction():
    d, _, _ = simulate(k=2, n_benchmarks=5, n_families=3000, family_sizes=2, missing=0.3, seed=3)
    y = scores(d)
    assert np.isnan(y).mean() == pytest.approx(0.3, abs=0.01)
    assert (~np.isnan(y)).any(axis=1).all()
    # Extreme missingness still leaves every row and every benchmark with a score.
    d, _, _ = simulate(k=2, n_benchmarks=5, n_families=20, missing=0.95, seed=3)
    obs = ~np.isnan(scores(d))
    assert obs.any(axis=1).all() and obs.any(axis=0).all()
    assert obs.mean() < 0.3


def test_real_missingness_blocks(big):
    data, _, _ = big
    miss = np.isnan(scores(data))
    first, second = miss[:, :3], miss[:, 3:]
    # Whole leaderboard blocks go missing together, never both.
    assert np.all(first.all(axis=1) | ~first.any(axis=1))
    assert np.all(second.all(axis=1) | ~second.any(axis=1))
    assert not np.any(first.all(axis=1) & second.all(axis=1))
    # Pattern frequencies (v2 only 41 %, v1 only 25 %) and about a third of the cells missing.
    assert first.all(axis=1).mean() == pytest.approx(0.412, abs=0.015)
    assert second.all(axis=1).mean() == pytest.approx(0.245, abs=0.015)
    assert miss.mean() == pytest.approx(1 / 3, abs=0.02)


def test_deterministic_under_seed():
    a = simulate(k=2, n_benchmarks=4, n_families=50, missing=0.2, seed=9)
    b = simulate(k=2, n_benchmarks=4, n_families=50, missing=0.2, seed=9)
    c = simulate(k=2, n_benchmarks=4, n_families=50, missing=0.2, seed=10)
    pd.testing.assert_frame_equal(a[0].frame, b[0].frame)
    for key in a[1]:
        np.testing.assert_array_equal(a[1][key], b[1][key])
    assert a[2] == b[2]
    assert not a[0].frame.equals(c[0].frame)
    assert not np.array_equal(a[1]["B"], c[1]["B"])


def test_scores_follow_the_model(big):
    """E[y | α, x] = μ and Var[y | α, x] = μ(1 − μ)/(φ + 1), with x standardized over the sample."""
    data, true, spec = big
    f = data.frame
    ln, ld = np.log(f["size"].to_numpy()), np.log(f["tokens"].to_numpy())
    raw = np.column_stack([ln, ld, ln * ld])
    X = (raw - raw.mean(0)) / raw.std(0)
    fam = pd.Index(data.families).get_indexer(f["family"])
    assert np.array_equal(data.families, [f"fam{i + 1:05d}" for i in range(20_000)])
    theta = X @ true["B"] + true["alpha"][fam]
    c = np.asarray(spec.floors)
    mu = c + (1 - c) * special.expit(theta @ true["loadings"] + true["intercepts"])
    phi = true["precision"]
    y = scores(data)
    obs = ~np.isnan(y)
    r = ((y - mu) / np.sqrt(mu * (1 - mu) / (phi + 1)))[obs]
    assert r.size > 50_000
    assert abs(r.mean()) < 0.02
    assert r.var() == pytest.approx(1.0, abs=0.04)
    # Family effects: N(0, Σ) with Σ the correlation of the returned Cholesky factor.
    L = true["corr"]
    np.testing.assert_allclose(np.cov(true["alpha"].T), L @ L.T, atol=0.05)
    np.testing.assert_allclose(np.diag(L @ L.T), 1.0, atol=1e-12)


def test_given_params_are_used():
    params = random_params(2, 4, seed=123)
    _, true, _ = simulate(params, k=2, n_benchmarks=4, n_families=10, seed=0)
    for key in ("B", "loadings", "intercepts", "precision", "corr"):
        np.testing.assert_allclose(true[key], params[key], atol=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(k=0, n_benchmarks=4, n_families=10),
        dict(k=5, n_benchmarks=4, n_families=10),
        dict(k=-1, n_benchmarks=4, n_families=10),
        dict(k=1, n_benchmarks=4, n_families=0),
        dict(k=1, n_benchmarks=4, n_families=10, missing=1.0),
        dict(k=1, n_benchmarks=4, n_families=10, missing="some"),
        dict(k=1, n_benchmarks=4, n_families=10, family_sizes="many"),
        dict(k=1, n_benchmarks=4, n_families=10, family_sizes=0),
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        simulate(**kwargs)


def test_params_of_the_wrong_shape():
    with pytest.raises(ValueError, match="do not match"):
        simulate(random_params(2, 4), k=1, n_benchmarks=4, n_families=10)


@pytest.mark.parametrize("name", sorted(TRUTH_LAWS))
def test_truth_ranges_keep_the_law_and_move_each_value_monotonically(name):
    """A range replaces the default one: every value inside it, the same uniform numbers mapped by
    the block's law (uniform, or uniform in the log), the core parameters unchanged."""
    law, (low0, high0) = TRUTH_LAWS[name]
    blocks = (name, "residual_sd") if name == "slope_sd" else (name,)
    base = random_params(1, 40, seed=3, extra_blocks=blocks)
    low, high = (0.3, 0.9) if name == "ceiling" else (0.6, 6.0)
    moved = random_params(1, 40, seed=3, extra_blocks=blocks, ranges={name: (low, high)})
    assert np.all((moved[name] >= low) & (moved[name] <= high))
    f = np.log if law == "log-uniform" else (lambda v: v)
    u0 = (f(base[name]) - f(low0)) / (f(high0) - f(low0))
    u1 = (f(moved[name]) - f(low)) / (f(high) - f(low))
    np.testing.assert_allclose(u1, u0, atol=1e-12)  # the same uniform numbers
    assert u0.min() < 0.2 and u0.max() > 0.8  # ... spread over the range (40 draws)
    for key in ("B", "loadings", "intercepts", "precision", "corr"):
        np.testing.assert_array_equal(moved[key], base[key])


@pytest.mark.parametrize("ranges,match", [
    ({"precision_slope": (0.1, 1.0)}, "take no range"),
    ({"link_power": (2.0, 1.0)}, "low < high"),
    ({"link_power": (0.0, 2.0)}, "above 0"),
    ({"link_power": ("a", 2.0)}, "two numbers"),
    ({"ceiling": (0.5, 1.2)}, r"\(0, 1\)"),
    ({"residual_sd": (0.1, 0.5)}, "no such block"),
])
def test_bad_truth_ranges(ranges, match):
    blocks = tuple(n for n in ("link_power", "ceiling", "precision_slope") if n in ranges)
    with pytest.raises(ValueError, match=match):
        random_params(1, 4, extra_blocks=blocks, ranges=ranges)
