"""One self-contained HTML page about a fit: every figure embedded as a base64 PNG (and also saved as
a PNG file next to the page), inline CSS, no script, no external resource, so it opens offline."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from latentscale.errors import InputError
from latentscale.results.io import atomic_write, atomic_write_text
from latentscale.results.summary import frame_html as _table_html

#: Section ids of the page, in order (each a ``<section id=...>``).
SECTIONS = ("summary", "selection", "structure", "coefficients", "curves", "allocation")
SECTION_TITLES = {
    "summary": "Fit summary",
    "selection": "Choice of K (AIC / BIC)",
    "structure": "Loadings and skill correlations",
    "coefficients": "Scaling-law coefficients",
    "curves": "Scaling curves",
    "allocation": "Compute-optimal allocation",
}
SELECTION_COLUMNS = ("k", "aic", "bic")


@dataclass
class Report:
    """What :func:`build_report` wrote: the page and its figures (name → PNG path)."""

    html: Path
    figures: dict[str, Path] = field(default_factory=dict)
    allocation: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def load_selection(selection) -> pd.DataFrame:
    """A selection table: a :class:`~latentscale.evaluation.select.SelectionResult`, a frame, or the
    CSV that ``latentscale select -o`` writes (columns k, aic, bic at least)."""
    if selection is None:
        return None
    if hasattr(selection, "table"):
        table = selection.table
    elif isinstance(selection, pd.DataFrame):
        table = selection
    else:
        path = Path(selection)
        if not path.is_file():
            raise FileNotFoundError(2, "No such file", str(path))
        try:
            table = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise InputError(f"{path} is not a selection table CSV ({e}); write one with "
                             "`latentscale select DATA --k 1..8 -o table.csv`") from e
    missing = [c for c in SELECTION_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"the selection table lacks column(s) {', '.join(missing)} (it has {', '.join(map(str, table.columns))}); "
                         "write one with `latentscale select DATA --k 1..8 -o table.csv`")
    table = table.copy()
    for c in SELECTION_COLUMNS:
        table[c] = pd.to_numeric(table[c], errors="coerce")
    if table[list(SELECTION_COLUMNS)].isna().any().any() or not len(table):
        raise InputError("the selection table has empty or non-numeric k / aic / bic values")
    return table.sort_values("k").reset_index(drop=True)


def default_families(fit, n: int = 2) -> list[str]:
    """The ``n`` families with the most models in the fit's rows (ties broken by name)."""
    if fit.data is None:
        return []
    counts = fit.data["family"].value_counts()
    order = sorted(counts.index, key=lambda f: (-counts[f], str(f)))
    return [str(f) for f in order[:n]]


def _check_families(fit, families) -> list[str]:
    if families is None:
        families = default_families(fit)
    families = list(dict.fromkeys(str(f) for f in families))
    if families and fit.data is None:
        raise InputError("this fit carries no data, so it has no families to draw scaling curves for; pass families=[]")
    if families:
        known = set(fit.data["family"].astype(str))
        unknown = [f for f in families if f not in known]
        if unknown:
            from latentscale.prediction.posterior import unknown_families_message

            raise InputError(unknown_families_message(unknown, known) + "; the families with most models are: "
                             + ", ".join(default_families(fit, 6)))
    return families


def _selection_section(fit, sel_table, figs) -> str:
    if sel_table is None:
        return ("<p class='note'>No selection was run for this report. Run "
                "<code>latentscale select DATA --k 1..8 -o table.csv</code> and pass "
                "<code>--selection table.csv</code> to show AIC and BIC against K.</p>")
    from latentscale.evaluation.select import SelectionResult

    if "variant" not in sel_table:  # a table saved before variants were compared
        sel_table = sel_table.assign(variant="plain")
    sel = SelectionResult(table=sel_table)
    figs["aic_bic"] = _png(sel.plot())
    show_cols = [c for c in ("k", "variant", "log_likelihood", "n_params", "aic", "bic", "converged") if c in sel_table]
    several = sel_table["variant"].nunique() > 1
    where = {c: f"K = {k} ({v})" if several else f"K = {k}"
             for c, k, v in (("aic", sel.best_aic, sel.best_aic_variant), ("bic", sel.best_bic, sel.best_bic_variant))}
    return (f"<p>AIC is lowest at {where['aic']}, BIC (n = families) at {where['bic']}; this fit has "
            f"K = {fit.spec.K}.</p>" + _img("aic_bic", figs, "AIC and BIC against the number of skills K")
            + _table_html(sel_table[show_cols], floats="{:.2f}"))


