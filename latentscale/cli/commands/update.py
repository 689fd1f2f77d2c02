"""``latentscale update``: add evaluated scores to a saved fit without refitting (or with --refit)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from latentscale.cli import output
from latentscale.cli.common import (
    FitArg, JsonOpt, QuietOpt, VerboseOpt, check_outputs, load_fit, read_table, reporting, talk_enabled,
)


def update(
    fit_path: FitArg,
    rows: Annotated[Path, typer.Option(
        "--rows", metavar="NEW_SCORES.csv",
        help="Evaluated models: model, family, size (billions), tokens (trillions) and benchmark scores. New cells of "
             "models in the fit are filled; new models (of known or new families) are added.", show_default=False)],
    output_path: Annotated[Path, typer.Option("-o", "--output", metavar="FIT2.json", help="The updated fit.",
                                              show_default=False)],
    refit: Annotated[bool, typer.Option(
        "--refit", help="Re-estimate the parameters on the merged data, starting at the fit's estimate.")] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Add evaluated scores to a fit: the updated fit's posteriors and predictions condition on them.

    Without --refit the parameters stay at the estimate (an update of the families' posteriors, exact at the
    estimate; ℓ, AIC and standard errors stay those of the estimation); --refit re-estimates them.

    Example: latentscale update fit.json --rows new_scores.csv -o fit2.json
    """
    import numpy as np

    from latentscale.prediction.posterior import family_design, quadrature_moments
    from latentscale.prediction.update import update as update_fit

    talk = talk_enabled(as_json, quiet, verbose)
    with output.CapturedWarnings() as caught, output.Progress(enabled=talk) as progress:
        with reporting(verbose, interrupted="interrupted; nothing was saved"):
            check_outputs([output_path], [fit_path, rows])
            fit = load_fit(fit_path)
            new_rows = read_table(rows, "rows table")
            progress("refitting on the merged data" if refit else "adding the rows at the fitted parameters")
            new = update_fit(fit, new_rows, refit=refit, progress=progress)
            info = new.diagnostics["update"]
            families = info["families_updated"]
            _, mean, cov = quadrature_moments(new, family_design(new, families))
            saved = new.save(output_path)
            progress(f"saved {saved}")
        for note in caught.messages():
            progress.warn(output.shorten(note))
    skills = list(new.spec.skills)
    table = [{"family": f, "skill": s, "mean": float(mean[i, k]), "sd": float(np.sqrt(cov[i, k, k]))}
             for i, f in enumerate(families) for k, s in enumerate(skills)]
    if as_json:
        output.print_json({"fit": str(output_path), "update": info, "posteriors": table,
                           "log_likelihood": new.log_likelihood, "warnings": caught.messages()})
        return
    typer.echo(f"added {info['scores_added']} scores ({info['models_added']} new models, {info['models_updated']} "
               f"updated) of {len(families)} famil{'y' if len(families) == 1 else 'ies'}; "
               + (f"refitted: ℓ = {new.log_likelihood:.3f} (was {info['log_likelihood_before']:.3f})" if refit
                  else "parameters kept at the estimate"))
    import pandas as pd

    frame = pd.DataFrame(table).pivot(index="family", columns="skill", values="mean")[skills]
    sd = pd.DataFrame(table).pivot(index="family", columns="skill", values="sd")[skills]
    typer.echo("posterior mean (sd) of the skills at the estimate:")
    typer.echo(frame.combine(sd, lambda m, s: m.map(lambda x: f"{x:.3f}") + s.map(lambda x: f" ({x:.3f})"))
               .to_string())
