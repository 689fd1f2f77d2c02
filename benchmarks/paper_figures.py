"""The paper's figures from the reference code's model (``--paper``: logit clamp ±4.5, exact floors,
clipped scores, the authors' anchor order) on ``lvf-paper``.

For K = 1..8 it fits the model as ``latentscale select lvf-paper --paper`` does and prints the reported
log-likelihood (an importance-sampling estimate at the optimum with 20,000 draws per family, seed 0),
the Gauss–Hermite value it replaces, an independent 100,000-draw importance-sampling check (seed 1),
AIC, and the paper's AIC (read from the vector paths of ``plots/aic.pdf`` in the companion code).
For K = 4 it prints B on the raw scale next to the paper's table, with standard errors (observed
information where the negative Hessian is positive definite, else the outer product of the family
scores, said so).

Usage::

    LATENTSCALE_DATA_DIR=/work/shared/data python benchmarks/paper_figures.py [--k 1..8] [--n-jobs 2]
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import pandas as pd

PAPER_AIC = [-5378.72, -5836.67, -5991.96, -6091.01, -6121.67, -6126.64, -6107.76, -6087.52]
PAPER_B_RAW = pd.DataFrame([[0.432, 0.190, 0.840, 0.656], [0.774, 0.324, 0.384, 0.445], [0.026, 0.154, -0.039, 0.010]],
                           index=["log_size", "log_tokens", "log_size:log_tokens"],
                           columns=["math", "ifeval", "hellaswag", "bbh"])


def main() -> None:
    import latentscale as ls
    from latentscale.estimation.montecarlo import importance_loglik
    from latentscale.evaluation.select import select_k
    from latentscale.fitting import PAPER_ANCHORS, PAPER_FLOORS, PAPER_SETTINGS
    from latentscale.model.design import build_design

    ap = argparse.ArgumentParser()
    ap.add_argument("--k", default="1..8")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--check-draws", type=int, default=100_000)
    a = ap.parse_args()
    lo, hi = (int(x) for x in a.k.split(".."))
    print(f"machine: {platform.node()} {platform.machine()} python {platform.python_version()}; "
          f"latentscale {ls.__version__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = ls.load_dataset("lvf-paper")
        t0 = time.perf_counter()
        sel = select_k(data, range(lo, hi + 1), anchors=list(PAPER_ANCHORS), n_jobs=a.n_jobs,
                       floors=dict(PAPER_FLOORS), **PAPER_SETTINGS)
        wall = time.perf_counter() - t0
    rows = []
    for k in range(lo, hi + 1):
        fit = sel.fits[k]
        design, _ = build_design(data, fit.spec.benchmarks, fit.spec.clip)
        check, se, _ = importance_loglik(fit.theta, fit.spec, design, n_draws=a.check_draws, seed=1)
        d = fit.diagnostics
        rows.append({"K": k, "reported": fit.llf, "reported_se": d.get("importance_se"),
                     "gauss_hermite": d.get("quadrature_log_likelihood"), "is_check": check, "is_check_se": se,
                     "reported-check": fit.llf - check, "aic": fit.aic, "paper_aic": PAPER_AIC[k - 1],
                     "aic-paper": fit.aic - PAPER_AIC[k - 1], "converged": fit.converged,
                     "grad_max": d.get("grad_max")})
    pd.set_option("display.width", 200)
    print(f"select --paper K = {lo}..{hi}: {wall:.0f} s wall ({a.n_jobs} jobs)")
    print(pd.DataFrame(rows).round(3).to_string(index=False))
    if lo <= 4 <= hi:
        fit = sel.fits[4]
        from latentscale.results.inference import coefficient_block

        kind = "observed" if fit.diagnostics.get("hessian_pd", False) else "opg"
        raw = coefficient_block(fit.params_table(kind), "B_raw")
        raw["paper"] = [PAPER_B_RAW.loc[n.rsplit(":", 1)[0], n.rsplit(":", 1)[1]] for n in raw.index]
        print(f"\nK = 4: B on the raw scale with standard errors ({kind}"
              f"{'' if kind == 'observed' else ': the negative Hessian is not positive definite'}) and the paper's:")
        print(raw[["estimate", "se", "z", "paper"]].round(3).to_string())

if __name__ == "__main__":
    main()
