"""The command line on a small simulated score table: output formats, saved fits, exit codes.

One fit (Laplace, one start) is shared by the tests that need one; every other test fails or
finishes before the estimation, so the file stays fast.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from latentscale import FitResult, __version__
from latentscale.cli.app import app

K, J = 1, 4  # one skill keeps the compile time (most of a first fit) low
FLOORS = {"b1": 0.0, "b2": 0.25, "b3": 0.0, "b4": 0.5}
FLOOR_ARGS = [arg for b, c in FLOORS.items() for arg in ("--floor", f"{b}={c}")]
FAST = ["--method", "laplace", "--starts", "1"]


def simulate(n_families: int = 40, k: int = K, seed: int = 0) -> pd.DataFrame:
    """Scores from the model itself: 1-3 models per family, benchmarks b1..b4, 10 % missing cells."""
    rng = np.random.default_rng(seed)
    floors = np.array(list(FLOORS.values()))
    lam = np.zeros((k, J))
    lam[:, :k] = np.diag(rng.uniform(0.8, 1.2, k))  # anchors b1..bk
    lam[:, k:] = rng.uniform(0.3, 1.0, (k, J - k))
    B = rng.normal(0.0, 0.5, (3, k))
    B[0] += 0.8
    b, phi = rng.normal(0.0, 0.5, J), rng.uniform(20.0, 60.0, J)
    rows = []
    for f in range(n_families):
        alpha = rng.normal(0.0, 0.7, k)
        for m in range(rng.integers(1, 4)):
            size, tokens = float(np.exp(rng.uniform(0, 4))), float(np.exp(rng.uniform(-1, 2)))
            ln, ld = np.log(size), np.log(tokens)
            x = (np.array([ln, ld, ln * ld]) - [2.0, 0.5, 1.0]) / [1.2, 0.9, 2.0]
            mu = floors + (1 - floors) / (1 + np.exp(-(lam.T @ (B.T @ x + alpha) + b)))
            y = rng.beta(phi * mu, phi * (1 - mu))
            y[rng.random(J) < 0.1] = np.nan
            rows.append({"model": f"m{f}-{m}", "family": f"fam{f}", "size": size, "tokens": tokens,
                         **{f"b{j + 1}": y[j] for j in range(J)}})
    return pd.DataFrame(rows)


def n_params(k: int, j: int, p: int = 3) -> int:
    return k * (k - 1) // 2 + p * k + k + k * (j - k) + 2 * j


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """(path of the CSV, its frame)."""
    df = simulate()
    path = tmp_path_factory.mktemp("cli") / "sim.csv"
    df.to_csv(path, index=False)
    return path, df


@pytest.fixture(scope="module")
def fitted(runner, sim):
    """`fit --json -o`: (the CLI result, the parsed JSON, the saved path)."""
    path, _ = sim
    out = path.parent / "fit.json"
    res = runner.invoke(app, ["fit", str(path), "-k", str(K), "--anchors", "b1", *FLOOR_ARGS, *FAST,
                              "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    return res, json.loads(res.stdout), out


def run_error(runner, args) -> str:
    """Run a command that must fail with exit code 2; return its stderr."""
    res = runner.invoke(app, args)
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert "Traceback" not in res.output
    return res.stderr


# ---- fit ---------------------------------------------------------------------------
def test_fit_json(fitted, sim):
    res, doc, _ = fitted
    _, df = sim
    assert "start 1/1" not in res.stderr  # no progress with --json
    for key in ("log_likelihood", "aic", "bic", "n_params", "n_families", "n_models", "converged", "seconds",
                "parameters", "warnings"):
        assert key in doc
    assert doc["n_params"] == n_params(K, J) == 15
    assert doc["n_families"] == df["family"].nunique() == 40
    assert doc["n_models"] == len(df)
    assert doc["k"] == K and doc["anchors"] == ["b1"] and doc["method"] == "laplace"
    ll = doc["log_likelihood"]
    assert math.isfinite(ll)
    assert doc["aic"] == pytest.approx(-2 * ll + 2 * doc["n_params"])
    assert doc["bic"] == pytest.approx(-2 * ll + math.log(40) * doc["n_params"])
    assert isinstance(doc["converged"], bool)
    assert doc["seconds"] > 0
    par = doc["parameters"]
    assert list(par["loadings"]) == ["b1"]  # skills are named by their anchors
    assert list(par["loadings"]["b1"]) == ["b1", "b2", "b3", "b4"]
    assert par["loadings"]["b1"]["b1"] > 0  # the anchor loading is positive
    assert set(par["B"]) == {"log_size", "log_tokens", "log_size:log_tokens"}
    assert all(v > 0 for v in par["precisions"].values())
    assert par["floors"] == FLOORS
    assert par["skill_corr"] == {"b1": {"b1": pytest.approx(1.0)}}
    assert doc["warnings"] == []


def test_fit_saves_and_show_reads(fitted, runner):
    _, doc, path = fitted
    assert path.is_file()
    loaded = FitResult.load(path)
    assert loaded.log_likelihood == pytest.approx(doc["log_likelihood"])
    assert loaded.n_params == doc["n_params"]

    res = runner.invoke(app, ["show", str(path)])
    assert res.exit_code == 0, res.output
    assert "log-likelihood" in res.stdout and "b1" in res.stdout
    res = runner.invoke(app, ["show", str(path), "--json"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout)
    for key in ("log_likelihood", "aic", "bic", "n_params", "n_families", "n_models"):
        assert shown[key] == pytest.approx(doc[key])
    # --residuals: the long table is FitResult.fitted()/resid() cell for cell, the check printed
    out = path.parent / "resid.csv"
    res = runner.invoke(app, ["show", str(path), "--residuals", str(out)])
    assert res.exit_code == 0, res.output
    assert "residual check:" in res.stdout
    table = pd.read_csv(out)
    assert list(table.columns) == ["model", "family", "benchmark", "score", "fitted", "resid", "pearson"]
    assert len(table) == loaded.n_models * len(loaded.spec.benchmarks)
    wide = table.pivot(index="model", columns="benchmark", values="pearson")
    expected = loaded.resid("pearson")
    np.testing.assert_allclose(wide.loc[expected.index, expected.columns].to_numpy(), expected.to_numpy(),
                               rtol=1e-9)
    assert table["pearson"].isna().equals(table["score"].isna())
    res = runner.invoke(app, ["show", str(path), "--residuals", str(path)])  # the fit itself: refused
    assert res.exit_code == 2


def test_show_reads_a_fit_without_importing_jax(fitted, tmp_path):
    """Reading a saved fit needs no JAX: `show` (and `--help`) in a fresh process never import it, and
    print what the in-process command prints."""
    import subprocess
    import sys

    _, _, path = fitted
    probe = ("import sys; from latentscale.cli.app import main; sys.argv = ['latentscale'] + sys.argv[1:]\n"
             "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
             "print('JAX-IMPORTED' if 'jax' in sys.modules else 'NO-JAX', code, file=sys.stderr)")
    env = {**__import__("os").environ, "LATENTSCALE_CACHE_DIR": str(tmp_path)}
    for args in (["show", str(path)], ["show", str(path), "--json"], ["--help"]):
        out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, env=env)
        assert out.stderr.strip().splitlines()[-1] == "NO-JAX 0", (args, out.stderr)
    shown = subprocess.run([sys.executable, "-c", probe, "show", str(path), "--json"], capture_output=True,
                           text=True, env=env)
    assert json.loads(shown.stdout)["log_likelihood"] == pytest.approx(FitResult.load(path).log_likelihood)


def test_compilation_cache_settings_reach_jax_imported_after_them(tmp_path):
    """Before JAX is imported the cache's settings go through the environment, which JAX reads when
    it is imported (the command line sets them before its command imports JAX)."""
    import subprocess
    import sys

    probe = ("import sys; from latentscale import config; assert 'jax' not in sys.modules\n"
             f"path = config.enable_compilation_cache({str(tmp_path)!r}, min_compile_secs=0.25)\n"
             "import jax\n"
             "print(path, jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs,"
             " jax.config.jax_persistent_cache_min_entry_size_bytes)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(tmp_path), str(tmp_path), "0.25", "0"]


def test_fit_readable_summary_and_progress(fitted, runner, sim):
    path, _ = sim
    res = runner.invoke(app, ["fit", str(path), "-k", str(K), "--anchors", "b1", *FLOOR_ARGS, *FAST])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("latentscale fit: sim")
    assert "AIC" in res.stdout and "Skill correlations" in res.stdout
    assert "fitting K = 1" in res.stderr and "start 1/1" in res.stderr  # progress goes to stderr
    assert "{" not in res.stdout.splitlines()[0]


def test_unexpected_error_exits_1(runner, sim, monkeypatch):
    from latentscale.fitting import LatentScalingModel

    def boom(self, *args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(LatentScalingModel, "fit", boom)
    path, _ = sim
    res = runner.invoke(app, ["fit", str(path), "-k", "1", *FLOOR_ARGS])
    assert res.exit_code == 1
    assert "error: internal error (RuntimeError): simulated failure" in res.stderr
    assert "Traceback" not in res.output


# ---- data, datasets ----------------------------------------------------------------
def test_data_json(runner, sim):
    path, df = sim
    res = runner.invoke(app, ["data", str(path), *FLOOR_ARGS, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["rows"] == len(df) and doc["families"] == 40 and doc["groups"] == 40
    assert [b["name"] for b in doc["benchmarks"]] == ["b1", "b2", "b3", "b4"]
    assert {b["name"]: b["floor"] for b in doc["benchmarks"]} == FLOORS
    assert [b["observed"] for b in doc["benchmarks"]] == df[["b1", "b2", "b3", "b4"]].notna().sum().tolist()
    assert doc["rows_missing_size"] == [] and doc["warnings"] == []
    assert doc["usable_rows"] == len(df)


def test_data_reports_warnings_once(runner, sim, tmp_path):
    _, df = sim
    df = df.copy()
    df.loc[0, "size"] = np.nan
    path = tmp_path / "nosize.parquet"
    df.to_parquet(path)
    res = runner.invoke(app, ["data", str(path), *FLOOR_ARGS, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["rows_missing_size"] == ["m0-0"]
    assert doc["usable_rows"] == len(df) - 1
    assert len(doc["warnings"]) == 1 and "m0-0" in doc["warnings"][0]
    assert "m0-0" not in res.stderr  # captured into the report, not printed again

    res = runner.invoke(app, ["data", str(path), *FLOOR_ARGS])
    assert res.exit_code == 0, res.output
    assert "b4" in res.stdout and "warnings (1)" in res.stdout
    assert res.stdout.count("no size") == 1


def test_data_column_mapping(runner, sim, tmp_path):
    _, df = sim
    path = tmp_path / "renamed.csv"
    df.rename(columns={"model": "Model", "family": "Fam", "size": "N", "tokens": "D"}).assign(
        extra=1.0).to_csv(path, index=False)
    args = ["data", str(path), "--model-col", "Model", "--family-col", "Fam", "--size-col", "N",
            "--tokens-col", "D", "--benchmarks", "b1,b2,b3", *FLOOR_ARGS[:6], "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert [b["name"] for b in json.loads(res.stdout)["benchmarks"]] == ["b1", "b2", "b3"]
    # A floor for a benchmark that is not in the data is a mistake, not silently ignored.
    res = runner.invoke(app, [*args[:-1], *FLOOR_ARGS[6:]])
    assert res.exit_code == 2 and "--floor given for 'b4'" in res.stderr


def test_datasets(runner):
    res = runner.invoke(app, ["datasets", "--json"])
    assert res.exit_code == 0, res.output
    names = [e["name"] for e in json.loads(res.stdout)]
    assert {"lvf-paper", "lvf-paper-raw", "sloth"} <= set(names)
    res = runner.invoke(app, ["datasets"])
    assert res.exit_code == 0 and "lvf-paper-raw" in res.stdout


def test_version_and_help(runner):
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"latentscale {__version__}"
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for verb in ("fit", "data", "datasets", "show"):
        assert verb in res.stdout


# ---- errors: one line on stderr, exit code 2 ------------------------------------------
def test_unknown_dataset(runner):
    err = run_error(runner, ["fit", "no-such-dataset", "-k", "1"])
    assert err.startswith("error: ") and "no-such-dataset" in err and "lvf-paper" in err


def test_missing_file(runner, tmp_path):
    missing = tmp_path / "nope.csv"
    assert "nope.csv" in run_error(runner, ["fit", str(missing), "-k", "1"])
    assert "nope.csv" in run_error(runner, ["data", str(missing)])
    assert "nope.json" in run_error(runner, ["show", str(tmp_path / "nope.json")])


@pytest.mark.parametrize("anchors, expected", [("b1,zz", "zz"), ("b1", "anchors"), ("b1,b1", "distinct")])
def test_bad_anchors(runner, sim, anchors, expected):
    path, _ = sim
    err = run_error(runner, ["fit", str(path), "-k", "2", "--anchors", anchors, *FLOOR_ARGS])
    assert expected in err


@pytest.mark.parametrize("clip", ["0.9,0.1", "abc", "0,0.5", "0.1"])
def test_bad_clip(runner, sim, clip):
    path, _ = sim
    err = run_error(runner, ["fit", str(path), "-k", "1", "--clip", clip, *FLOOR_ARGS])
    assert "--clip" in err and clip in err


def test_clip_and_no_clip(runner, sim):
    path, _ = sim
    assert "--no-clip" in run_error(runner, ["fit", str(path), "-k", "1", "--clip", "0.01,0.99", "--no-clip",
                                             *FLOOR_ARGS])


@pytest.mark.parametrize("floor", ["b1", "b1=x", "b1=1.5", "=0.2"])
def test_bad_floor(runner, sim, floor):
    path, _ = sim
    assert "--floor" in run_error(runner, ["data", str(path), "--floor", floor])


def test_missing_floor_says_how(runner, sim):
    path, _ = sim
    err = run_error(runner, ["data", str(path), "--floor", "b1=0"])
    assert "b2" in err and "--floor" in err


def test_duplicate_model_name(runner, sim, tmp_path):
    _, df = sim
    dup = pd.concat([df, df.iloc[[3]]], ignore_index=True)
    path = tmp_path / "dup.csv"
    dup.to_csv(path, index=False)
    name = df["model"].iloc[3]
    for cmd in (["data", str(path)], ["fit", str(path), "-k", "1", *FAST]):
        err = run_error(runner, [*cmd, *FLOOR_ARGS])
        assert "duplicate model names" in err and name in err


def test_column_options_need_a_file(runner):
    assert "--model-col" in run_error(runner, ["data", "lvf-paper", "--model-col", "name"])


def test_not_a_fit(runner, tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"hello": 1}))
    assert "not a latentscale fit" in run_error(runner, ["show", str(path)])
    path.write_text("{not json")
    run_error(runner, ["show", str(path)])


def test_output_is_a_folder(runner, sim, tmp_path):
    path, _ = sim
    assert "folder" in run_error(runner, ["fit", str(path), "-k", "1", *FLOOR_ARGS, "-o", str(tmp_path)])


def test_usage_errors_exit_2(runner, sim):
    path, _ = sim
    run_error(runner, ["fit", str(path), "-k", "1", "--method", "newton"])
    run_error(runner, ["fit", str(path)])  # -k is required
