"""Family covariates in the mean of the family effect, α_f ~ N(Γ z_f, Σ) (``family_covariates=``).

The likelihood is checked against the model's definition integrated by scipy (the family effect's
prior mean shifted by Γ z_f), the estimator against data simulated from the model (recovery of Γ,
AIC against the plain model), and the paths a family covariate travels: loading and validation,
prediction for seen and unseen families, saving, variants and the command line.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import latentscale as ls
from latentscale.data import from_frame
from latentscale.data.validate import DataError
from latentscale.errors import InputError
from latentscale.estimation.likelihood import MarginalLikelihood
from latentscale.estimation.quadrature import QuadratureSpec
from latentscale.model.design import build_design
from latentscale.model.params import layout, pack
from latentscale.model.simulate import random_params, simulate
from latentscale.model.variants import parse_variant, variant_name
from latentscale.prediction.predict import predict
from test_likelihood import Reference, standardized_covariates

GAMMA = 0.9  # the kind's effect on the one skill, in units of the family-effect SD (standardized z)


@pytest.fixture(scope="module")
def kinds():
    """K = 1, J = 4, 150 families of 3 models; each family of kind 1 with probability 0.4."""
    true = random_params(1, 4, seed=5)
    true["B"] = np.vstack([true["B"], [[GAMMA]]])
    data, true, spec = simulate(true, k=1, n_benchmarks=4, n_families=150, family_sizes=3, seed=6,
                                family_covariates=("kind",))
    return data, true, spec


@pytest.fixture(scope="module")
def kind_fit(kinds):
    data, _, _ = kinds
    return ls.LatentScalingModel(1, family_covariates=["kind"], n_starts=1).fit(data)


def test_simulated_kinds_are_family_attributes(kinds):
    data, true, spec = kinds
    assert data.attributes == ("kind",) and spec.family_covariates == ("kind",)
    per_family = data.frame.groupby("family")["kind"].agg(["min", "max"])
    assert (per_family["min"] == per_family["max"]).all()
    assert 0.25 < per_family["min"].mean() < 0.55
    assert true["B"].shape == (4, 1) and spec.covariate_names[-1] == "kind" and spec.p == 4


def test_likelihood_matches_the_shifted_prior_by_brute_force(kinds):
    """ℓ_f = log ∫ p(y_f | α) N(α; γ z̃_f, 1) dα (z̃ standardized over models), by scipy; with Γ = 0
    the plain model's value, and a visibly different one with Γ ≠ 0."""
    data, true, spec = kinds
    small = data.subset(data.frame["family"].isin(data.frame["family"].unique()[:6]).to_numpy())
    design, scaler = build_design(small, spec.benchmarks, spec.clip, family_covariates=spec.family_covariates)
    theta = pack({k: true[k] for k in spec.block_names}, spec)
    got = MarginalLikelihood(spec, design, QuadratureSpec(points=30)).loglikeobs(theta)
    frame = small.frame
    z = frame["kind"].to_numpy(float)
    ref = Reference(small, spec.replace(family_covariates=()), {**true, "B": true["B"][:3]})
    ref.X = np.column_stack([standardized_covariates(frame), (z - z.mean()) / z.std()])
    ref.B = true["B"]
    want = [ref.integral_1d(n) for n in design.families]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-8)

    plain_spec = spec.replace(family_covariates=())
    plain_design, _ = build_design(small, spec.benchmarks, spec.clip)
    plain_theta = pack({**{k: true[k] for k in spec.block_names}, "B": true["B"][:3]}, plain_spec)
    zero = theta.copy()
    zero[layout(spec).index("B[kind,b1]")] = 0.0
    plain = MarginalLikelihood(plain_spec, plain_design, QuadratureSpec(points=30)).loglikeobs(plain_theta)
    np.testing.assert_allclose(MarginalLikelihood(spec, design, QuadratureSpec(points=30)).loglikeobs(zero), plain,
                               rtol=0, atol=1e-10)
    assert np.max(np.abs(np.asarray(got) - plain)) > 1e-2


def test_fit_recovers_gamma(kinds, kind_fit):
    """Γ and the size and token effects within 4 SE of the truth; Γ far from 0 (the simulation study in
    docs/model.md has AIC pick the family covariate in every replication at a smaller Γ)."""
    _, true, _ = kinds
    fit = kind_fit
    assert fit.converged and fit.n_params == layout(fit.spec.replace(family_covariates=())).size + 1
    est, se = fit.params["B[kind,b1]"], fit.bse["B[kind,b1]"]
    assert 0 < se < 0.25 and abs(est - GAMMA) < 4 * se and est / se > 4
    for name in ("B[log_size,b1]", "B[log_tokens,b1]"):  # the size and token effects stay recovered
        i = list(fit.param_names).index(name)
        assert abs(fit.params[name] - true["B"].reshape(-1)[i]) < 4 * fit.bse[name]
    text = fit.summary().as_text()
    assert "family effects' mean depends on kind" in text and "kind:b1" in text