def _structure_section(fit, figs) -> str:
    from latentscale.report.figures import heatmap

    figs["loadings"] = _png(heatmap(fit.loadings, "Loadings Λ (skills × benchmarks)"))
    figs["skill_corr"] = _png(heatmap(fit.skill_corr, "Skill correlations Σ", vmax=1.0))
    return ("<p>Each benchmark's loading on each skill (anchors load on their own skill only) and the "
            "correlation of the family effects between skills.</p><div class='row'>"
            + _img("loadings", figs, "Heatmap of the loadings") + _img("skill_corr", figs, "Heatmap of the skill correlations")
            + "</div>" + "<h3>Benchmarks</h3>"
            + _table_html(fit.benchmark_table().reset_index(names="benchmark"), floats="{:.3f}")
            + _residual_check(fit, figs))


#: Fewest models with scores on both benchmarks for a residual correlation to be shown.
RESID_MIN_MODELS = 10


def _residual_check(fit, figs) -> str:
    """The correlation of the models' Pearson residuals between benchmarks (a heatmap and its summary)."""
    from latentscale.report.figures import heatmap

    if fit.data is None:
        return ""
    check = fit.residual_check(RESID_MIN_MODELS)
    if not check["pairs"]:
        return ""
    figs["resid_corr"] = _png(heatmap(check["corr"], "Residual correlations across benchmarks", vmax=1.0))
    return ("<h3>Check: residuals across benchmarks</h3><p>Given its family's effects a model's scores are "
            "independent across benchmarks, so the Pearson residuals (<code>fit.resid('pearson')</code>, at the "
            "families' conditional modes) of two benchmarks should be uncorrelated across models. Here the mean "
            f"correlation between benchmarks is {check['mean_correlation']:.3f} and {check['pairs_above_0.3']} of "
            f"{check['pairs']} pairs exceed 0.3 (pairs with at least {RESID_MIN_MODELS} models); clearly positive "
            "correlations mean models deviate from their family's law as a whole, which the model does not "
            "describe and its intervals for new models may then miss.</p>"
            + _img("resid_corr", figs, "Heatmap of the residual correlations"))


def _coefficients_section(fit, level, figs, notes) -> str:
    from latentscale.report.figures import coefficient_plot

    table = _param_table(fit, level, notes)
    if table is None:
        return ("<p class='note'>Standard errors are not available for this fit "
                f"({html.escape(notes[-1])}); point estimates:</p>"
                + _table_html(fit.B_raw.reset_index(names="covariate"), floats="{:.3f}"))
    figs["coefficients"] = _png(coefficient_plot(table, level))
    cols = ["covariate", "skill", *[c for c in table.columns if c != "parameter"]]
    raw = table.xs("B_raw", level="block").reset_index().rename(columns={"row": "covariate", "column": "skill"})
    off = table.xs("offset", level="block").reset_index().rename(columns={"row": "covariate", "column": "skill"})
    coef = pd.concat([raw, off], ignore_index=True)[cols]
    return ("<p>Effects of log N (billions of parameters), log D (trillions of tokens) and their product on each "
            f"skill, on the raw log scale, with standard errors from the observed information and {100 * level:g}% "
            "Wald intervals.</p>" + _img("coefficients", figs, "Coefficients with intervals")
            + _table_html(coef, floats="{:.3f}"))


def _curves_section(fit, families, level, uncertain, n_samples, n_parameter_draws, seed, figs, say,
                    calibration=None) -> str:
    from latentscale.prediction import plot_scaling_curve, scaling_curve

    parts = []
    for i, family in enumerate(families):
        say(f"scaling curve of {family} ({i + 1}/{len(families)})")
        curve = scaling_curve(fit, family, levels=(0.5, level), n_samples=n_samples,
                              n_parameter_draws=n_parameter_draws, parameter_uncertainty=uncertain, seed=seed)
        if calibration is not None:
            curve = calibration.apply(curve)
        key = f"curve_{i + 1}"
        figs[key] = _png(plot_scaling_curve(fit, curve))
        n_models = int((fit.data["family"].astype(str) == family).sum())
        parts.append(f"<h3>{html.escape(family)} ({n_models} model{'s' if n_models != 1 else ''} in the fit)</h3>"
                     + _img(key, figs, f"Scaling curve of {family}"))
    calibrated = ""
    if calibration is not None:
        factors = calibration.factor_table()[[0.5, level]].rename(columns=lambda lv: f"factor@{100 * lv:g}%")
        calibrated = ("<p>The bands are widened by a calibration of this fit (each family's largest model held out "
                      f"and predicted from a refit: {calibration.info.get('held_out', '?')} models); each band is "
                      "stretched about its median on the logit scale by its benchmark's factor (1: the model's own), "
                      "and a wider band holds the narrower one:</p>"
                      + _table_html(factors.reset_index(), floats="{:.2f}"))
    return ("<p>Predicted observed score of every benchmark against size (tokens held at the family's median), "
            f"with 50% and {100 * level:g}% prediction bands from the family's posterior and the parameters' "
            "uncertainty; points are the family's evaluated models.</p>" + calibrated
            + ("".join(parts) if parts else "<p class='note'>No family chosen.</p>"))


