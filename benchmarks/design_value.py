"""Does the design rule pick better first evaluations than chance? (issue: optimal design)

For held-out families with no scores, evaluations are revealed one at a time (each chosen
given the outcomes of those before it): by the design rule (the cell whose outcome most reduces
the expected predictive variance of the family's other scores), at random, or (real data)
the most popular benchmark first (the benchmark most often observed in the training data, on
a random model of the family). After each step the family's remaining scores are predicted by
their posterior mean at the training fit's θ̂ and scored by the mean absolute error.

    python benchmarks/design_value.py simulated --seeds 5         # K = 3, J = 12, 300 families
    python benchmarks/design_value.py sloth --folds 0 --plot docs/figures/design_sloth.png   # leave one family out

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
from latentscale.design.value import DesignProblem, FamilyDesign, score_moments

RULES = ("design", "random", "popular")


def machine() -> str:
    import os

    import jax

    return (f"{platform.machine()}, {os.cpu_count()} cores, JAX {jax.__version__} on {jax.default_backend()}, "
            f"Python {platform.python_version()}")


def held_out_curves(fit, truth: pd.DataFrame, rules, steps: int, popularity: pd.Series, seed: int,
                    n_draws: int = 1000, n_fantasies: int = 128) -> dict[str, np.ndarray]:
    """Per rule, the (steps + 1, F) MAE of every held-out family's unrevealed scores after 0..steps
    revealed evaluations, and (``rule:sd``) their mean predictive sd. ``truth``: the held-out rows
    (model index; family, size, tokens, scores)."""
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
        sd = np.full_like(mae, np.nan)  # mean predictive sd of the unrevealed scores
        for step in range(steps + 1):
            frame = _revealed_frame(truth, benchmarks, revealed)
            draws = family_draws(fit, frame, families, n_draws=n_draws, seed=seed + step)
            for i, f in enumerate(families):
                models = truth.loc[truth["family"] == f]
                mu, phi = draws[f].scores(fit, models["size"], models["tokens"])
                mu, phi = mu.reshape(mu.shape[0], -1), phi.reshape(phi.shape[0], -1)
                rest = np.setdiff1d(cells[f], revealed[f])
                m = mu[:, rest]
                mae[step, i] = np.mean(np.abs(m.mean(axis=0) - y[f][rest]))
                g1, g2 = score_moments(m, phi[:, rest])
                var = g2.mean(axis=0) - g1.mean(axis=0) ** 2
                sd[step, i] = np.mean(np.sqrt(var))
                if step == steps or rest.size <= 1:
                    continue
                revealed[f].append(_choose(rule, rest, mu, phi, rng, popularity, benchmarks, J, seed))
        out[rule] = mae
        out[f"{rule}:sd"] = sd
    return out


def _choose(rule, rest, mu, phi, rng, popularity, benchmarks, J, seed) -> int:
    if rule == "random":
        return int(rng.choice(rest))
    if rule == "popular":
        rank = np.asarray([popularity.get(benchmarks[c % J], 0) for c in rest])
        best = rest[rank == rank.max()]
        return int(rng.choice(best))
    g1, g2 = score_moments(mu[:, rest], phi[:, rest])
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
    """Per rule and number of evaluations: MAE and mean predictive sd (means over families, with
    standard errors), and the paired difference of each rule's MAE from the design rule's."""
    rows = []
    rules = [r for r in curves[0] if ":" not in r]
    for rule in rules:
        mae = np.concatenate([c[rule] for c in curves], axis=1)  # (steps + 1, all families)
        sd = np.concatenate([c[f"{rule}:sd"] for c in curves], axis=1)
        for step in range(mae.shape[0]):
            v, s = mae[step][np.isfinite(mae[step])], sd[step][np.isfinite(sd[step])]
            rows.append({"rule": rule, "evaluations": step, "mae": v.mean(), "se": v.std(ddof=1) / np.sqrt(v.size),
                         "predictive_sd": s.mean(), "families": v.size})
    table = pd.DataFrame(rows)
    for other in [r for r in rules if r != "design"]:  # paired: the same families, the same truths
        d = np.concatenate([c[other] - c["design"] for c in curves], axis=1)
        for step in range(d.shape[0]):
            v = d[step][np.isfinite(d[step])]
            at = (table["rule"] == other) & (table["evaluations"] == step)
            table.loc[at, "minus_design"] = v.mean()
            table.loc[at, "minus_design_se"] = v.std(ddof=1) / np.sqrt(v.size)
    return table


def plot(table: pd.DataFrame, path: str, title: str) -> None:
    """MAE (with ±1 SE) and mean predictive sd of the unrevealed scores against evaluations spent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for rule, part in table.groupby("rule", sort=False):
        axes[0].errorbar(part["evaluations"], part["mae"], yerr=part["se"], marker="o", capsize=3, label=rule)
        axes[1].plot(part["evaluations"], part["predictive_sd"], marker="o", label=rule)
    axes[0].set(xlabel="evaluations revealed", ylabel="MAE of the other scores", title=title)
    axes[1].set(xlabel="evaluations revealed", ylabel="mean predictive sd", title="uncertainty left")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


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
    model = LatentScalingModel(args.k, residual="residual" in args.variant, ceiling="ceiling" in args.variant,
                               hessian=None)
    start = None
    if args.folds == 0:  # leave one family out, each refit warm-started at the fit of all families
        folds = [{f} for f in eligible]
        start = model.fit(data)
        model = LatentScalingModel(args.k, residual="residual" in args.variant, ceiling="ceiling" in args.variant,
                                   hessian=None, n_starts=1)
    else:
        fold_of = dict(zip(rng.permutation(eligible), np.arange(len(eligible)) % args.folds))
        folds = [{f for f, v in fold_of.items() if v == k} for k in range(args.folds)]
    curves, unconverged = [], 0
    for k, held in enumerate(folds):
        t0 = time.perf_counter()
        train = data.subset(~frame["family"].isin(held).to_numpy())
        fit = model.fit(train, start_params=start)
        unconverged += not fit.converged
        popularity = train.frame[benchmarks].notna().sum()
        truth = frame[frame["family"].isin(held)]
        curves.append(held_out_curves(fit, truth, RULES, args.steps, popularity, k))
        print(f"fold {k + 1}/{len(folds)}: fit converged {fit.converged}, {len(held)} held-out famil"
              f"{'y' if len(held) == 1 else 'ies'}, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(f"{len(folds)} folds, {unconverged} fits not converged")
    return summarize(curves)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=("simulated", "sloth"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--folds", type=int, default=5, help="family folds; 0: leave one family out")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--dataset", default="sloth")
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--variant", default="residual+ceiling")
    ap.add_argument("--out")
    ap.add_argument("--plot", help="save the curves as a PNG")
    args = ap.parse_args(argv)
    print("machine:", machine())
    t0 = time.perf_counter()
    table = simulated(args) if args.case == "simulated" else real(args)
    with pd.option_context("display.width", 160, "display.precision", 4):
        print(table.to_string(index=False))
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.plot:
        plot(table, args.plot, "simulated (K = 3, J = 12)" if args.case == "simulated" else f"{args.dataset}, held-out families")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"machine": machine(), "case": args.case, "args": vars(args),
                       "table": table.to_dict(orient="records")}, fh, indent=1)


if __name__ == "__main__":
    main()
