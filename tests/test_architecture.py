"""The package's architecture: no global side effects on import, no import cycle, and a parameter
block added by one declaration (names, bounds, packing and the labelled covariance follow)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import latentscale

PACKAGE = Path(latentscale.__file__).parent


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _run(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_ENABLE")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_import_changes_no_jax_setting_and_a_fit_runs_in_float64():
    """Importing latentscale (and using it) leaves the user's JAX in float32; inside, the
    likelihood is computed in float64 (a float32 sum over 40 families would differ by ~1e-4)."""
    code = """
import jax, jax.numpy as jnp, numpy as np
import latentscale
from latentscale.estimation.likelihood import MarginalLikelihood
from latentscale.model.design import build_design
from latentscale.model.params import pack
from latentscale.model.simulate import simulate
print(jax.config.jax_enable_x64)
data, truth, spec = simulate(k=1, n_benchmarks=3, n_families=40, seed=0)
design, _ = build_design(data, spec.benchmarks, spec.clip)
ml = MarginalLikelihood(spec, design, "laplace")
theta = pack({k: truth[k] for k in ("B", "loadings", "intercepts", "precision", "corr")}, spec)
a = ml.loglike(theta)
b = ml.loglike(theta * (1 + 1e-12))
print(jax.config.jax_enable_x64, jnp.zeros(1).dtype, repr(a), abs(a - b) < 1e-6, a != b)
"""
    r = _run(code)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.split("\n")[:2]
    assert first == "False"
    x64, dtype, value, close, moved = second.split()
    assert (x64, dtype) == ("False", "float32")
    # a relative change of 1e-12 in θ moves ℓ: float32 could not resolve it
    assert close == "True" and moved == "True"
    assert np.isfinite(float(value))


def _top_level_imports(path: Path, module: str) -> set[str]:
    """latentscale modules imported at module level (not inside functions)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("latentscale")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.startswith("latentscale"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    return found


def test_no_import_cycle_between_modules():
    """The module-level import graph of the package has no cycle (a package importing its own
    submodules is the one allowed direction: parent → child)."""
    modules = set(_modules())
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[name] = {m for m in _top_level_imports(path, name) if m in modules and m != name
                       and not m.startswith(name + ".")}
    # a module importing latentscale.x also runs the __init__ of every package above x
    for name, deps in graph.items():
        for d in list(deps):
            parts = d.split(".")
            deps |= {".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) in modules
                     and not name.startswith(".".join(parts[:i]))}
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_every_module_imports_on_its_own():
    """Each module imported first, in an interpreter where no other latentscale module is loaded
    (third-party libraries are loaded once, then every latentscale module is dropped between
    imports): an import that works only by import order fails here."""
    code = """
import importlib, sys, traceback
import jax, numpy, pandas, scipy, typer, matplotlib  # loaded once: the test is about latentscale
failed = []
for name in sys.argv[1:]:
    for m in [m for m in sys.modules if m == "latentscale" or m.startswith("latentscale.")]:
        del sys.modules[m]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
import jax
print(jax.config.jax_enable_x64)
print("\\n".join(failed))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_ENABLE")}
    r = subprocess.run([sys.executable, "-c", code, *_modules()], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().split("\n")
    assert lines[0] == "False", "importing a module turned on float64"
    assert [x for x in lines[1:] if x] == []


# ---- a parameter block added by one declaration ----------------------------------------------
def test_a_new_block_is_one_declaration():
    """A toy second intercept per benchmark, declared once: its names, bounds, packing and the
    labelled covariance follow from the declaration alone."""
    from latentscale.model import params as P
    from latentscale.model.covariates import CovariateScaler
    from latentscale.model.simulate import simulate
    from latentscale.model.spec import ModelSpec
    from latentscale.results.fit_result import FitResult

    block = P.ParamBlock("intercepts2", "intercept2", ("benchmark",), P.IDENTITY, (-3.0, 4.0), None,
                         "a toy second intercept")
    P.register_block(block)
    try:
        data, truth, spec0 = simulate(k=2, n_benchmarks=4, n_families=15, seed=1)
        spec = ModelSpec(spec0.benchmarks, spec0.anchors, spec0.floors,
                         blocks=(*P.CORE_BLOCKS, "intercepts2"))
        lay = P.layout(spec)
        base = P.layout(spec0)
        J = spec.J
        # counts, names and bounds
        assert lay.size == base.size + J == spec.n_params
        assert lay.names[-J:] == [f"intercept2[{b}]" for b in spec.benchmarks]
        assert lay.names[:base.size] == base.names
        np.testing.assert_array_equal(lay.lower[-J:], -3.0)
        np.testing.assert_array_equal(lay.upper[-J:], 4.0)
        # packing round trip
        values = {k: truth[k] for k in P.CORE_BLOCKS}
        values["intercepts2"] = np.arange(J, dtype=float) / 10
        theta = lay.pack(values)
        back = lay.unpack(theta)
        np.testing.assert_allclose(back["intercepts2"], values["intercepts2"])
        np.testing.assert_allclose(np.asarray(back["B"]), truth["B"])
        natural = pd.Series(np.asarray(lay.natural(theta)), index=lay.names)
        np.testing.assert_allclose(lay.from_natural(natural), theta, atol=1e-12)
        # a fit result: params, labelled covariance, parameter table
        frame = data.frame
        scaler = CovariateScaler.fit(frame["size"], frame["tokens"])
        rng = np.random.default_rng(0)
        A = rng.normal(size=(lay.size, lay.size))
        fit = FitResult.from_params(values, spec, scaler, log_likelihood=-1.0, method="aghq", n_obs=10,
                                    n_models=len(frame), n_families=15, families=tuple(f"f{i}" for i in range(15)),
                                    models=tuple(frame.index), hessian=-(A @ A.T + lay.size * np.eye(lay.size)),
                                    diagnostics={"converged": True})
        assert list(fit.params.index[-J:]) == lay.names[-J:]
        np.testing.assert_allclose(fit.params.iloc[-J:], values["intercepts2"])
        cov = fit.cov_params()
        assert list(cov.index) == list(cov.columns) == lay.names
        # the new block is the identity: its covariance is that of θ's last J coordinates
        np.testing.assert_allclose(cov.iloc[-J:, -J:].to_numpy(), fit.cov_theta()[-J:, -J:], rtol=1e-10)
        table = fit.params_table()
        rows = table.xs("intercept2", level="block")
        assert len(rows) == J and np.all(rows["se"] > 0)
        assert fit.n_params == lay.size
    finally:
        del P.BLOCKS["intercepts2"]
        P.layout.cache_clear()