def _allocation_section(fit, flops, points, level, uncertain, seed, figs):
    from latentscale.allocation import allocate, plot_frontier

    alloc = allocate(fit, flops=flops, points=points, level=level, uncertainty=uncertain, seed=seed)
    figs["allocation"] = _png(plot_frontier(alloc, fit))
    body = ("<p>For each budget C = 6·N·D FLOPs, the size N* and token count D* that maximize each skill within the "
            "data's range of sizes and tokens (the family effect does not move the optimum). "
            + (f"Bands and brackets: {100 * level:g}% intervals from parameter draws. " if uncertain else "")
            + "<em>position</em> says whether the optimum is interior or which edge of the box binds.</p>"
            + _img("allocation", figs, "Allocation frontier per skill") + _allocation_tables(alloc))
    return body, alloc


def build_report(fit, path: str | Path, *, selection=None, families: Sequence[str] | None = None,
                 flops: Sequence[float] | None = None, points: int = 12, level: float = 0.95,
                 figures_dir: str | Path | None = None, n_samples: int = 2000, n_parameter_draws: int = 100,
                 seed: int = 0, progress: Callable[[str], None] | None = None, calibration=None) -> Report:
    """Write the HTML report of ``fit`` to ``path`` and its figures as PNGs in ``figures_dir``
    (default: ``<name>_figures`` next to the page). Sections: fit summary; AIC/BIC against K when
    ``selection`` is given (a SelectionResult, frame or CSV path); heatmaps of the loadings and skill
    correlations; raw-scale coefficients with Wald intervals (table and plot); scaling curves with
    prediction bands for ``families`` (default: the two with most models); the allocation frontier of
    every skill over ``flops`` (default: ``points`` budgets over the data's range of 6·N·D).
    ``calibration``: a :class:`~latentscale.evaluation.calibration.Calibration` of this fit (or its JSON
    path) that widens the scaling curves' bands; it must have the levels 0.5 and ``level``."""
    say = progress or (lambda msg: None)
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name such as report.html")
    if not 0.0 < level < 1.0:
        raise InputError(f"level must be between 0 and 1 (exclusive), got {level}")
    figures_dir = Path(figures_dir) if figures_dir is not None else path.with_name(f"{path.stem}_figures")
    sel_table = load_selection(selection)
    families = _check_families(fit, families)
    figs: dict[str, bytes] = {}
    notes: list[str] = []
    calibration = _check_calibration(calibration, fit, level, notes)
    uncertain = _has_cov(fit)
    if not uncertain:
        notes.append("scaling-curve bands leave out parameter uncertainty (the fit has no usable covariance)")
    say("summary, selection, loadings and correlations")
    body = {"summary": _summary_html(fit), "selection": _selection_section(fit, sel_table, figs),
            "structure": _structure_section(fit, figs)}
    say("coefficients with intervals")
    body["coefficients"] = _coefficients_section(fit, level, figs, notes)
    body["curves"] = _curves_section(fit, families, level, uncertain, n_samples, n_parameter_draws, seed, figs, say,
                                     calibration)
    say("allocation frontier")
    body["allocation"], alloc = _allocation_section(fit, flops, points, level, uncertain, seed, figs)
    say(f"writing {path} and {len(figs)} figures in {figures_dir}")
    saved = {name: atomic_write(figures_dir / f"{name}.png", lambda tmp, d=data: Path(tmp).write_bytes(d))
             for name, data in figs.items()}
    atomic_write_text(path, _page(fit, body, notes))
    return Report(html=path, figures=saved, allocation=alloc, notes=notes)


