"""FitResult: information criteria, parameter tables, JSON save/load, atomic writes.

The results are built from known parameters (no estimation), so these tests run in seconds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle

import numpy as np
import pandas as pd
import pytest

from latentscale import FitResult
from latentscale.model.covariates import CovariateScaler
from latentscale.model.params import pack, parameter_names
from latentscale.model.spec import ModelSpec
from latentscale.model.simulate import simulate
from latentscale.results import fit_result as fit_result_module

LLF = -1234.56789012345678


def n_free(K: int, J: int, p: int = 3) -> int:
    """SPEC §2: K(K−1)/2 + pK + K + K(J−K) + 2J."""
    return K * (K - 1) // 2 + p * K + K + K * (J - K) + 2 * J


def make_result(k: int = 2, J: int = 5, F: int = 12, seed: int = 0) -> FitResult:
    data, true, spec = simulate(k=k, n_benchmarks=J, n_families=F, family_sizes=2, missing=0.1, seed=seed)
    f = data.frame
    scaler = CovariateScaler.fit(f["size"], f["tokens"])
    n = spec.n_params
    A = np.random.default_rng(seed).normal(size=(n, n))
    return FitResult.from_params(
        {key: true[key] for key in ("B", "loadings", "intercepts", "precision", "corr")},
        spec, scaler,
        log_likelihood=LLF, method="aghq", n_obs=int(np.isfinite(data.scores()).sum()),
        n_models=data.n_models, n_families=data.n_families,
        families=tuple(data.families), models=tuple(data.models), data_name="simulated",
        options={"k": k, "anchors": list(spec.anchors), "clip": [0.001, 0.999], "points": None},
        diagnostics={  # numpy scalars and arrays, as estimators hand them back
            "converged": np.bool_(True), "hessian_pd": True, "grad_norm": np.float64(3.2e-7),
            "iterations": np.int64(41), "start_log_likelihoods": [LLF - 1.5, LLF], "at_bounds": [],
            "seconds": 1.25, "quadrature_nodes": 81, "trace": np.array([1.0, 0.5]),
        },
        hessian=-(A @ A.T) - n * np.eye(n),
    )


@pytest.fixture(scope="module")
def result() -> FitResult:
    return make_result()


@pytest.fixture()
def saved(result, tmp_path):
    path = tmp_path / "fit.json"
    result.save(path)
    return path


# ---- counts and criteria ----------------------------------------------------------------
@pytest.mark.parametrize("K,J", [(1, 4), (2, 5), (3, 6), (4, 12)])
def test_n_params_matches_parameter_names(K, J):
    bench = tuple(f"x{j}" for j in range(J))
    spec = ModelSpec(benchmarks=bench, anchors=bench[:K], floors=(0.0,) * J)
    names = parameter_names(spec)
    assert spec.n_params == len(names) == len(set(names)) == n_free(K, J)
    if (K, J) == (4, 12):
        assert spec.n_params == 78  # the paper's fit (SPEC §2)


def test_information_criteria(result):
    p = n_free(2, 5)
    assert result.n_params == p == len(result.theta) == len(parameter_names(result.spec))
    assert result.llf == LLF
    assert result.aic == pytest.approx(2 * p - 2 * LLF, rel=1e-15)
    assert result.bic == pytest.approx(p * math.log(12) - 2 * LLF, rel=1e-15)  # n = number of families
    d = result.to_dict()
    assert d["aic"] == result.aic and d["bic"] == result.bic and d["bic_n"] == 12


def test_parameter_tables(result):
    params = result.constrained
    np.testing.assert_allclose(pack(params, result.spec), result.theta, atol=1e-12)
    assert list(result.B.index) == ["log_size", "log_tokens", "log_size:log_tokens"]
    assert list(result.B.columns) == ["b1", "b2"] == list(result.loadings.index)
    np.testing.assert_allclose(result.precisions, params["precision"])
    names = [f"precision[{b}]" for b in result.spec.benchmarks]
    np.testing.assert_allclose(result.precisions, np.exp(result.theta[[result.param_names.index(n) for n in names]]))
    corr = result.skill_corr.to_numpy()
    np.testing.assert_allclose(np.diag(corr), 1.0, atol=1e-14)
    # B_raw: θ = B_rawᵀ x_raw + offset reproduces Bᵀ x on any raw covariates.
    rng = np.random.default_rng(0)
    size, tokens = np.exp(rng.uniform(-1, 5, 7)), np.exp(rng.uniform(-1, 2.5, 7))
    ln, ld = np.log(size), np.log(tokens)
    raw = np.column_stack([ln, ld, ln * ld])
    std = result.scaler.transform(size, tokens)
    B_raw = result.B_raw
    np.testing.assert_allclose(raw @ B_raw.iloc[:3].to_numpy() + B_raw.loc["offset"].to_numpy(),
                               std @ result.B.to_numpy(), atol=1e-10)


# ---- save / load ------------------------------------------------------------------------
TABLES = ("B", "B_raw", "loadings", "skill_corr")
SERIES = ("intercepts", "precisions", "floors")


def test_round_trip(result, saved):
    loaded = FitResult.load(saved)
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(result, name), check_exact=True)
    for name in SERIES:
        pd.testing.assert_series_equal(getattr(loaded, name), getattr(result, name), check_exact=True)
    pd.testing.assert_frame_equal(loaded.benchmark_table(), result.benchmark_table(), check_exact=True)
    np.testing.assert_array_equal(loaded.theta, result.theta)
    np.testing.assert_array_equal(loaded.hessian, result.hessian)
    assert loaded.llf == result.llf and loaded.aic == result.aic and loaded.bic == result.bic
    assert loaded.n_params == result.n_params
    assert loaded.spec == result.spec
    np.testing.assert_array_equal(loaded.scaler.mean, result.scaler.mean)
    np.testing.assert_array_equal(loaded.scaler.scale, result.scaler.scale)
    for attr in ("method", "n_obs", "n_models", "n_families", "families", "models", "data_name", "options"):
        assert getattr(loaded, attr) == getattr(result, attr), attr
    assert loaded.converged is True
    assert loaded.diagnostics["iterations"] == 41 and loaded.diagnostics["trace"] == [1.0, 0.5]
    assert loaded.summary().as_text() == result.summary().as_text()
    assert loaded.to_dict() == json.loads(json.dumps(result.to_dict()))


def test_saved_parameter_table_is_reused_only_when_it_is_this_versions(result, saved):
    """A fit loaded from a file written by this version carries the saved table (no recomputation);
    the table equals the computed one; a file from another version recomputes it."""
    computed = dataclasses.replace(result).params_table()
    loaded = FitResult.load(saved)
    assert ("table", "observed", 0.95) in loaded._cache
    pd.testing.assert_frame_equal(loaded.params_table(), computed, check_exact=True)
    doc = json.loads(saved.read_text())
    doc["written_by"] = "latentscale 0.0.1"
    saved.write_text(json.dumps(doc))
    assert ("table", "observed", 0.95) not in FitResult.load(saved)._cache


def test_copies_do_not_share_derived_values(result):
    """A copy with another Hessian computes its own covariance (caches are never shared)."""
    before = result.cov_theta().copy()
    other = dataclasses.replace(result, hessian=2.0 * result.hessian)
    np.testing.assert_allclose(other.cov_theta(), before / 2.0, rtol=1e-12)
    np.testing.assert_array_equal(result.cov_theta(), before)


def test_file_is_plain_json_with_schema(saved):
    text = saved.read_text(encoding="utf-8")
    doc = json.loads(text)
    assert doc["schema"] == "latentscale.fit"
    assert isinstance(doc["schema_version"], int) and doc["schema_version"] >= 1
    assert doc["log_likelihood"] == LLF
    assert doc["summary"]["aic"] == pytest.approx(2 * n_free(2, 5) - 2 * LLF)


def test_no_pickle(result, tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("dump", "dumps", "load", "loads", "Pickler", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(np, "load", forbidden)
    monkeypatch.setattr(np, "save", forbidden)
    path = tmp_path / "fit.json"
    result.save(path)
    assert FitResult.load(path).llf == LLF
    assert path.read_bytes().lstrip().startswith(b"{")


def _rewrite(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    return path


def test_wrong_schema_is_refused(saved):
    _rewrite(saved, lambda d: d.update(schema="something.else"))
    with pytest.raises(ValueError, match="not a latentscale fit"):
        FitResult.load(saved)


@pytest.mark.parametrize("version", [3, 99, 0, "1", None])
def test_wrong_schema_version_is_refused(saved, version):
    _rewrite(saved, lambda d: d.update(schema_version=version))
    with pytest.raises(ValueError, match="schema version"):
        FitResult.load(saved)


def test_missing_schema_version_is_refused(saved):
    _rewrite(saved, lambda d: d.pop("schema_version"))
    with pytest.raises(ValueError, match="schema version"):
        FitResult.load(saved)


@pytest.mark.parametrize("field", ["theta", "spec", "scaler", "log_likelihood", "n_families"])
def test_missing_field_is_refused(saved, field):
    _rewrite(saved, lambda d: d.pop(field))
    with pytest.raises(ValueError, match=field):
        FitResult.load(saved)


def test_truncated_file_is_refused(saved):
    text = saved.read_text()
    saved.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=str(saved.name)):
        FitResult.load(saved)


# ---- atomic writes ----------------------------------------------------------------------
def _leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


def test_failed_serialization_leaves_target_untouched(result, saved, monkeypatch):
    before = saved.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("serialization failed")

    monkeypatch.setattr(fit_result_module.json, "dumps", boom)
    with pytest.raises(RuntimeError, match="serialization failed"):
        result.save(saved)
    assert saved.read_bytes() == before
    assert _leftovers(saved.parent, saved.name) == []
    fresh = saved.parent / "new.json"
    with pytest.raises(RuntimeError):
        result.save(fresh)
    assert not fresh.exists()


def test_failure_while_writing_leaves_no_partial_file(result, saved, monkeypatch):
    """A write that dies half way (disk full, interrupt) must not replace the old file."""
    before = saved.read_bytes()
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()
            return False

        def write(self, text):
            self.fh.write(text[: len(text) // 2])
            self.fh.flush()
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: HalfWriter(real_fdopen(fd, *a, **k)))
    with pytest.raises(OSError, match="No space"):
        result.save(saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert _leftovers(saved.parent, saved.name) == []
    assert FitResult.load(saved).llf == LLF


def test_failed_rename_leaves_target_untouched(result, saved, monkeypatch):
    before = saved.read_bytes()

    def boom(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="rename failed"):
        result.save(saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert _leftovers(saved.parent, saved.name) == []


def test_save_overwrites_and_creates_folders(result, tmp_path):
    path = tmp_path / "a" / "b" / "fit.json"
    assert result.save(path) == path
    other = make_result(k=1, J=4, F=6, seed=1)
    other.save(path)  # replaces the previous fit
    loaded = FitResult.load(path)
    assert loaded.spec.K == 1 and loaded.n_families == 6
    assert _leftovers(path.parent, path.name) == []


def test_atomic_write_gives_the_usual_permissions(tmp_path):
    """Files are created through mkstemp (mode 0600); the final file gets 0666 less the umask."""
    import os
    import stat

    from latentscale.results.io import atomic_write_text

    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "out.txt", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
