"""The allocation frontier as a figure: the optimal path in the (N, D) plane over the data, and N*, D*,
D*/N* against the budget with their intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from latentscale.errors import InputError
from latentscale.allocation.core import FLOPS_UNIT


def plot_frontier(table: pd.DataFrame, fit=None, path: str | Path | None = None, *, title: str | None = None):
    """Four panels from an :func:`~latentscale.allocation.allocate` table (one line per target):
    the optimal path in the (size, tokens) plane with iso-FLOP lines (and the fit's models as grey
    points when ``fit`` is given), then N*, D* and D*/N* against the budget with interval bands.
    Extrapolated optima are drawn as open markers. Returns the figure; saves it (atomically, then
    closes it) when ``path`` is given."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if table.empty:
        raise InputError("the allocation table is empty: nothing to plot")
    fig, axes = plt.subplots(2, 2, figsize=(11.5, 8.5))
    ax_plane, ax_n, ax_d, ax_r = axes.ravel()
    data = None if fit is None else fit.data
    if data is not None:
        ok = data["size"].notna() & data["tokens"].notna()
        ax_plane.scatter(data.loc[ok, "size"], data.loc[ok, "tokens"], s=8, color="0.7", zorder=1,
                         label="fitted models")
    feasible = table[table["feasible"].astype(bool)]
    budgets = np.unique(feasible["flops"].to_numpy(float)) if len(feasible) else np.array([])
    if len(budgets):
        sizes = [feasible["size"].to_numpy(float)] + ([data["size"].dropna().to_numpy(float)] if data is not None else [])
        tokens = [feasible["tokens"].to_numpy(float)] + ([data["tokens"].dropna().to_numpy(float)] if data is not None else [])
        n_lo, n_hi = min(a.min() for a in sizes) / 1.5, max(a.max() for a in sizes) * 1.5
        d_lo, d_hi = min(a.min() for a in tokens) / 1.5, max(a.max() for a in tokens) * 1.5
        ns = np.geomspace(n_lo, n_hi, 50)
        for C in budgets[:: max(1, len(budgets) // 5)]:
            ax_plane.plot(ns, C / (FLOPS_UNIT * ns), color="0.85", lw=0.8, ls="--", zorder=0)
        ax_plane.set_xlim(n_lo, n_hi)
        ax_plane.set_ylim(d_lo, d_hi)
    groups = list(table.groupby(["target", "kind", "family"], sort=False))
    for i, ((target, kind, family), block) in enumerate(groups):
        block = block[block["feasible"].astype(bool)].sort_values("flops")
        if block.empty:
            continue
        color = f"C{i % 10}"
        label = target + (f" ({family})" if family else "")
        ex = block["extrapolated"].astype(bool).to_numpy()
        ax_plane.plot(block["size"], block["tokens"], color=color, lw=1.5, label=label, zorder=3)
        _markers(ax_plane, block["size"], block["tokens"], ex, color)
        for ax, col in ((ax_n, "size"), (ax_d, "tokens"), (ax_r, "tokens_per_param")):
            lo, hi = block[f"{col}_lower"].to_numpy(float), block[f"{col}_upper"].to_numpy(float)
            if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
                ax.fill_between(block["flops"], lo, hi, color=color, alpha=0.18, lw=0)
            ax.plot(block["flops"], block[col], color=color, lw=1.5, label=label)
            _markers(ax, block["flops"], block[col], ex, color)
    if data is not None:
        for ax, col in ((ax_n, "size"), (ax_d, "tokens")):
            for v in (data[col].min(), data[col].max()):
                ax.axhline(v, color="0.6", lw=0.8, ls=":")
    ax_plane.set(xscale="log", yscale="log", xlabel="parameters N (billions)", ylabel="tokens D (trillions)",
                 title="optimal path (dashed: iso-FLOP lines)")
    ax_n.set(xscale="log", yscale="log", xlabel="budget C = 6ND (FLOPs)", ylabel="N* (billions)",
             title="optimal size")
    ax_d.set(xscale="log", yscale="log", xlabel="budget C = 6ND (FLOPs)", ylabel="D* (trillions)",
             title="optimal tokens")
    ax_r.set(xscale="log", yscale="log", xlabel="budget C = 6ND (FLOPs)", ylabel="D*/N* (tokens per parameter)",
             title="tokens per parameter")
    ax_plane.legend(fontsize=7, loc="best")
    pct = f"{100 * float(table['level'].iloc[0]):g}"
    fig.suptitle(title or f"Compute-optimal allocation\n(bands: {pct}% intervals; open markers: extrapolation; "
                          "dotted: the data's range)", fontsize=10)
    fig.tight_layout()
    if path is not None:
        from latentscale.results.io import atomic_write

        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
        plt.close(fig)
    return fig


def _markers(ax, x, y, extrapolated, color) -> None:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ax.scatter(x[~extrapolated], y[~extrapolated], color=color, s=14, zorder=4)
    if extrapolated.any():
        ax.scatter(x[extrapolated], y[extrapolated], facecolors="white", edgecolors=color, s=18, zorder=4)
