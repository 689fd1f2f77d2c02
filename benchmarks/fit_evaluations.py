"""Evaluations of the likelihood per fit: how many, of which rule, how long, and the ℓ reached.

For each data set and K, one fit in this process (compilation included in the first of each shape) with the
number of evaluations of each rule (1 node: Laplace) that were not answered from the last-evaluation cache,
their seconds, the fit's iterations, ℓ and convergence. Run it on two checkouts to see what an estimator change
costs or saves and that the optimum did not move:

    LATENTSCALE_DATA_DIR=../shared/data python benchmarks/fit_evaluations.py --data lvf-paper sloth --k 1 2 3 4
    PYTHONPATH=OTHER_CHECKOUT LATENTSCALE_DATA_DIR=../shared/data python benchmarks/fit_evaluations.py ...
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
import warnings
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["lvf-paper"], help="registered data sets")
    ap.add_argument("--k", nargs="+", type=int, default=[4])
    ap.add_argument("--variant", default="plain", help="model variant, e.g. residual+slope+ceiling")
    ap.add_argument("--anchors", default=None, help="comma-separated anchors (default: the first K benchmarks)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", module="latentscale")
    sys.path.insert(0, str(Path(__file__).parent))
    from scale import machine

    import latentscale
    from latentscale.estimation import likelihood
    from latentscale.fitting import LatentScalingModel
    from latentscale.model.variants import parse_variant

    options = parse_variant(args.variant)
    anchors = None if args.anchors is None else [a.strip() for a in args.anchors.split(",")]

    counts: dict = collections.defaultdict(lambda: [0, 0.0])
    evaluate = likelihood.MarginalLikelihood._evaluate

    def counted(self, key, need_grad=True):
        fresh = self._cached(key, need_grad) is None
        t = time.perf_counter()
        out = evaluate(self, key, need_grad)
        if fresh:
            counts[self.rule.size][0] += 1
            counts[self.rule.size][1] += time.perf_counter() - t
        return out

    likelihood.MarginalLikelihood._evaluate = counted
    print("machine:", machine(), "| latentscale from", Path(latentscale.__file__).parent, "| variant", args.variant)
    print(f"{'data':10s} {'K':>2s} {'seconds':>8s} {'log-likelihood':>15s} {'conv':>5s} {'iter':>5s}  evaluations (nodes: count, seconds)")
    for data in args.data:
        for k in args.k:
            counts.clear()
            t = time.perf_counter()
            fit = LatentScalingModel(k, anchors, **options).fit(data)
            d = fit.diagnostics
            evals = ", ".join(f"{n}: {c}, {s:.2f} s" for n, (c, s) in sorted(counts.items()))
            print(f"{data:10s} {k:2d} {time.perf_counter() - t:8.2f} {fit.log_likelihood:15.6f} "
                  f"{str(d['converged']):>5s} {d['iterations']:5d}  {evals}", flush=True)


if __name__ == "__main__":
    main()
