"""``latentscale show``: the summary of a saved fit (no refit, nothing recomputed that the fit carries)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latentscale.cli import output
from latentscale.cli.common import CovKind, FitArg, JsonOpt, VerboseOpt, check_outputs, load_fit, reporting


def show(
    fit_path: FitArg,
    se: Annotated[CovKind, typer.Option("--se", help="Standard errors in the summary.")] = CovKind.observed,
    residuals: Annotated[Optional[Path], typer.Option(
        "--residuals", metavar="RESID.csv", help="Also save every model × benchmark's score, fitted mean (at the "
        "family's conditional modes), residual and Pearson residual (of the score as the fit saw it, clipped), and "
        "print the residual check across benchmarks.", show_default=False)] = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Print the summary of a saved fit.

    Example: latentscale show fit.json --residuals resid.csv
    """
    with reporting(verbose):
        check_outputs([residuals], [fit_path])
        result = load_fit(fit_path)
        check = None
        if residuals is not None:
            check = _save_residuals(result, residuals)
        if as_json:
            doc = result.to_dict(se=se.value)
            if check is not None:
                doc["residual_check"] = check
            output.print_json(doc)
        else:
            typer.echo(result.summary(kind=se.value).as_text(), nl=False)
            if check is not None:
                typer.echo(f"residual check: the models' Pearson residuals correlate {check['mean_correlation']:.3f} "
                           f"between benchmarks on average, {check['pairs_above_0.3']} of {check['pairs']} pairs above "
                           f"0.3 (about 0 if the model holds); saved {residuals}")


def _save_residuals(result, path: Path) -> dict:
    """Write the long table of scores, fitted means and residuals (atomically); the residual check's figures."""
    import pandas as pd

    from latentscale.results.io import atomic_write_text

    frame = result.training_data().frame
    bench = list(result.spec.benchmarks)
    pearson = result.resid("pearson")
    parts = {"score": frame[bench], "fitted": result.fitted(), "resid": result.resid(), "pearson": pearson}
    long = pd.concat({k: v.rename_axis(index="model", columns="benchmark").stack(future_stack=True)
                      for k, v in parts.items()}, axis=1).reset_index()
    long.insert(1, "family", frame["family"].reindex(long["model"]).to_numpy())
    atomic_write_text(path, long.to_csv(index=False))
    check = result.residual_check()
    return {k: v for k, v in check.items() if k != "corr"}
