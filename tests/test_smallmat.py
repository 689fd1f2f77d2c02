"""Batched small-matrix algebra (estimation/smallmat.py): the unrolled code (K ≤ UNROLL_MAX) and
LAPACK's (beyond) solve the same systems, fail alike on matrices that are not positive definite,
and differentiate alike."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latentscale.estimation import smallmat as sm


def spd_batch(K: int, n: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, K, K))
    return X @ np.swapaxes(X, -1, -2) + K * np.eye(K)


@pytest.fixture(params=["unrolled", "lapack"])
def path(request, monkeypatch):
    monkeypatch.setattr(sm, "UNROLL_MAX", 100 if request.param == "unrolled" else 0)
    return request.param


@pytest.mark.parametrize("K", [1, 2, 4, 6])
def test_factor_and_solves(path, K):
    with jax.enable_x64(True):
        A = spd_batch(K)
        b = np.random.default_rng(1).standard_normal((A.shape[0], K))
        L = np.asarray(sm.cholesky(jnp.asarray(A)))
        assert np.allclose(np.triu(L, 1), 0.0)
        assert np.allclose(L @ np.swapaxes(L, -1, -2), A, atol=1e-12)
        x = np.asarray(sm.cho_solve(jnp.asarray(L), jnp.asarray(b)))
        assert np.allclose(np.einsum("fij,fj->fi", A, x), b, atol=1e-12)
        y = np.asarray(sm.solve_lower(jnp.asarray(L), jnp.asarray(b)))
        assert np.allclose(np.einsum("fij,fj->fi", L, y), b, atol=1e-12)
        z = np.asarray(sm.solve_upper_t(jnp.asarray(L), jnp.asarray(b)))
        assert np.allclose(np.einsum("fji,fj->fi", L, z), b, atol=1e-12)
        S = np.asarray(sm.inv_lower_t(jnp.asarray(L)))
        assert np.allclose(np.tril(S, -1), 0.0)
        assert np.allclose(S @ np.swapaxes(S, -1, -2), np.linalg.inv(A), atol=1e-12)


@pytest.mark.parametrize("K", [2, 6])
def test_not_positive_definite_gives_nan_pivot_only_there(path, K):
    """What the mode searches test (the diagonal above a threshold) fails for the bad matrix of a
    batch and only for it."""
    with jax.enable_x64(True):
        A = spd_batch(K)
        A[3] = -np.eye(K)
        A[5][K - 1, K - 1] = -1.0 - np.sum(A[5][K - 1, : K - 1] ** 2)  # the last pivot fails
        diag = np.diagonal(np.asarray(sm.cholesky(jnp.asarray(A))), axis1=1, axis2=2)
        ok = np.all(diag > 1e-6, axis=1)
        assert not ok[3] and not ok[5]
        assert ok[np.setdiff1d(np.arange(len(A)), [3, 5])].all()


def test_both_paths_agree_and_differentiate_alike(monkeypatch):
    """The same solution and the same derivatives (in the right-hand side, and in the matrix along
    symmetric directions, the only ones the likelihood's matrices move in: the exact Hessians
    differentiate them) from both paths, and against central differences."""
    K = 5
    with jax.enable_x64(True):
        A = jnp.asarray(spd_batch(K, n=4))
        b = jnp.asarray(np.random.default_rng(2).standard_normal((4, K)))

        def f(A, b):
            return jnp.sum(jnp.sin(sm.cho_solve(sm.cholesky(A), b)))

        directions = []
        for f_, i, j in [(0, 1, 1), (2, 3, 0), (3, 4, 2)]:
            E = np.zeros(A.shape)
            E[f_, i, j] = E[f_, j, i] = 1.0
            directions.append(E)
        out = {}
        for name, limit in (("unrolled", 100), ("lapack", 0)):
            monkeypatch.setattr(sm, "UNROLL_MAX", limit)
            gA, gb = jax.grad(f, argnums=(0, 1))(A, b)
            out[name] = [float(f(A, b)), np.asarray(gb)] + [float(jnp.sum(gA * E)) for E in directions]
            h = 1e-6
            for E, d in zip(directions, out[name][2:]):
                fd = (float(f(A + h * E, b)) - float(f(A - h * E, b))) / (2 * h)
                assert np.isclose(d, fd, rtol=1e-6, atol=1e-8), name
        for u, v in zip(out["unrolled"], out["lapack"]):
            assert np.allclose(u, v, rtol=1e-10, atol=1e-12)


def test_likelihood_at_k5_the_same_on_both_paths(monkeypatch):
    """The Laplace log-likelihood, its gradient and the converged modes of a K = 5 model (beyond
    UNROLL_MAX: LAPACK by default) equal those with every system unrolled, to rounding."""
    from latentscale.estimation.likelihood import MarginalLikelihood
    from latentscale.model.design import build_design
    from latentscale.model.params import pack
    from latentscale.model.simulate import random_params, simulate

    assert sm.UNROLL_MAX < 5
    params = random_params(5, 6, seed=7)
    data, true, spec = simulate(params, k=5, n_benchmarks=6, n_families=12, family_sizes={1: 1, 2: 1, 3: 1},
                                missing=0.1, seed=7)
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    theta = pack(true, spec) + np.random.default_rng(2).normal(0.0, 0.05, spec.n_params)
    out, traced = {}, []
    triangular = sm._triangular
    monkeypatch.setattr(sm, "_triangular", lambda *a: traced.append(1) or triangular(*a))  # counts LAPACK solves traced
    for name, limit in (("lapack", sm.UNROLL_MAX), ("unrolled", 100)):
        monkeypatch.setattr(sm, "UNROLL_MAX", limit)
        traced.clear()
        jax.clear_caches()  # the programs are traced anew under each setting
        ml = MarginalLikelihood(spec, design, "laplace", pad=False)
        with jax.enable_x64(True):
            value, grad = ml.loglike_and_score(theta)
        out[name] = (value, np.asarray(grad), np.concatenate([np.asarray(m) for m in ml.warm_modes()]))
        assert (len(traced) > 0) == (name == "lapack")  # each setting traced its own programs
    jax.clear_caches()
    (v1, g1, m1), (v2, g2, m2) = out["lapack"], out["unrolled"]
    assert np.isfinite(v1) and abs(v1 - v2) < 1e-8 * max(1.0, abs(v2))
    assert np.allclose(g1, g2, rtol=1e-7, atol=1e-7)
    assert np.allclose(m1, m2, atol=1e-8)
