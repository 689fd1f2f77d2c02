"""``latentscale calibrate``: widening factors for a fit's prediction intervals, learned on its own rows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latentscale.cli import output
from latentscale.cli.commands.predict import SamplesOpt, SeedOpt, check_samples
from latentscale.cli.common import (
    BadInput, CovKind, FitArg, JsonOpt, QuietOpt, SeOpt, VerboseOpt, check_outputs, load_fit, parse_levels, reporting,
    talk_enabled,
)

LevelOpt = Annotated[Optional[list[float]], typer.Option(
    "--level", metavar="P", help="Interval level to calibrate, in (0, 1); repeat for several. Default 0.5, 0.8 and "
                                 "0.95.", show_default=False)]


def calibrate(
    fit_path: FitArg,
    output_path: Annotated[Path, typer.Option(
        "-o", "--output", metavar="CAL.json", help="Where to save the calibration (for predict --calibration).",
        show_default=False)],
    level: LevelOpt = None,
    min_models: Annotated[int, typer.Option(
        "--min-models", help="Hold out the largest model of each family with at least this many models.")] = 2,
    samples: SamplesOpt = 4000,
    seed: SeedOpt = 0,
    se: SeOpt = CovKind.sandwich,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Learn how much a fit's prediction intervals must widen to cover its families' largest models.

    Holds out the largest model of each family of the fit's rows, refits with the fit's options on the rest, predicts the held-out models and takes split conformal's quantile of how far their scores fall outside the intervals (per benchmark and level; pooled where a benchmark has too few scores; never narrower than the model's).

    Example: latentscale calibrate fit.json -o cal.json; latentscale predict fit.json --models new.csv --calibration cal.json
    """
    from latentscale.evaluation.calibration import LEVELS, calibrate_fit

    talk = talk_enabled(as_json, quiet, verbose)
    with output.CapturedWarnings() as caught, output.Progress(enabled=talk) as progress:
        with reporting(verbose, interrupted="interrupted; nothing was saved"):
            check_samples(samples)
            if min_models < 2:
                raise BadInput(f"--min-models {min_models}: give at least 2 (a family needs a model left to "
                               "predict from)")
            check_outputs([output_path], [fit_path])
            fit = load_fit(fit_path)
            cal = calibrate_fit(fit, levels=parse_levels(level, LEVELS), min_models=min_models,
                                predict_options={"n_samples": samples, "seed": seed, "se": se.value},
                                progress=progress)
            progress(f"saved {cal.save(output_path)}")
        for note in caught.messages():
            progress.warn(output.shorten(note))
    if as_json:
        output.print_json({"fit": str(fit_path), "factors": cal.factors.to_dict(orient="records"), "info": cal.info})
    else:
        typer.echo(cal.format())
