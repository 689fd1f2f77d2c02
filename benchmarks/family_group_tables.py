"""The six leave-family-group-out tables (benchmarks v1, v2, all × n = 1, 2) and a figure (SPEC §5).

    LATENTSCALE_DATA_DIR=../shared/data JAX_PLATFORMS=cpu python benchmarks/family_group_tables.py \\
        --groups ../shared/protocols/sloth_heldout_groups.json --out out/family_group --n-jobs 2

Writes into ``--out``: ``errors_<set>_n<n>.csv`` (tidy errors), ``summary.json`` (mae_pp rows of every
table with wall times), ``tables.md`` (the six tables in percentage points, for docs/evaluation.md)
and ``average_mae.png`` (average MAE of every method in every table). Tables of the same benchmark set
run back to back in one process, so their latent fits share compiled code. Each table's margins (every
method's average minus the lowest one's, with a 95 % t-interval over the held-out groups,
``FamilyGroupResult.margins``) go into ``summary.json`` and ``tables.md``.

    python benchmarks/family_group_tables.py --margins-from out/family_group

prints the margins again from a run's saved errors (and Sloth's published ones), without refitting.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

from latentscale.data import load_dataset
from latentscale.evaluation.crossval import METHODS, family_group_cv
from latentscale.results.io import atomic_write, atomic_write_text

TABLES = [("v1", 1), ("v1", 2), ("v2", 1), ("v2", 2), ("all", 1), ("all", 2)]


def markdown_table(result) -> str:
    """Our methods, then the peer's published rows (when attached); the lowest average of all rows in
    bold; methods whose fits did not converge in every fold marked with *."""
    t = result.table()
    conv = result.convergence()
    peer = result.published if result.published is not None else t.iloc[:0]
    cols = list(t.columns)
    best = min(t["average"].min(), peer["average"].min() if len(peer) else float("inf"))
    lines = ["| method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for m, row in pd.concat([t, peer]).iterrows():
        cells = [f"{v:.2f}" for v in row]
        if row["average"] == best:
            cells[-1] = f"**{cells[-1]}**"
        flag = " *" if m in conv.index and conv.loc[m, "not_converged"] > 0 else ""
        label = f"{m} (published)" if m in peer.index else m
        lines.append(f"| {label}{flag} | " + " | ".join(cells) + " |")
    for m in conv.index[conv["not_converged"] > 0]:
        lines.append(f"\n\\* {m}: not converged in {int(conv.loc[m, 'not_converged'])} of {int(conv.loc[m, 'fits'])} folds")
    return "\n".join(lines)


def print_margins(folder: Path, published: bool) -> int:
    """Rebuild each saved table's result from its errors and print its margins."""
    from latentscale.evaluation.crossval import FamilyGroupResult

    for name, n in TABLES:
        path = folder / f"errors_{name}_n{n}.csv"
        if not path.exists():
            continue
        errors = pd.read_csv(path)
        r = FamilyGroupResult(errors=errors, benchmarks=tuple(dict.fromkeys(errors["benchmark"])),
                              methods=tuple(dict.fromkeys(errors["method"])), benchmark_set=name, n_train=n)
        if published:
            r.add_published()
        print(f"{name}, n = {n}: lowest average {r.table()['average'].min():.2f} pp"
              + ("" if r.published is None else f" (published best {r.published['average'].min():.2f})"))
        print(f"  {r.margins_line()}")
        for note in r.notes:
            print(f"  note: {note}")
    return 0


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = list(next(iter(results.values())).methods)
    fig, ax = plt.subplots(figsize=(11, 4.2))
    width = 0.8 / len(results)
    for i, ((name, n), r) in enumerate(results.items()):
        avg = r.table()["average"].reindex(methods).to_numpy()
        ax.bar(np.arange(len(methods)) + (i - (len(results) - 1) / 2) * width, avg, width, label=f"{name}, n = {n}")
    ax.set_xticks(np.arange(len(methods)))
    ax.set_xticklabels(methods, rotation=35, ha="right")
    ax.set_ylabel("average MAE (percentage points)")
    ax.set_title("Leave-family-group-out: average absolute error over benchmarks (lower is better)")
    ax.legend(ncol=3, fontsize=8)
    fig.tight_layout()
    atomic_write(path, fig.savefig)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="sloth", help="registered dataset or file (default sloth)")
    ap.add_argument("--groups", default=None, help="held-out groups JSON (default: every group of the data)")
    ap.add_argument("--out", default="out/family_group", help="output folder")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--scheduler", default=None, help="Dask scheduler address")
    ap.add_argument("--methods", default=None, help="comma-separated subset of: " + ", ".join(METHODS))
    ap.add_argument("--tables", default=None, help="comma-separated subset such as v1:1,all:2 (default all six)")
    ap.add_argument("--no-published", action="store_true", help="leave out Sloth's published rows")
    ap.add_argument("--margins-from", default=None, metavar="DIR",
                    help="print the margins of the tables saved in DIR (errors_<set>_n<n>.csv) and stop")
    args = ap.parse_args(argv)
    if args.margins_from:
        return print_margins(Path(args.margins_from), not args.no_published)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables = TABLES if not args.tables else [(t.split(":")[0], int(t.split(":")[1])) for t in args.tables.split(",")]
    methods = args.methods.split(",") if args.methods else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_dataset(args.data)
    t_all = time.perf_counter()
    results, summary = {}, []
    for name, n in tables:
        t0 = time.perf_counter()
        r = family_group_cv(data, benchmarks=name, n_train=n, methods=methods, groups=args.groups,
                            n_jobs=args.n_jobs, scheduler=args.scheduler,
                            progress=lambda m: print(f"[{time.perf_counter() - t_all:6.0f} s] {m}", file=sys.stderr,
                                                     flush=True))
        if not args.no_published:
            r.add_published()
        results[(name, n)] = r
        print(r.format(), flush=True)
        r.errors.to_csv(out / f"errors_{name}_n{n}.csv.tmp", index=False)
        (out / f"errors_{name}_n{n}.csv.tmp").replace(out / f"errors_{name}_n{n}.csv")
        summary.append({"benchmarks": name, "n_train": n, "seconds": time.perf_counter() - t0,
                        "groups": len(r.folds), "test_models": int(r.errors["model"].nunique()),
                        "method_seconds": r.method_seconds, "rows": r.to_records(), "notes": r.notes,
                        "convergence": r.convergence().reset_index().to_dict(orient="records"),
                        "published": None if r.published is None else r.published["average"].to_dict(),
                        "margins": r.margins_record()})
    total = time.perf_counter() - t_all
    atomic_write_text(out / "summary.json", json.dumps({"total_seconds": total, "tables": summary}, indent=1))
    md = [f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, `{' '.join(sys.argv)}`; "
          f"total wall time {total / 60:.1f} min.", ""]
    for (name, n), r, s in zip(results, results.values(), summary):
        md += [f"### {name}, n = {n} ({s['groups']} groups, {s['test_models']} test models, {s['seconds']:.0f} s)", "",
               markdown_table(r), ""] + [f"- {note}" for note in r.notes] + [f"- {r.margins_line()}", ""]
    atomic_write_text(out / "tables.md", "\n".join(md))
    if len(results) > 0:
        plot(results, out / "average_mae.png")
    print(f"total wall time {total:.0f} s; results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
