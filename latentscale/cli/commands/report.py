"""``latentscale report``: one self-contained HTML page about a fit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latentscale.cli import output
from latentscale.cli.commands.allocate import FlopsOpt, LevelOpt, PointsOpt, check_level, parse_flops
from latentscale.cli.common import (
    BadInput, FitArg, JsonOpt, QuietOpt, VerboseOpt, check_outputs, load_fit, reporting, talk_enabled,
)


def report(
    fit_path: FitArg,
    output_path: Annotated[Path, typer.Option(
        "-o", "--output", metavar="REPORT.html", help="The HTML page to write; figures go to <name>_figures/ "
        "next to it as PNG files.")] = Path("report.html"),
    selection: Annotated[Optional[Path], typer.Option(
        "--selection", metavar="TABLE.csv", help="Selection table from `latentscale select ... -o TABLE.csv`: "
        "adds AIC and BIC against K.", show_default=False)] = None,
    family: Annotated[Optional[list[str]], typer.Option(
        "--family", help="Family to draw scaling curves for (repeat for several). Default: the two with most "
        "models.", show_default=False)] = None,
    flops: FlopsOpt = None,
    points: PointsOpt = 12,
    level: LevelOpt = 0.95,
    figures_dir: Annotated[Optional[Path], typer.Option(
        "--figures", metavar="DIR", help="Folder for the PNG files (default: <name>_figures next to the page).",
        show_default=False)] = None,
    calibration: Annotated[Optional[Path], typer.Option(
        "--calibration", metavar="CAL.json", help="Widen the scaling curves' bands by a calibration of this fit "
        "(`latentscale calibrate`; it must have the levels 0.5 and --level).", show_default=False)] = None,
    samples: Annotated[int, typer.Option(
        "--samples", min=100, help="Predictive draws per point of a scaling curve (parameter draws: 1/20 of them, "
        "10 to 100).")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the predictive and parameter draws.")] = 0,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write one self-contained HTML page (figures embedded, viewable offline) about a fit: summary, AIC/BIC
    curve, heatmaps of loadings and skill correlations, coefficients with intervals, scaling curves with
    prediction bands, and the allocation frontier of every skill.

    Example: latentscale report fit.json -o report.html --selection table.csv --family llama-2
    """
    import warnings

    from latentscale.report import build_report

    talk = talk_enabled(as_json, quiet, verbose)
    with output.Progress(enabled=talk) as progress:
        with reporting(verbose, interrupted="interrupted; the report was not written"):
            check_level(level)
            if samples < 100:
                raise BadInput(f"--samples {samples}: give at least 100 draws")
            figures = figures_dir if figures_dir is not None else output_path.with_name(f"{output_path.stem}_figures")
            check_outputs([output_path], [fit_path, selection, calibration])
            if figures.exists() and not figures.is_dir():
                raise BadInput(f"the figures folder {figures} is a file; give another --figures folder")
            budgets = parse_flops(flops, points)
            fit = load_fit(fit_path)
            if selection is not None and not selection.is_file():
                raise BadInput(f"no such selection table: {selection} (write one with `latentscale select DATA "
                               "--k 1..8 -o table.csv`)")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = build_report(fit, output_path, selection=selection, families=family, flops=budgets,
                                      points=points, level=level, figures_dir=figures_dir, seed=seed, n_samples=samples,
                                      n_parameter_draws=max(10, min(100, samples // 20)), progress=progress,
                                      calibration=calibration)
        for note in result.notes:
            progress.warn(note)
    if as_json:
        output.print_json({"html": str(result.html), "figures": {k: str(v) for k, v in result.figures.items()},
                           "notes": result.notes})
    else:
        typer.echo(f"wrote {result.html} ({len(result.figures)} figures in "
                   f"{next(iter(result.figures.values())).parent if result.figures else '-'})")
