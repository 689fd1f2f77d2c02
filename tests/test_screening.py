"""The large-data path of the default estimator (screening on a subset of families, its curvature
scaled to all of them, the exact AD Hessian) reaches the same optimum and standard errors as the
direct path."""

import numpy as np
import pytest

from latentscale import LatentScalingModel
from latentscale.estimation.mle import screen_subset
from latentscale.model.design import build_design
from latentscale.model.simulate import simulate


@pytest.fixture(scope="module")
def data():
    d, _, _ = simulate(k=2, n_benchmarks=4, n_families=150, family_sizes=2, seed=5)
    return d


def test_screening_subset_is_evenly_spread(data):
    model = LatentScalingModel(2)
    spec = model.spec_for(data)
    design, _ = build_design(data, spec.benchmarks, spec.clip)
    assert screen_subset(design, design.n_families) is None
    sub = screen_subset(design, 50)
    assert sub.n_families == 50
    assert sub.families[0] == design.families[0] and sub.families[-1] == design.families[-1]
    assert len(set(sub.families)) == 50


@pytest.fixture(scope="module")
def direct(data):
    return LatentScalingModel(2).fit(data)


def test_screened_fit_matches_direct_fit(data, direct):
    screened = LatentScalingModel(2, hessian=None, method_options={"screen_families": 50}).fit(data)
    assert screened.diagnostics["converged"] and direct.diagnostics["converged"]
    assert screened.log_likelihood == pytest.approx(direct.log_likelihood, abs=1e-6)
    np.testing.assert_allclose(screened.theta, direct.theta, atol=2e-4)
    assert screened.hessian is None and screened.diagnostics["hessian_kind"] is None


@pytest.mark.slow
def test_screened_fit_standard_errors(data, direct):
    """Slow: beyond ``screen_families`` the Hessian is exact (automatic differentiation), whose
    program compiles for about a minute."""
    screened = LatentScalingModel(2, method_options={"screen_families": 50}).fit(data)
    # exact (AD) Hessian on the screened path against differences of the gradient on the direct one
    se_a = screened.params_table()["se"].to_numpy()
    se_b = direct.params_table()["se"].to_numpy()
    np.testing.assert_allclose(se_a, se_b, rtol=2e-3)


def test_fit_is_the_same_on_one_or_two_evaluation_threads(data, direct):
    """The screening starts, the Laplace candidates and the Hessian's columns run on forks of the
    likelihood, each from its own fixed starting modes: the fit does not depend on the thread count."""
    from latentscale import config

    previous = config.set_evaluation_threads(1)
    try:
        one = LatentScalingModel(2).fit(data)
    finally:
        config.set_evaluation_threads(previous)
    previous = config.set_evaluation_threads(2)
    try:
        two = LatentScalingModel(2).fit(data)
    finally:
        config.set_evaluation_threads(previous)
    np.testing.assert_array_equal(two.theta, one.theta)
    np.testing.assert_array_equal(two.hessian, one.hessian)
    assert two.diagnostics["start_log_likelihoods"] == one.diagnostics["start_log_likelihoods"]
    assert two.diagnostics["iterations"] == one.diagnostics["iterations"]
