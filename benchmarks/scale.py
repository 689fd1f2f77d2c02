"""Scale and speed suite: wall time and peak memory of fits, predictions and the paper's estimator.

Every case runs in a fresh Python process (so its peak resident memory is its own) and prints
one JSON line; the parent prints a table and, with ``--out``, saves the rows as JSON. Cases:

- ``lvf-k``: ``lvf-paper`` with K = 1..8 (anchors: the first K benchmarks). Each K is fitted
  twice in its process: ``first_s`` includes JAX compilation (persistent cache as found),
  ``fit_s`` is the second, identical fit (after compilation).
- ``synthetic``: data simulated from the model, J = 12, K = 4, family sizes and missingness like
  the real data (``simulate(missing="real")``), with 1,000 / 10,000 / 100,000 families; one fit
  each, compilation included (``fit_s``), simulation excluded.
- ``predict``: 100,000 new models (90 % in the fit's families, 10 % in unseen ones) with
  95 % intervals (default draws) after a ``lvf-paper`` K = 4 fit; ``first_s``: the one call,
  compilation included.
- ``psga``: the paper's estimator (one restart of projected stochastic gradient ascent, learning
  rate 0.05, 10,000 draws per step as in the paper) for increasing numbers of steps, against the
  default estimator, both scored by the same quadrature log-likelihood.

Usage::

    python benchmarks/scale.py --cases lvf-k synthetic predict psga --out scale.json
    python benchmarks/scale.py --cases synthetic --families 1000 10000 --grid sparse

``LATENTSCALE_DATA_DIR`` must name the data folder (or the registry downloads it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB on Linux


def case_lvf(k: int, grid: str) -> dict:
    from latentscale import LatentScalingModel
    from latentscale.fitting import as_score_data

    data = as_score_data("lvf-paper")
    model = LatentScalingModel(k, grid=grid)
    t = time.perf_counter()
    model.fit(data)
    first = time.perf_counter() - t
    t = time.perf_counter()
    r = model.fit(data)
    second = time.perf_counter() - t
    return {"case": f"lvf-paper K={k}", "first_s": first, "fit_s": second, "log_likelihood": r.log_likelihood,
            "n_params": r.n_params, "aic": r.aic, "nodes": r.diagnostics["quadrature_nodes"],
            "converged": r.diagnostics["converged"]}


def case_synthetic(n_families: int, grid: str) -> dict:
    from latentscale import LatentScalingModel
    from latentscale.model.simulate import simulate

    data, _, _ = simulate(k=4, n_benchmarks=12, n_families=n_families, missing="real", seed=1)
    t = time.perf_counter()
    r = LatentScalingModel(4, grid=grid).fit(data, progress=lambda m: print(m, file=sys.stderr, flush=True))
    return {"case": f"synthetic F={n_families}", "fit_s": time.perf_counter() - t, "log_likelihood": r.log_likelihood,
            "n_obs": r.n_obs, "n_models": r.n_models, "nodes": r.diagnostics["quadrature_nodes"],
            "converged": r.diagnostics["converged"], "iterations": r.diagnostics["iterations"]}


def case_predict(n_models: int) -> dict:
    import numpy as np
    import pandas as pd

    from latentscale import LatentScalingModel
    from latentscale.prediction import predict

    fit = LatentScalingModel(4).fit("lvf-paper")
    rng = np.random.default_rng(0)
    data = fit.data
    families = np.asarray(pd.unique(data["family"])).astype(object)
    fam = rng.choice(families, n_models)
    unseen = rng.random(n_models) < 0.1
    fam[unseen] = [f"unseen-{i % 1000}" for i in np.flatnonzero(unseen)]
    size = np.exp(rng.uniform(np.log(data["size"].min()), np.log(data["size"].max()), n_models))
    tokens = np.exp(rng.uniform(np.log(data["tokens"].min()), np.log(data["tokens"].max()), n_models))
    new = pd.DataFrame({"model": [f"new-{i}" for i in range(n_models)], "family": fam, "size": size,
                        "tokens": tokens})
    t = time.perf_counter()
    out = predict(fit, new, levels=(0.95,))
    return {"case": f"predict {n_models} models", "first_s": time.perf_counter() - t, "rows": len(out)}


def case_psga(steps: int, draws: int) -> dict:
    from latentscale import LatentScalingModel
    from latentscale.fitting import as_score_data

    data = as_score_data("lvf-paper")
    if steps == 0:  # the default estimator, for reference
        model = LatentScalingModel(4)
        model.fit(data)
        t = time.perf_counter()
        r = model.fit(data)
        return {"case": "default estimator", "fit_s": time.perf_counter() - t, "log_likelihood": r.log_likelihood}
    opts = {"steps": steps, "draws": draws, "learning_rates": (0.05,), "schedules": ("constant",), "seeds": 1}
    t = time.perf_counter()
    r = LatentScalingModel(4, method="psga", method_options=opts).fit(data)
    return {"case": f"psga {steps} steps × {draws} draws", "fit_s": time.perf_counter() - t,
            "log_likelihood": r.log_likelihood}


CASES = {"lvf-k": case_lvf, "synthetic": case_synthetic, "predict": case_predict, "psga": case_psga}


def run_child(args: list[str]) -> dict:
    """Run one case in a fresh interpreter; its last stdout line is the JSON row."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"case": " ".join(args), "error": proc.stderr.strip().splitlines()[-1:] or ["failed"], "wall_s": wall}
    row = json.loads(lines[-1])
    row["wall_s"] = wall
    return row


