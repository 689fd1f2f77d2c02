"""Compilation against run time of the likelihood's programs under XLA's two CPU fusion pipelines.

Usage:
  latentscale fit lvf-paper -k 4 -o fit.json
  python benchmarks/compile_pipelines.py fit.json [--pairs 2]

For the Laplace rule and the fit's own rule, prints the first call of ℓ and its gradient at θ̂
(compilation included) and the mean of later calls, each in a fresh process with an empty
compilation cache, alternating the default pipeline and ``xla_cpu_use_fusion_emitters=false`` (the
one :func:`latentscale.config.quick_jit` uses) set for the whole process. docs/performance.md has
the figures behind the choice of which programs compile the quick way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

FLAG = "--xla_cpu_use_fusion_emitters=false"


def measure(path: str) -> dict:
    import numpy as np

    from latentscale.config import float64_scope
    from latentscale.estimation.likelihood import MarginalLikelihood
    from latentscale.model.design import build_design
    from latentscale.results.fit_result import FitResult

    fit = FitResult.load(path)
    out = {}
    with float64_scope():
        design, _ = build_design(fit.training_data(), fit.spec.benchmarks, fit.spec.clip)
        for name, rule, calls in (("laplace", "laplace", 200), ("fit's rule", fit.quadrature, 20)):
            ml = MarginalLikelihood(fit.spec, design, rule)
            theta = np.asarray(fit.theta, float)
            t = time.perf_counter()
            ml.loglike_and_score(theta)
            first = time.perf_counter() - t
            t = time.perf_counter()
            for i in range(calls):
                ml.loglike_and_score(theta + 1e-9 * (i % 3))  # a new point each call: no cached value
            out[name] = (first, (time.perf_counter() - t) / calls)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fit")
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.fit)))
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for _ in range(args.pairs):
        for flags in ("", FLAG):
            env = {**os.environ, "XLA_FLAGS": flags, "LATENTSCALE_QUICK_COMPILE": "0",
                   "LATENTSCALE_CACHE_DIR": tempfile.mkdtemp(prefix="latentscale-bench-")}
            res = subprocess.run([sys.executable, __file__, args.fit, "--child"], env=env, capture_output=True,
                                 text=True, check=True)
            got = json.loads(res.stdout.strip().splitlines()[-1])
            label = "emitters off" if flags else "default"
            print(f"{label:>12}: " + "; ".join(f"{k} first call {v[0]:.2f} s, then {1000 * v[1]:.2f} ms per call"
                                             for k, v in got.items()), flush=True)


if __name__ == "__main__":
    main()
