"""Does the design rule pick better first evaluations than chance? (issue: optimal design)

For held-out families with no scores, evaluations are revealed one at a time (each chosen
given the outcomes of those before it): by the design rule (the cell whose outcome most reduces
the expected predictive variance of the family's other scores), at random, or (real data)
the most popular benchmark first (the benchmark most often observed in the training data, on
a random model of the family). After each step the family's remaining scores are predicted by
their posterior mean at the training fit's θ̂ and scored by the mean absolute error.

    python benchmarks/design_value.py simulated --seeds 5         # K = 3, J = 12, 300 families
    LATENTSCALE_DATA_DIR=../shared/data python benchmarks/design_value.py sloth --folds 5

Prints the curves (mean over families and seeds, with standard errors over families) and
writes them as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import pandas as pd

from latentscale.design.draws import family_draws
from latentscale.design.value import DesignProblem, FamilyDesign

RULES = ("design", "random", "popular")


def machine() -> str:
    import os

    import jax

    return (f"{platform.machine()}, {os.cpu_count()} cores, JAX {jax.__version__} on {jax.default_backend()}, "
            f"Python {platform.python_version()}")


def held_out_curves(fit, truth: pd.DataFrame, rules, steps: int, popularity: pd.Series, seed: int,
                    n_draws: int = 1000, n_fantasies: int = 128) -> dict[str, np.ndarray]:
    """Per rule, the (steps + 1, F) MAE of every held-out family's unrevealed scores after 0..steps
    revealed evaluations. ``truth``: the held-out rows (model index; family, size, tokens, scores)."""
    benchmarks = list(fit.spec.benchmarks)
    J = len(benchmarks)
    families = list(pd.unique(truth["family"]))
    y = {f: truth.loc[truth["family"] == f, benchmarks].to_numpy(float).ravel() for f in families}
    cells = {f: np.flatnonzero(np.isfinite(y[f])) for f in families}
    out = {}
    for rule in rules:
        rng = np.random.default_rng([seed, RULES.index(rule)])
        revealed = {f: [] for f in families}
        mae = np.full((steps + 1, len(families)), np.nan)
        for step in range(steps + 1):
            frame = _revealed_frame(truth, benchmarks, revealed)
            draws = family_draws(fit, frame, families, n_draws=n_draws, seed=seed + step)
            for i, f in enumerate(families):
                models = truth.loc[truth["family"] == f]
                mu, phi = draws[f].scores(fit, models["size"], models["tokens"])
                mu, phi = mu.reshape(mu.shape[0], -1), phi.reshape(phi.shape[0], -1)
                rest = np.setdiff1d(cells[f], revealed[f])
                mae[step, i] = np.mean(np.abs(mu[:, rest].mean(axis=0) - y[f][rest]))
                if step == steps or rest.size <= 1:
                    continue
                revealed[f].append(_choose(rule, rest, mu, phi, rng, popularity, benchmarks, J, seed))
        out[rule] = mae
    return out


def _choose(rule, rest, mu, phi, rng, popularity, benchmarks, J, seed) -> int:
    if rule == "random":
        return int(rng.choice(rest))
    if rule == "popular":
        rank = np.asarray([popularity.get(benchmarks[c % J], 0) for c in rest])
        best = rest[rank == rank.max()]
        return int(rng.choice(best))
    g1 = mu[:, rest]
    g2 = g1**2 + g1 * (1.0 - g1) / (1.0 + phi[:, rest])
    problem = DesignProblem("f", mu[:, rest], phi[:, rest], g1, g2, np.arange(rest.size), np.ones(rest.size))
    values = FamilyDesign(problem, n_fantasies=128, seed=seed).values_with(np.arange(rest.size))
    return int(rest[int(np.argmin(values))])


def _revealed_frame(truth, benchmarks, revealed) -> pd.DataFrame:
    J = len(benchmarks)
    parts = []
    for f, chosen in revealed.items():
        if not chosen:
            continue
        rows = truth.loc[truth["family"] == f].copy()
        keep = np.zeros(len(rows) * J, bool)
        keep[chosen] = True
        values = rows[benchmarks].to_numpy(float).ravel().copy()
        values[~keep] = np.nan
        rows[benchmarks] = values.reshape(len(rows), J)
        parts.append(rows[rows[benchmarks].notna().any(axis=1)])
    if not parts:
        return truth.iloc[:0]
    return pd.concat(parts)


def summarize(curves: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    rows = []
    for rule in curves[0]:
        mae = np.concatenate([c[rule] for c in curves], axis=1)  # (steps + 1, all families)
        for step in range(mae.shape[0]):
            v = mae[step][np.isfinite(mae[step])]
            rows.append({"rule": rule, "evaluations": step, "mae": v.mean(), "se": v.std(ddof=1) / np.sqrt(v.size),
                         "families": v.size})
    table = pd.DataFrame(rows)
    if "design" in curves[0]:  # paired differences: the same families, the same truths
        for other in [r for r in curves[0] if r != "design"]:
            d = np.concatenate([c[other] - c["design"] for c in curves], axis=1)
            for step in range(d.shape[0]):
                v = d[step][np.isfinite(d[step])]
                table.loc[(table["rule"] == other) & (table["evaluations"] == step), "minus_design"] = v.mean()
                table.loc[(table["rule"] == other) & (table["evaluations"] == step),
                          "minus_design_se"] = v.std(ddof=1) / np.sqrt(v.size)
    return table


def simulated(args) -> pd.DataFrame:
    from latentscale.fitting import LatentScalingModel
    from latentscale.model.simulate import simulate

    curves = []
    for s in range(args.seeds):
        t0 = time.perf_counter()
        data, _, _ = simulate(k=3, n_benchmarks=12, n_families=300, seed=s, family_sizes="real")
        frame = data.frame
        fams = pd.unique(frame["family"])
        held = set(np.random.default_rng([s, 9]).choice(fams, size=len(fams) // 5, replace=False))
        train = data.subset(~frame["family"].isin(held).to_numpy())
        fit = LatentScalingModel(3, hessian=None).fit(train)
        truth = frame[frame["family"].isin(held)]
        curves.append(held_out_curves(fit, truth, ("design", "random"), args.steps, pd.Series(dtype=float), s))
        print(f"seed {s}: fit converged {fit.converged}, {len(held)} held-out families, "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return summarize(curves)


def real(args) -> pd.DataFrame:
    from latentscale.data import load_dataset
    from latentscale.fitting import LatentScalingModel

    data = load_dataset(args.dataset)
    usable = data.frame[["size", "tokens"]].notna().all(axis=1).to_numpy()  # the fit leaves the others out
    data = data.subset(usable)
    frame = data.frame
    benchmarks = list(data.benchmarks)
    observed = frame[benchmarks].notna().groupby(frame["family"]).any().sum(axis=1)
    eligible = observed.index[observed >= 6].to_numpy()
    rng = np.random.default_rng(0)
    fold_of = dict(zip(rng.permutation(eligible), np.arange(len(eligible)) % args.folds))
    curves = []
    for k in range(args.folds):
        t0 = time.perf_counter()
        held = {f for f, v in fold_of.items() if v == k}
        train = data.subset(~frame["family"].isin(held).to_numpy())
        fit = LatentScalingModel(args.k, residual="residual" in args.variant, ceiling="ceiling" in args.variant,
                                 hessian=None).fit(train)
        popularity = train.frame[benchmarks].notna().sum()
        truth = frame[frame["family"].isin(held)]
        curves.append(held_out_curves(fit, truth, RULES, args.steps, popularity, k))
        print(f"fold {k + 1}/{args.folds}: fit converged {fit.converged}, {len(held)} held-out families, "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return summarize(curves)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=("simulated", "sloth"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--dataset", default="sloth")
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--variant", default="residual+ceiling")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    print("machine:", machine())
    t0 = time.perf_counter()
    table = simulated(args) if args.case == "simulated" else real(args)
    with pd.option_context("display.width", 160, "display.precision", 4):
        print(table.to_string(index=False))
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"machine": machine(), "case": args.case, "args": vars(args),
                       "table": table.to_dict(orient="records")}, fh, indent=1)


if __name__ == "__main__":
    main()
