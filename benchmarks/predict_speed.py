"""Time predictions for many new models after a fit (issue: 1,000 models with 95 % intervals < 10 s).

Usage: python benchmarks/predict_speed.py FIT.json [--models 1000] [--repeat 2]

The new models are spread over the fit's families (posteriors) plus 10 % unseen families (prior),
with sizes and tokens drawn over the fit's data range. The first call includes compilation; the
table reports every call.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from latentscale import FitResult
from latentscale.prediction import predict


def new_models(fit: FitResult, n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = fit.data
    families = np.asarray(pd.unique(data["family"]))
    fam = rng.choice(families, n).astype(object)
    unseen = rng.random(n) < 0.1
    fam[unseen] = [f"unseen-{i % 20}" for i in np.flatnonzero(unseen)]
    lo_n, hi_n = np.log(data["size"].min()), np.log(data["size"].max())
    lo_d, hi_d = np.log(data["tokens"].min()), np.log(data["tokens"].max())
    return pd.DataFrame({"model": [f"new-{i}" for i in range(n)], "family": fam,
                         "size": np.exp(rng.uniform(lo_n, hi_n, n)), "tokens": np.exp(rng.uniform(lo_d, hi_d, n))})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fit")
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--samples", type=int, default=4000)
    args = ap.parse_args()
    fit = FitResult.load(args.fit)
    new = new_models(fit, args.models)
    print(f"fit: {args.fit} (K = {fit.spec.K}, J = {fit.spec.J}, {fit.n_families} families); "
          f"{len(new)} new models in {new['family'].nunique()} families; {args.samples} draws per model")
    for r in range(args.repeat):
        t0 = time.perf_counter()
        table = predict(fit, new, [0.95], n_samples=args.samples, seed=r)
        dt = time.perf_counter() - t0
        print(f"call {r + 1}: {dt:6.2f} s  ({len(table)} rows{', includes compilation' if r == 0 else ''})")


if __name__ == "__main__":
    main()
