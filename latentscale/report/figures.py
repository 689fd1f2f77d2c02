"""The report's matplotlib figures (Agg backend): loadings and correlation heatmaps, a coefficient plot."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def heatmap(frame: pd.DataFrame, title: str, *, symmetric: bool = True, vmax: float | None = None,
            cmap: str = "RdBu_r", fmt: str = "{:.2f}"):
    """A labelled heatmap with each cell's value written in it (diverging colours centred at 0)."""
    plt = _plt()
    values = frame.to_numpy(float)
    finite = values[np.isfinite(values)]
    vmax = vmax if vmax is not None else (float(np.max(np.abs(finite))) if finite.size else 1.0) or 1.0
    rows, cols = values.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.75 * cols + 2.0), max(2.6, 0.55 * rows + 1.4)))
    im = ax.imshow(values, cmap=cmap, vmin=-vmax if symmetric else None, vmax=vmax, aspect="auto")
    ax.set_xticks(range(cols), [str(c) for c in frame.columns], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(rows), [str(r) for r in frame.index], fontsize=8)
    for i in range(rows):
        for j in range(cols):
            v = values[i, j]
            if np.isfinite(v):
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7,
                        color="white" if abs(v) > 0.6 * vmax else "black")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def coefficient_plot(table: pd.DataFrame, level: float):
    """Raw-scale coefficients B_raw with their Wald intervals: one panel per covariate, one row per skill."""
    plt = _plt()
    pct = f"{100 * level:g}"
    sub = table.xs("B_raw", level="block")
    covariates = list(dict.fromkeys(sub.index.get_level_values("row")))
    fig, axes = plt.subplots(1, len(covariates), figsize=(4.0 * len(covariates), 0.45 * sub.index.get_level_values("column").nunique() + 1.6),
                             sharey=True, squeeze=False)
    for ax, cov in zip(axes[0], covariates):
        block = sub.xs(cov, level="row")
        y = np.arange(len(block))[::-1]
        est = block["estimate"].to_numpy(float)
        lo, hi = block[f"lower_{pct}"].to_numpy(float), block[f"upper_{pct}"].to_numpy(float)
        ax.errorbar(est, y, xerr=[est - lo, hi - est], fmt="o", color="C0", ecolor="C0", capsize=3)
        ax.axvline(0.0, color="0.5", lw=0.8, ls="--")
        ax.set_yticks(y, list(block.index))
        ax.set_title(cov.replace("log_size", "log N").replace("log_tokens", "log D").replace(":", " × "), fontsize=9)
        ax.set_xlabel("coefficient (raw log scale)")
    fig.suptitle(f"Scaling-law coefficients B_raw with {pct}% Wald intervals", fontsize=10)
    fig.tight_layout()
    return fig
