"""Quadrature rules: the Gauss–Hermite product rule and the Smolyak sparse grid, and the one
specification (QuadratureSpec) every part of the package integrates with."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from latentscale.errors import InputError
from latentscale.estimation.quadrature import QuadratureSpec, gauss_hermite_rule, smolyak_rule, sparse_rule


def gaussian_moment(powers) -> float:
    """E[Π z_k^{a_k}] for z ~ N(0, I): Π (a_k − 1)!! for even a_k, 0 if any is odd."""
    out = 1.0
    for a in powers:
        if a % 2:
            return 0.0
        out *= float(np.prod(np.arange(a - 1, 0, -2))) if a else 1.0
    return out


def rule_moment(nodes, weights, powers) -> float:
    return float(np.sum(weights * np.prod(nodes ** np.asarray(powers), axis=1)))


@pytest.mark.parametrize("K, level", [(2, 2), (3, 3), (5, 3)])
def test_sparse_grid_is_exact_up_to_its_degree(K, level):
    """Exact for every monomial of total degree ≤ 2·level − 1, and not for some of higher degree
    (else it would be a product rule in disguise)."""
    nodes, w = smolyak_rule(K, level)
    degree = 2 * level - 1
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    for powers in itertools.product(range(degree + 1), repeat=K):
        if sum(powers) <= degree:
            assert rule_moment(nodes, w, powers) == pytest.approx(gaussian_moment(powers), abs=1e-9), powers
    high = [p for p in itertools.product(range(degree + 3), repeat=K) if sum(p) == degree + 1]
    assert any(abs(rule_moment(nodes, w, p) - gaussian_moment(p)) > 1e-6 for p in high)
    # far fewer nodes than the product rule of the same one-dimensional degree
    assert len(nodes) < (2 * level - 1) ** K


def test_sparse_rule_signs_and_the_spec():
    r = sparse_rule(5, 3)
    assert r.size == 71 and np.any(r.signs < 0)
    np.testing.assert_allclose(r.weights.sum(), 1.0)
    assert QuadratureSpec().kind(4) == "product" and QuadratureSpec().kind(5) == "sparse"
    assert QuadratureSpec(points=3).kind(6) == "product"
    assert QuadratureSpec().rule(4).size == 256 and QuadratureSpec().rule(8).size == 161
    assert QuadratureSpec.from_dict(QuadratureSpec(grid="sparse", level=2).to_dict()) == QuadratureSpec("sparse", level=2)
    for bad in (dict(grid="nope"), dict(points=0), dict(grid="sparse", points=3), dict(level=0), dict(inner_points=0)):
        with pytest.raises(InputError):
            QuadratureSpec(**bad)


def test_product_rule_moments():
    r = gauss_hermite_rule(2, 5)
    for powers in itertools.product(range(10), repeat=2):
        assert rule_moment(r.nodes, r.weights, powers) == pytest.approx(gaussian_moment(powers), abs=1e-9)


def test_sparse_and_dense_grids_agree_on_a_k5_likelihood():
    """On a K = 5 model, the adaptive sparse grid (71 nodes) and the adaptive product rule with
    4^5 = 1024 nodes give family log-likelihoods within 0.02 of each other (the Laplace rule is off
    by far more)."""
    from latentscale.estimation.likelihood import MarginalLikelihood
    from latentscale.model.design import build_design
    from latentscale.model.params import pack
    from latentscale.model.simulate import simulate

    data, true, spec = simulate(k=5, n_benchmarks=7, n_families=16, family_sizes=3, seed=4)
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    theta = pack({k: true[k] for k in spec.block_names}, spec)
    sparse = MarginalLikelihood(spec, design, QuadratureSpec()).loglikeobs(theta)
    dense = MarginalLikelihood(spec, design, QuadratureSpec(points=4)).loglikeobs(theta)
    laplace = MarginalLikelihood(spec, design, "laplace").loglikeobs(theta)
    assert np.max(np.abs(sparse - dense)) < 0.02
    assert np.max(np.abs(laplace - dense)) > 3 * np.max(np.abs(sparse - dense))