# ---- pieces -----------------------------------------------------------------------------------
def _check_calibration(calibration, fit, level: float, notes: list[str]):
    """The calibration (loaded from a path), checked to have the curves' levels; a note when it was made for
    another fit."""
    if calibration is None:
        return None
    from latentscale.evaluation.calibration import for_fit

    cal, why = for_fit(calibration, fit, (0.5, level), context=f"; the scaling curves' bands are 50% and {100 * level:g}%")
    if why is not None:
        notes.append(why)
    return cal


def _has_cov(fit) -> bool:
    if fit.hessian is None:
        return False
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cov = fit.cov_theta("observed")
    return bool(np.all(np.isfinite(cov)))


def _param_table(fit, level, notes):
    if not _has_cov(fit):
        notes.append("no standard errors: the fit has no Hessian or it is not negative definite")
        return None
    return fit.params_table("observed", level)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _img(name: str, figs: dict[str, bytes], alt: str) -> str:
    data = base64.b64encode(figs[name]).decode("ascii")
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(alt)}\" "
            f"data-figure=\"{html.escape(name)}\"><figcaption>{html.escape(alt)} ({html.escape(name)}.png)"
            "</figcaption></figure>")


def _allocation_tables(alloc: pd.DataFrame) -> str:
    out = []
    for target, block in alloc.groupby("target", sort=False):
        def iv(r, col):
            v, lo, hi = r[col], r[f"{col}_lower"], r[f"{col}_upper"]
            if not np.isfinite(v):
                return "–"
            return f"{v:.3g}" + (f" [{lo:.3g}, {hi:.3g}]" if np.isfinite(lo) and np.isfinite(hi) else "")

        show = pd.DataFrame({
            "FLOPs": [f"{v:.3g}" for v in block["flops"]],
            "N* (B)": [iv(r, "size") for _, r in block.iterrows()],
            "D* (T)": [iv(r, "tokens") for _, r in block.iterrows()],
            "D*/N*": [iv(r, "tokens_per_param") for _, r in block.iterrows()],
            "skill at optimum": [iv(r, "value") for _, r in block.iterrows()],
            "position": block["position"].to_list(),
            "extrapolated": ["yes" if e is True else "" for e in block["extrapolated"]],
        })
        out.append(f"<h3>{html.escape(str(target))}</h3>" + _table_html(show))
    return "".join(out)


def _summary_html(fit) -> str:
    """The fit's own summary (``FitResult.summary().as_html()``) and when the report was made."""
    from latentscale import __version__

    stamp = f"latentscale {__version__}, {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    return fit.summary().as_html() + f"<p class='note'>report: {html.escape(stamp)}</p>"


CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#22313f;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cfd8dc;font-size:13px}
nav{background:#eceff1;padding:8px 32px;font-size:13px}nav a{margin-right:14px;color:#22313f}
main{padding:8px 32px 40px;max-width:1500px}
section{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:8px 20px 16px;margin:18px 0}
h2{font-size:18px;border-bottom:1px solid #eee;padding-bottom:6px}h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}table.kv th{text-align:left}
figure{margin:8px 0;display:inline-block;vertical-align:top}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:12px;color:#666}.note{color:#8a6d3b;background:#fcf8e3;padding:6px 10px;border-radius:4px}
.row{display:flex;flex-wrap:wrap;gap:16px}code{background:#f2f2f2;padding:1px 4px;border-radius:3px}
"""


def _page(fit, body: dict[str, str], notes: list[str]) -> str:
    title = f"latentscale report: {fit.data_name}, K = {fit.spec.K}"
    nav = "".join(f"<a href='#{s}'>{html.escape(SECTION_TITLES[s])}</a>" for s in SECTIONS)
    sections = "".join(f"<section id='{s}'><h2>{html.escape(SECTION_TITLES[s])}</h2>{body[s]}</section>"
                       for s in SECTIONS)
    note_html = ("<section id='notes'><h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
                 + "</ul></section>") if notes else ""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><header><h1>{html.escape(title)}</h1>"
        f"<p>Latent-variable scaling law (Cai, Cui, Maia Polo et al., arXiv:2512.06553); anchors "
        f"{html.escape(', '.join(fit.spec.anchors))}</p></header><nav>{nav}</nav><main>{sections}{note_html}</main>"
        "</body></html>\n"
    )