def test_unseen_families_are_predicted_from_their_kind(kind_fit):
    """A new family of kind 1 is predicted higher on an anchored benchmark than one of kind 0, by the
    fitted Γ through the loading; a family of the fit takes its kind from the fit's data."""
    fit = kind_fit
    new = pd.DataFrame({"model": ["x1", "x0"], "family": ["new-a", "new-b"], "size": [7.0, 7.0],
                        "tokens": [2.0, 2.0], "kind": [1, 0]})
    p = predict(fit, new, levels=(0.9,), n_parameter_draws=20, n_samples=2000, seed=1)
    mean = p.pivot(index="model", columns="benchmark", values="mean")
    gamma, lam = fit.params["B[kind,b1]"], fit.constrained["loadings"][0, 0]
    assert np.sign(mean.loc["x1", "b1"] - mean.loc["x0", "b1"]) == np.sign(gamma * lam)
    assert abs(mean.loc["x1", "b1"] - mean.loc["x0", "b1"]) > 0.02

    family = fit.data["family"].iloc[0]
    kind = fit.data["kind"].iloc[0]
    seen = pd.DataFrame({"model": ["s"], "family": [family], "size": [3.0], "tokens": [1.0]})
    given = seen.assign(kind=[kind])
    a = predict(fit, seen, levels=(0.9,), n_parameter_draws=10, n_samples=500, seed=2)
    b = predict(fit, given, levels=(0.9,), n_parameter_draws=10, n_samples=500, seed=2)
    np.testing.assert_allclose(a["mean"], b["mean"])


def test_prediction_errors_name_the_rows(kind_fit):
    fit = kind_fit
    new = pd.DataFrame({"model": ["m1"], "family": ["brand-new"], "size": [7.0], "tokens": [2.0]})
    with pytest.raises(DataError, match=r"'kind' is unknown for model\(s\) m1 of family brand-new.*give a column"):
        predict(fit, new)
    family = fit.data["family"].iloc[0]
    wrong = pd.DataFrame({"model": ["m2"], "family": [family], "size": [7.0], "tokens": [2.0],
                          "kind": [1 - fit.data["kind"].iloc[0]]})
    with pytest.raises(DataError, match=r"'kind' for model\(s\) m2 differs from their family's value"):
        predict(fit, wrong)
    bad = new.assign(kind=["maybe"])
    with pytest.raises(DataError, match="'kind' is missing or not a number .* m1|rows 0"):
        predict(fit, bad)


def test_round_trip_keeps_the_family_covariates(kind_fit, tmp_path):
    fit = kind_fit
    back = ls.FitResult.load(fit.save(tmp_path / "fit.json"))
    assert back.spec == fit.spec and back.scaler.names == fit.scaler.names
    np.testing.assert_allclose(back.params, fit.params)
    new = pd.DataFrame({"model": ["a"], "family": ["new"], "size": [2.0], "tokens": [1.0], "kind": [True]})
    np.testing.assert_allclose(predict(back, new, n_parameter_draws=5, n_samples=200)["mean"],
                               predict(fit, new, n_parameter_draws=5, n_samples=200)["mean"])


def test_allocation_uses_the_family_kind_in_the_constant_only(kind_fit):
    """The kind enters the allocation objective's constant, Γ_raw (z_f − mean z) away from the typical
    family's, and never its size and token coefficients (so never the optimum)."""
    from latentscale.allocation.core import target_coefficients

    fit = kind_fit
    kinds = fit.data.groupby("family")["kind"].first()
    theta = np.asarray(fit.theta)[None]
    typical = target_coefficients(fit, theta, "b1", "skill")
    mean_kind = fit.data["kind"].mean()
    assert fit.B_raw.loc["kind", "b1"] == pytest.approx(fit.params["B[kind,b1]"] / fit.scaler.scale[-1])
    for family in (kinds.index[kinds == 1][0], kinds.index[kinds == 0][0]):
        coef, const, weight, _ = target_coefficients(fit, theta, "b1", "skill", family)
        np.testing.assert_allclose(coef, typical[0], rtol=1e-12)
        np.testing.assert_allclose(weight, typical[2])
        shift = fit.params["B[kind,b1]"] / fit.scaler.scale[-1] * (kinds[family] - mean_kind)
        np.testing.assert_allclose(const - typical[1], shift, rtol=1e-10)
    with pytest.raises(DataError, match="unknown for model"):
        target_coefficients(fit, theta, "b1", "skill", "no-such-family")