def machine() -> str:
    import jax

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GB RAM, "
            f"JAX {jax.__version__} on {jax.default_backend()}, Python {platform.python_version()}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--k", nargs="+", type=int, default=list(range(1, 9)), help="K for lvf-k (default 1..8)")
    ap.add_argument("--families", nargs="+", type=int, default=[1000, 10000, 100000])
    ap.add_argument("--grid", default="auto", choices=["auto", "product", "sparse"], help="quadrature grid of the fits")
    ap.add_argument("--models", type=int, default=100000, help="new models for predict")
    ap.add_argument("--psga-steps", nargs="+", type=int, default=[250, 1000, 4000])
    ap.add_argument("--psga-draws", type=int, default=10000)
    ap.add_argument("--out", default=None, help="save rows and machine description as JSON")
    ap.add_argument("--child", nargs="+", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        warnings.simplefilter("ignore")
        name, *rest = a.child
        fn = CASES[name]
        row = fn(*[int(x) if x.lstrip("-").isdigit() else x for x in rest])
        row["peak_gb"] = _peak_gb()
        print(json.dumps(row), flush=True)
        return

    jobs = []
    if "lvf-k" in a.cases:
        jobs += [["lvf-k", str(k), a.grid] for k in a.k]
    if "synthetic" in a.cases:
        jobs += [["synthetic", str(f), a.grid] for f in a.families]
    if "predict" in a.cases:
        jobs.append(["predict", str(a.models)])
    if "psga" in a.cases:
        jobs += [["psga", "0", "0"]] + [["psga", str(s), str(a.psga_draws)] for s in a.psga_steps]
    desc = machine()
    print(f"machine: {desc}", flush=True)
    rows = []
    for job in jobs:
        print(f"running {' '.join(job)} ...", file=sys.stderr, flush=True)
        row = run_child(job)
        rows.append(row)
        print(json.dumps(row), flush=True)
    _print_table(rows)
    if a.out:
        tmp = a.out + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"machine": desc, "rows": rows}, fh, indent=1)
        os.replace(tmp, a.out)


def _print_table(rows: list[dict]) -> None:
    cols = ["case", "first_s", "fit_s", "wall_s", "peak_gb", "log_likelihood", "nodes", "n_obs"]
    print("\n" + " | ".join(cols))
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.2f}" if isinstance(v, float) else str(v))
        print(" | ".join(cells) + ("  ERROR " + str(r["error"]) if "error" in r else ""))


if __name__ == "__main__":
    main()
