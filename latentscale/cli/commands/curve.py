"""``latentscale curve``: predicted score of every benchmark against size for one family, with bands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latentscale.cli import output
from latentscale.cli.commands.predict import LevelOpt, OutOpt, SamplesOpt, SeedOpt, check_samples, save_csv
from latentscale.cli.common import (
    BadInput, CovKind, FitArg, JsonOpt, QuietOpt, SeOpt, VerboseOpt, check_outputs, load_calibration, load_fit,
    parse_levels, reporting, talk_enabled,
)


def curve(
    fit_path: FitArg,
    family: Annotated[str, typer.Option("--family", metavar="NAME",
                                        help="Family to draw (its posterior); --new-family for one the fit has not "
                                             "seen (the prior).", show_default=False)],
    new_family: Annotated[bool, typer.Option(
        "--new-family", help="The family is not in the fit: draw it from the prior N(0, Σ).")] = False,
    family_value: Annotated[Optional[list[str]], typer.Option(
        "--family-value", metavar="COLUMN=VALUE", help="A new family's value of a family covariate of the fit "
        "(e.g. Instruct=1); repeat for several.", show_default=False)] = None,
    tokens: Annotated[Optional[float], typer.Option(
        "--tokens", metavar="T", help="Hold tokens (trillions) fixed. Default: the family's median.",
        show_default=False)] = None,
    tokens_per_param: Annotated[Optional[float], typer.Option(
        "--tokens-per-param", metavar="R", help="Scale tokens with size, R tokens per parameter (20: Chinchilla).",
        show_default=False)] = None,
    points: Annotated[int, typer.Option("--points", help="Number of sizes (log-spaced over the data; at least 2).")
                      ] = 25,
    level: Annotated[Optional[list[float]], typer.Option(
        "--level", metavar="P", help="Band level in (0, 1); repeat for several. Default 0.5 and 0.95.",
        show_default=False)] = None,
    samples: SamplesOpt = 2000,
    seed: SeedOpt = 0,
    se: SeOpt = CovKind.sandwich,
    output_path: OutOpt = None,
    plot_path: Annotated[Optional[Path], typer.Option(
        "--plot", metavar="FIG.png", help="Save the curves with their bands (png, pdf or svg).", show_default=False)
    ] = None,
    expected: Annotated[bool, typer.Option("--expected", help="Bands for the expected score, not an observed one.")
                        ] = False,
    calibration: Annotated[Optional[Path], typer.Option(
        "--calibration", metavar="CAL.json",
        help="Widen the observed-score bands by a calibration of this fit (`latentscale calibrate`; a family the "
             "fit has not seen keeps the model's own). Its levels must include every --level.",
        show_default=False)] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Scaling curves: predicted score of every benchmark against size for one family, with bands.

    Example: latentscale curve fit.json --family qwen2 --tokens-per-param 20 --plot qwen2.png
    """
    import warnings

    from latentscale.prediction import plot_scaling_curve, scaling_curve
    from latentscale.prediction.posterior import unknown_families_message

    talk = talk_enabled(as_json, quiet, verbose)
    with output.CapturedWarnings() as caught, output.Progress(enabled=talk) as progress:
        with reporting(verbose, interrupted="interrupted; nothing was saved"):
            check_samples(samples)
            if points < 2:
                raise BadInput(f"--points {points}: give at least 2 sizes")
            check_outputs([output_path, plot_path], [fit_path, calibration])
            levels = parse_levels(level, (0.5, 0.95))
            fit = load_fit(fit_path)
            cal = load_calibration(calibration, fit, levels)
            if cal is not None and expected and plot_path is not None:
                warnings.warn("--expected draws the expected-score bands, which the calibration leaves as they are "
                              "(it widens the observed-score ones)", UserWarning, stacklevel=1)
            known = set() if fit.data is None else set(fit.data["family"].astype(str))
            if fit.data is not None and family not in known and not new_family:
                raise BadInput(unknown_families_message([family], known)
                               + "; pass --new-family to draw a family the fit has not seen from the prior")
            progress(f"predicting {family} at {points} sizes")
            table = scaling_curve(fit, family, n_points=points, tokens=tokens, tokens_per_param=tokens_per_param,
                                  levels=levels, family_covariates=_family_values(family_value), n_samples=samples,
                                  seed=seed, se=se.value)
            if cal is not None:
                table = cal.apply(table)
            if output_path is not None:
                save_csv(output_path, table, progress)
            if plot_path is not None:
                plot_scaling_curve(fit, table, plot_path, expected=expected)
                progress(f"saved {plot_path}")
        for note in caught.messages():
            progress.warn(output.shorten(note))
    if as_json:
        output.print_json({"family": family, "rows": table.to_dict(orient="records"), "warnings": caught.messages()})
    elif output_path is None and plot_path is None:
        typer.echo(table[table["level"] == max(levels)][["benchmark", "size", "tokens", "mean", "lower", "upper",
                                                         "extrapolated"]].to_string(index=False))


def _family_values(items: list[str] | None) -> dict[str, float]:
    """--family-value COLUMN=VALUE items as a dict (true/false as 1/0)."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        text = value.strip().lower()
        try:
            out[name.strip()] = 1.0 if text == "true" else 0.0 if text == "false" else float(text)
        except ValueError:
            raise BadInput(f"--family-value {item!r}: give COLUMN=NUMBER (or true/false), e.g. Instruct=1") from None
        if not sep or not name.strip():
            raise BadInput(f"--family-value {item!r}: give COLUMN=NUMBER, e.g. Instruct=1")
    return out
