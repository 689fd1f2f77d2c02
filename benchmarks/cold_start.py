"""Cold start of the command line: each figure of the speed issue, in fresh processes, with the machine line.

Figures (each a wall time of a fresh ``latentscale`` process unless said):

- ``fit lvf-paper -k 4`` with an empty compilation cache, then with the cache it left (warm);
- the compiled fit: a second identical fit in one Python process;
- ``show FIT.json``; ``predict`` of 1,000 new models with an empty cache and with a warm one;
- ``update FIT.json --rows`` of one family's new model (warm cache);
- with ``--select``: ``select lvf-paper --k 1..8 -j 2`` with an empty cache (about 1.5 min).

Each line gives the target of the issue and the ratio to it (≤ 1: met), and the ℓ of the fit.

    LATENTSCALE_DATA_DIR=../shared/data python benchmarks/cold_start.py [--select] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGETS = {"fit, empty cache": 10.0, "fit, warm cache": 3.0, "fit, compiled": 1.0, "show": 1.5,
           "predict 1,000, empty cache": 3.0, "predict 1,000, warm cache": 3.0, "update one family": 2.0,
           "select K = 1..8, empty cache": 60.0}


def run(args: list[str], cache: str) -> float:
    """Wall seconds of one ``latentscale`` process (its output discarded; a failure stops the script)."""
    env = {**os.environ, "LATENTSCALE_CACHE_DIR": cache, "PYTHONWARNINGS": "ignore"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "latentscale.cli.app", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def compiled_fit_seconds() -> tuple[float, float]:
    """(seconds, ℓ) of the second of two identical fits in this process."""
    import warnings

    from latentscale.fitting import LatentScalingModel

    warnings.filterwarnings("ignore", module="latentscale")  # the dataset's notes, printed by the command anyway
    LatentScalingModel(4).fit("lvf-paper")
    t = time.perf_counter()
    fit = LatentScalingModel(4).fit("lvf-paper")
    return time.perf_counter() - t, fit.log_likelihood


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--select", action="store_true", help="also time select --k 1..8 from an empty cache")
    ap.add_argument("--repeat", type=int, default=3, help="warm-cache timings: the median of this many runs")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from scale import machine

    print("machine:", machine())
    tmp = Path(tempfile.mkdtemp())
    cold = str(tmp / "cache")
    fit = str(tmp / "fit.json")
    rows: list[tuple[str, float]] = []

    def median(cmd, cache=cold):
        return float(np.median([run(cmd, cache) for _ in range(args.repeat)]))

    rows.append(("fit, empty cache", run(["fit", "lvf-paper", "-k", "4", "-o", fit, "-q"], cold)))
    rows.append(("fit, warm cache", median(["fit", "lvf-paper", "-k", "4", "-o", str(tmp / "fit-warm.json"), "-q"])))
    seconds, llf = compiled_fit_seconds()
    rows.append(("fit, compiled", seconds))
    rows.append(("show", median(["show", fit])))

    from latentscale import FitResult
    from predict_speed import new_models

    result = FitResult.load(fit)
    new_models(result, 1000).to_csv(tmp / "new.csv", index=False)
    predict = ["predict", fit, "--models", str(tmp / "new.csv"), "-o", str(tmp / "pred.csv"), "-q"]
    rows.append(("predict 1,000, empty cache", run(predict, str(tmp / "cache-predict"))))
    rows.append(("predict 1,000, warm cache", median(predict, str(tmp / "cache-predict"))))

    data = result.data
    family = data["family"].value_counts().index[0]
    one = data[data["family"] == family].iloc[:1].rename(index=lambda m: m + "-new").rename_axis("model")
    one.assign(size=one["size"] * 2).reset_index().to_csv(tmp / "one.csv", index=False)
    rows.append(("update one family", median(["update", fit, "--rows", str(tmp / "one.csv"), "-o",
                                              str(tmp / "fit2.json"), "-q"])))
    if args.select:
        rows.append(("select K = 1..8, empty cache", run(["select", "lvf-paper", "--k", "1..8", "-j", "2", "-q"],
                                                         str(tmp / "cache-select"))))
    print(f"ℓ of the fit: {llf:.6f} (compiled fit in-process); warm-cache figures: median of {args.repeat}")
    print(f"{'figure':32s} {'seconds':>8s} {'target':>7s} {'ratio':>6s}")
    for name, s in rows:
        print(f"{name:32s} {s:8.2f} {TARGETS[name]:7.1f} {s / TARGETS[name]:6.2f}")
    (tmp / "cold_start.json").write_text(json.dumps({"rows": rows, "log_likelihood": llf}))


if __name__ == "__main__":
    main()
