"""Integration: the paper's K = 4 fit on lvf-paper (needs LATENTSCALE_DATA_DIR)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

import latentscale as ls
from latentscale.estimation.montecarlo import importance_loglik
from latentscale.model.design import build_design

DATA_DIR = os.environ.get("LATENTSCALE_DATA_DIR")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not DATA_DIR or not Path(DATA_DIR).is_dir(),
                       reason="set LATENTSCALE_DATA_DIR to the shared data folder"),
]


@pytest.fixture(scope="module")
def paper_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loader's note on the normalized rows
        data = ls.load_dataset("lvf-paper")
    return data, ls.fit(data, k=4)


def test_converged_with_the_paper_parameter_count(paper_fit):
    _, r = paper_fit
    assert r.n_params == 78 and r.n_families == 170 and r.n_models == 286
    assert r.converged and r.diagnostics["hessian_pd"]
    assert r.diagnostics["at_bounds"] == []
    # Every start ends in the same optimum region: the Laplace values of the screened starts
    # are below the Laplace optimum reached from the best.
    assert max(r.diagnostics["start_log_likelihoods"]) <= r.diagnostics["laplace_log_likelihood"] + 1.0


def test_quadrature_agrees_with_importance_sampling(paper_fit):
    data, r = paper_fit
    design, _ = build_design(data, r.spec.benchmarks, r.spec.clip)
    value, se, _ = importance_loglik(r.theta, r.spec, design, n_draws=20_000, seed=3)
    assert abs(r.llf - value) < max(0.5, 4 * se)


def test_loadings_show_the_paper_structure(paper_fit):
    _, r = paper_fit
    lam = r.loadings  # skills × benchmarks; skills named after their anchors
    assert lam["gsm8k"].idxmax() == "math"
    assert lam["gpqa"].idxmax() == "bbh"
    assert lam["musr"].idxmax() == "bbh"
    assert lam["winogrande"].idxmax() == "hellaswag"
    assert lam["arc"].idxmax() == "hellaswag"


def test_size_effects_positive_with_sensible_errors(paper_fit):
    _, r = paper_fit
    t = r.params_table().xs("B_raw", level="block").xs("log_size", level="row")
    assert (t["estimate"] > 0).all()
    assert (t["p_value"] < 0.01).all()
    assert np.all((t["se"] > 0.02) & (t["se"] < 0.2))
