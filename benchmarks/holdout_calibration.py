"""Calibration of the prediction intervals under the holdout-largest protocol.

Usage:
  python benchmarks/holdout_calibration.py simulated [--families 500] [--k 2] [--benchmarks 6] [--seed 0]
  python benchmarks/holdout_calibration.py DATASET [--k 4] [--anchors A,B,C,D]   # lvf-paper, lvf-paper-raw, sloth
  ... [--calibrate]   # widen the intervals by factors learned on the training rows (split conformal)
  python benchmarks/holdout_calibration.py simulated --model-shift 0.5 --calibrate   # a model-level effect the model lacks

``simulated`` draws a table from the model itself (1–4 models per family), holds out the largest
model of every family with three or more, refits by maximum likelihood and predicts the held-out
models (with parameter uncertainty): coverage should be nominal up to Monte Carlo error.
Prints the coverage table (as ``latentscale evaluate --protocol holdout-largest`` does) and the
wall time.
"""

from __future__ import annotations

import argparse
import time

from latentscale.evaluation.holdout import evaluate_holdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--k", type=int, default=None)
    ap.add_argument("--anchors", default=None, help="comma-separated anchors (sloth: 'MATH Lvl 5,IFEval,HellaSwag,BBH')")
    ap.add_argument("--families", type=int, default=500)
    ap.add_argument("--benchmarks", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--se", default="observed", help="covariance behind the parameter draws: observed, opg, sandwich")
    ap.add_argument("--model-shift", type=float, default=0.0,
                    help="simulated: shift each model's scores on the logit scale by a N(0, SD²) draw shared by its "
                         "benchmarks (a model-level effect the fitted model leaves out)")
    ap.add_argument("--calibrate", action="store_true",
                    help="widen the intervals by a calibration learned on the training rows alone")
    ap.add_argument("--predictions", default=None, help="save the per-score table as CSV")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.data == "simulated":
        from latentscale.model.simulate import simulate

        k = args.k or 2
        data, _, _ = simulate(k=k, n_benchmarks=args.benchmarks, n_families=args.families,
                              family_sizes={1: 0.3, 2: 0.2, 3: 0.3, 4: 0.2}, seed=args.seed, clip=(0.001, 0.999))
        if args.model_shift > 0:
            import dataclasses

            import numpy as np
            from scipy.special import expit, logit

            frame = data.frame.copy()
            y = frame[list(data.benchmarks)].to_numpy(float)
            shift = np.random.default_rng([args.seed, 7]).normal(0.0, args.model_shift, (len(frame), 1))
            frame[list(data.benchmarks)] = np.clip(expit(logit(y) + shift), 0.001, 0.999)
            data = dataclasses.replace(data, frame=frame)
    else:
        import latentscale as ls

        k = args.k or 4
        data = ls.load_dataset(args.data)
    anchors = args.anchors.split(",") if args.anchors else None
    def say(message: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {message}", flush=True)

    result = evaluate_holdout(data, k=k, anchors=anchors, predict_options={"se": args.se},
                              calibrate=args.calibrate, progress=say)
    print(result.format())
    if args.predictions:
        result.predictions.to_csv(args.predictions, index=False)
    print(f"wall time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
