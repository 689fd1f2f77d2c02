"""read_scores on a wide table (issue: 5,000 extra columns took 69 s with thousands of pandas warnings).

Writes a 30-row table with 5,000 benchmark columns (scores in [0, 1], floors given) and times
``read_scores`` on it, counting the warnings it raises. Usage::

    python benchmarks/wide_file.py [--rows 30] [--cols 5000]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    import latentscale as ls

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=30)
    ap.add_argument("--cols", type=int, default=5000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    cols = {f"bench{j}": rng.uniform(0.3, 0.9, a.rows) for j in range(a.cols)}
    df = pd.DataFrame({"model": [f"m{i}" for i in range(a.rows)], "family": [f"f{i // 3}" for i in range(a.rows)],
                       "size": np.exp(rng.uniform(0, 4, a.rows)), "tokens": np.exp(rng.uniform(-1, 1, a.rows)),
                       **cols})
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "wide.csv"
        df.to_csv(path, index=False)
        floors = {c: 0.0 for c in cols}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            data = ls.read_scores(path, floors=floors)
            seconds = time.perf_counter() - t0
    print(f"machine: {platform.node()} {platform.machine()} python {platform.python_version()}")
    print(f"read_scores {a.rows} rows x {a.cols} benchmark columns: {seconds:.2f} s, {len(caught)} warnings, "
          f"{len(data.benchmarks)} benchmarks")


if __name__ == "__main__":
    main()
