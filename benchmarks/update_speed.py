"""Update without refitting: its speed, and how far it is from a refit on real data.

A fit of ``sloth`` (K = 3, residual + ceiling) leaves out the evaluated rows of some models of
a few families; each family's rows are then added by ``update`` (parameters kept at θ̂) and by
``update(refit=True)`` (θ re-estimated from θ̂). Printed: the update's time (the library call
and the posterior of the family, and the whole ``latentscale update`` command in a fresh
process), and the difference between the two: family posterior means in units of the posterior
sd, and the predicted mean scores of the family's held-out models.

    LATENTSCALE_DATA_DIR=../shared/data python benchmarks/update_speed.py [--families 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", type=int, default=5, help="families whose last models are held out")
    ap.add_argument("-k", type=int, default=3)
    args = ap.parse_args(argv)

    from latentscale.data import load_dataset
    from latentscale.fitting import LatentScalingModel
    from latentscale.prediction import predict
    from latentscale.prediction.posterior import family_design, quadrature_moments
    from latentscale.prediction.update import update
    from latentscale.results.fit_result import FitResult

    sys.path.insert(0, str(Path(__file__).parent))
    from design_value import machine

    print("machine:", machine())
    data = load_dataset("sloth")
    frame = data.frame[data.frame[["size", "tokens"]].notna().all(axis=1)]
    sizes = frame.groupby("family").size()
    families = list(sizes[sizes >= 3].sort_values(ascending=False).index[: args.families])
    held = [m for f in families for m in frame.index[frame["family"] == f][-1:]]  # the last model of each
    base = data.subset(frame.index.difference(held, sort=False))
    t0 = time.perf_counter()
    fit = LatentScalingModel(args.k, residual=True, ceiling=True).fit(base)
    print(f"fit without the held-out rows: {time.perf_counter() - t0:.1f} s, converged {fit.converged}")
    tmp = Path(tempfile.mkdtemp())
    fit.save(tmp / "fit.json")
    rows = frame.loc[held].rename_axis("model").reset_index()

    for f in families[:1]:  # timing: one family, after the first call compiled its shapes
        one = rows[rows["family"] == f]
        warm = update(fit, one)  # the first call compiles the posterior's programs for these shapes
        quadrature_moments(warm, family_design(warm, [f]))
        t0 = time.perf_counter()
        new = update(fit, one)
        quadrature_moments(new, family_design(new, [f]))
        print(f"update of one family ({len(one)} model, {int(one.iloc[:, 5:].notna().sum().sum())} scores) and its "
              f"posterior, in a warm process: {time.perf_counter() - t0:.3f} s")
        one.to_csv(tmp / "one.csv", index=False)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "latentscale.cli.app", "update", str(tmp / "fit.json"), "--rows",
                        str(tmp / "one.csv"), "-o", str(tmp / "fit2.json"), "-q"], check=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"}, stdout=subprocess.DEVNULL)
        print(f"`latentscale update` of that family, a fresh process (import, load, posterior, save): "
              f"{time.perf_counter() - t0:.2f} s")

    updated = update(fit, rows)
    t0 = time.perf_counter()
    refit = update(fit, rows, refit=True)
    print(f"refit from θ̂: {time.perf_counter() - t0:.1f} s, converged {refit.converged}, ℓ {fit.log_likelihood:.2f} "
          f"-> {refit.log_likelihood:.2f}")
    _, m_u, c_u = quadrature_moments(updated, family_design(updated, families))
    _, m_r, c_r = quadrature_moments(refit, family_design(refit, families))
    z = np.abs(m_u - m_r) / np.sqrt(np.diagonal(c_r, axis1=1, axis2=2))
    print(f"posterior means of the {len(families)} families' skills, |update − refit| / sd: "
          f"median {np.median(z):.3f}, max {z.max():.3f}")
    sd_ratio = np.sqrt(np.diagonal(c_u, axis1=1, axis2=2) / np.diagonal(c_r, axis1=1, axis2=2))
    print(f"posterior sd, update / refit: {sd_ratio.min():.3f} to {sd_ratio.max():.3f}")
    models = frame.loc[held, ["family", "size", "tokens"]].rename_axis("model").reset_index()
    models["model"] = models["model"] + "-again"
    p_u = predict(updated, models, levels=[0.9], parameter_uncertainty=False, n_samples=2000)
    p_r = predict(refit, models, levels=[0.9], parameter_uncertainty=False, n_samples=2000)
    d = np.abs(p_u["mean"].to_numpy() - p_r["mean"].to_numpy())
    w = (p_r["upper"] - p_r["lower"]).to_numpy()
    print(f"predicted mean scores of those models, |update − refit|: median {np.median(d):.4f}, max {d.max():.4f} "
          f"(90 % interval width: median {np.median(w):.3f})")
    print(pd.Series(families, name="families").to_string(index=False))


if __name__ == "__main__":
    main()
