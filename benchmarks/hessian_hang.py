"""Reproduce the hang of the exact Hessian on large designs (found and worked around 2026-12-06).

On this machine (2 cores, jaxlib 0.10.2, CPU) the 10,000- and 100,000-family fits of
``benchmarks/scale.py --cases synthetic`` stop making progress in the exact Hessian
(``MarginalLikelihood._exact_hessian_and_scores``, used beyond 2,000 families): the process sits
idle, every XLA worker thread waiting for work and the main thread waiting for the result of
the first chunk's forward-over-reverse program. This script evaluates that Hessian on simulated
data (K = 4, J = 12, sparse grid) at the true parameters, chunk by chunk, printing each chunk:

    python benchmarks/hessian_hang.py 5000                       # hangs at chunk 0 (3,288 scores)
    python benchmarks/hessian_hang.py 5000 --chunk-cells 1048576  # 822 scores per chunk: completes (~60 s)

Measured: chunks of about 1,600 observed scores or more hang, with 49 nodes or 1 (the Laplace
curvature the fits use), and 800 complete; so ``MarginalLikelihood`` now cuts the exact Hessian
into chunks of at most ``HESSIAN_MAX_SCORES`` = 640 scores, which this script bypasses (it calls
the compiled program on the chunks ``chunk_cells`` alone gives). Not the cause: XLA's async dispatch, XNNPACK, the fusion emitters,
parallel codegen, Eigen's thread pool, ``lax.map`` (a Python loop over direction batches hangs
too). At 2,000 families and below the Hessian is by finite differences and does not hang.
"""

from __future__ import annotations

import argparse
import time

import jax.numpy as jnp
import numpy as np


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("families", type=int)
    ap.add_argument("--chunk-cells", type=int, default=None)
    args = ap.parse_args(argv)

    from latentscale import LatentScalingModel
    from latentscale.config import float64_scope
    from latentscale.estimation import likelihood as L
    from latentscale.model.params import layout
    from latentscale.model.simulate import simulate

    data, true, _ = simulate(k=4, n_benchmarks=12, n_families=args.families, missing="real", seed=1)
    ml = LatentScalingModel(4, grid="sparse").likelihood(data)
    if args.chunk_cells:
        ml.chunk_cells = args.chunk_cells
    theta = np.asarray(layout(ml.spec).pack({k: v for k, v in true.items() if k != "alpha"}))
    with float64_scope():
        batch = L.direction_batch(theta.size)
        modes = ml.joint_modes(theta)
        th = jnp.asarray(theta)
        max_obs = max(1, ml.chunk_cells // (ml.cells_per_score * batch))
        start, t0 = 0, time.perf_counter()
        for i, (chunk, n_real) in enumerate(L.family_chunks(ml.design, max_obs, ml.pad)):
            print(f"chunk {i}: {chunk.n_obs} scores, {chunk.n_families} families ({n_real} real), "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
            alpha0 = jnp.zeros((chunk.n_families, modes.shape[1])).at[:n_real].set(modes[start:start + n_real])
            h, _ = L._hessian_and_scores(th, {**chunk.arrays(), **ml._shared}, ml._nodes, ml._log_w, ml._signs,
                                         alpha0, ml._static, chunk.n_families, batch)
            np.asarray(h)
            start += n_real
        print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