# ---- data, variants and the command line -----------------------------------------------------
def frame_with(kind) -> pd.DataFrame:
    return pd.DataFrame({"model": ["a1", "a2", "b1"], "family": ["a", "a", "b"], "size": [1.0, 2.0, 3.0],
                         "tokens": [1.0, 1.0, 2.0], "mmlu": [0.4, 0.5, 0.6], "kind": kind})


def test_attribute_columns_are_checked_at_load():
    data = from_frame(frame_with([True, True, False]), attributes=["kind"])
    assert data.attributes == ("kind",) and list(data.frame["kind"]) == [1.0, 1.0, 0.0]
    assert "kind" in data.with_benchmarks(["mmlu"]).frame.columns
    assert list(from_frame(frame_with(["true", "TRUE", "false"]), attributes=["kind"]).frame["kind"]) == [1, 1, 0]
    with pytest.raises(DataError, match=r"differs within family 'a': a1 \(1\), a2 \(0\).*constant within a family"):
        from_frame(frame_with([1, 0, 0]), attributes=["kind"])
    with pytest.raises(DataError, match=r"'kind' is missing or not a number .* rows a2"):
        from_frame(frame_with([1, None, 0]), attributes=["kind"])
    with pytest.raises(DataError, match=r"attribute column\(s\) instruct not in the data"):
        from_frame(frame_with([1, 1, 0]), attributes=["instruct"])
    with pytest.raises(InputError, match=r"family covariate\(s\) \['kind'\] are not columns of the data"):
        ls.LatentScalingModel(1, family_covariates=["kind"]).spec_for(
            from_frame(frame_with([1, 1, 0]), benchmarks=["mmlu"]))
    with pytest.raises(InputError, match="must be distinct"):
        ls.ModelSpec(benchmarks=("b",), anchors=("b",), floors=(0.0,), family_covariates=("log_size",))


def test_sloth_carries_instruct_and_variants_name_family_terms():
    sloth = ls.load_dataset("sloth")
    assert sloth.attributes == ("Instruct",)
    assert sloth.frame.groupby("family")["Instruct"].nunique().max() == 1
    assert 20 <= sloth.frame.groupby("family")["Instruct"].first().sum() <= 35
    options = parse_variant("residual+family:Instruct")
    assert options == {"residual": True, "family_covariates": ("Instruct",)}
    assert variant_name(options) == "residual+family:Instruct"
    with pytest.raises(InputError, match="give each family covariate once"):
        parse_variant("family:a+family:a")


def test_command_line_keeps_a_family_term_column(tmp_path):
    """A file keeps the column a family:COLUMN term names (and only then); a registered dataset must
    carry it, or the error lists the attributes it has."""
    from latentscale.cli.common import BadInput, load_data, variant_columns

    data, _, _ = simulate(k=1, n_benchmarks=3, n_families=12, family_sizes=2, seed=3, family_covariates=("kind",))
    path = tmp_path / "scores.csv"
    data.frame.reset_index().to_csv(path, index=False)
    floors = [f"b{j}=0" for j in (1, 2, 3)]
    assert variant_columns("residual+family:kind", None, "family:kind+family:x") == ("kind", "x")
    kept = load_data(str(path), floors, "b1,b2,b3", variant_columns("family:kind"))
    assert kept.attributes == ("kind",) and kept.benchmarks == ("b1", "b2", "b3")
    np.testing.assert_array_equal(kept.frame["kind"], data.frame["kind"])
    assert load_data(str(path), floors, "b1,b2,b3").attributes == ()
    with pytest.raises(BadInput, match="has no family attribute 'Kind'.*Instruct"):
        load_data("sloth", None, None, ("Kind",))


def test_curves_of_a_new_family_take_its_kind(kind_fit):
    from latentscale.cli.commands.curve import _family_values
    from latentscale.cli.common import BadInput
    from latentscale.prediction.curves import scaling_curve

    fit = kind_fit
    opts = dict(sizes=[1.0, 10.0], tokens=1.0, levels=(0.9,), n_parameter_draws=5, n_samples=200)
    one = scaling_curve(fit, "brand-new", family_covariates={"kind": 1}, **opts)
    zero = scaling_curve(fit, "brand-new", family_covariates={"kind": 0}, **opts)
    assert one["new_family"].all() and len(one) == len(zero) == 2 * fit.spec.J
    assert not np.allclose(one["mean"], zero["mean"])
    with pytest.raises(DataError, match="'kind' is unknown"):
        scaling_curve(fit, "brand-new", **opts)
    assert _family_values(["kind=1", "other=false"]) == {"kind": 1.0, "other": 0.0}
    with pytest.raises(BadInput, match="COLUMN=NUMBER"):
        _family_values(["kind"])
