"""``latentscale predict``: predictive distributions of every benchmark score for unevaluated models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latentscale.cli import output
from latentscale.cli.common import (
    CovKind, FitArg, JsonOpt, QuietOpt, SeOpt, VerboseOpt, check_outputs, load_calibration, load_fit, parse_levels,
    read_table, reporting, talk_enabled,
)
from latentscale.results.io import atomic_write_text

LevelOpt = Annotated[Optional[list[float]], typer.Option(
    "--level", metavar="P", help="Interval level in (0, 1); repeat for several. Default 0.8 and 0.95.",
    show_default=False)]
SamplesOpt = Annotated[int, typer.Option("--samples", help="Monte Carlo draws per model (at least 100).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the draws (same seed, same numbers).")]
NoParOpt = Annotated[bool, typer.Option(
    "--no-parameter-uncertainty",
    help="Condition on the estimate instead of integrating over its asymptotic covariance.")]
OutOpt = Annotated[Optional[Path], typer.Option("-o", "--output", metavar="OUT.csv", help="Save the table as CSV.",
                                                show_default=False)]


def check_samples(samples: int) -> None:
    from latentscale.cli.common import BadInput

    if samples < 100:
        raise BadInput(f"--samples {samples}: give at least 100 draws")


def save_csv(path: Path, frame, progress) -> None:
    saved = atomic_write_text(path, frame.to_csv(index=False))
    progress(f"saved {saved}")


def predict(
    fit_path: FitArg,
    models: Annotated[Path, typer.Option(
        "--models", metavar="NEW.csv",
        help="The models to predict: columns model, family, size (billions of parameters), tokens (trillions). "
             "A family of the fit is predicted from its posterior, any other from the prior.",
        show_default=False)],
    level: LevelOpt = None,
    rows: Annotated[Optional[Path], typer.Option(
        "--rows", metavar="EVALUATED.csv",
        help="Evaluated models (model, family, size, tokens, scores) whose families' posteriors replace the fit's "
             "own rows of those families.", show_default=False)] = None,
    calibration: Annotated[Optional[Path], typer.Option(
        "--calibration", metavar="CAL.json",
        help="Widen the observed-score intervals by a calibration of this fit (`latentscale calibrate`); the "
             "model's own stay as model_lower, model_upper.", show_default=False)] = None,
    samples: SamplesOpt = 4000,
    seed: SeedOpt = 0,
    no_parameter_uncertainty: NoParOpt = False,
    se: SeOpt = CovKind.sandwich,
    output_path: OutOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Predict every benchmark score of unevaluated models: mean, median and intervals.

    One row per model, benchmark and level: model, family, benchmark, mean, median, level, lower, upper
    (interval for an observed score), expected_lower, expected_upper (for the expected score), new_family and
    extrapolated (size or tokens outside the fit's data; FLOPs for a fit on log FLOPs).

    Example: latentscale predict fit.json --models new.csv --level 0.8 --level 0.95 -o pred.csv
    """
    from latentscale.prediction import predict as predict_models

    talk = talk_enabled(as_json, quiet, verbose)
    with output.CapturedWarnings() as caught, output.Progress(enabled=talk) as progress:
        with reporting(verbose, interrupted="interrupted; nothing was saved"):
            check_samples(samples)
            check_outputs([output_path], [fit_path, models, rows, calibration])
            levels = parse_levels(level)
            fit = load_fit(fit_path)
            cal = load_calibration(calibration, fit, levels)
            new = read_table(models, "models table")
            extra = read_table(rows, "rows table") if rows is not None else None
            progress(f"predicting {len(new)} models ({samples} draws each, "
                     f"{'without' if no_parameter_uncertainty else 'with'} parameter uncertainty)")
            table = predict_models(fit, new, levels, rows=extra, n_samples=samples, seed=seed,
                                   parameter_uncertainty=not no_parameter_uncertainty, se=se.value, progress=progress)
            if cal is not None:
                table = cal.apply(table)
            if output_path is not None:
                save_csv(output_path, table, progress)
        for note in caught.messages():
            progress.warn(output.shorten(note))
    if as_json:
        output.print_json({"fit": str(fit_path), "rows": table.to_dict(orient="records"),
                           "warnings": caught.messages()})
    elif output_path is None or verbose:
        _print_predictions(table)


def _print_predictions(table) -> None:
    shown = table.copy()
    for col in ("mean", "median", "lower", "upper", "expected_lower", "expected_upper"):
        shown[col] = shown[col].map(lambda x: f"{x:.3f}")
    shown["level"] = shown["level"].map(lambda x: f"{100 * x:g}%")
    typer.echo(shown.to_string(index=False))
