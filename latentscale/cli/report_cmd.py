"""``latentscale allocate`` (compute-optimal size and tokens per budget) and ``latentscale report``
(one self-contained HTML page about a fit)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from latentscale.cli import output
from latentscale.cli.app import BadInput, CovKind, JsonOpt, VerboseOpt, app, reporting

FitArg = Annotated[Path, typer.Argument(metavar="FIT.json", help="A fit saved by `latentscale fit -o`.",
                                        show_default=False)]
FlopsOpt = Annotated[Optional[str], typer.Option(
    "--flops", metavar="LO..HI", help="Budgets in FLOPs (C = 6·N·D): a range 1e20..1e25 (log-spaced, --points), "
    "a list 1e21,1e23 or one value. Default: the range of 6·N·D in the fit's data.", show_default=False)]
PointsOpt = Annotated[int, typer.Option("--points", min=1, help="Number of budgets in a --flops range.")]
LevelOpt = Annotated[float, typer.Option("--level", help="Level of the intervals, in (0, 1).")]


def load_fit(path: Path):
    from latentscale.results.fit_result import FitResult

    if path.is_dir():
        raise BadInput(f"{path} is a folder; give a fit saved by `latentscale fit -o FIT.json`")
    try:
        return FitResult.load(path)
    except (KeyError, TypeError) as e:
        raise BadInput(f"{path} is not a complete latentscale fit ({type(e).__name__}: {e})") from e


def parse_flops(text: str | None, points: int) -> list[float] | None:
    """``1e20..1e25`` (``points`` log-spaced budgets), ``1e21,1e23`` or ``1e22`` → budgets in FLOPs."""
    from latentscale.allocation import flops_range

    if text is None:
        return None
    bad = BadInput(f"bad --flops {text!r}: give a range such as 1e20..1e25, a list such as 1e21,1e23 "
                   "or one budget, in FLOPs (positive)")
    try:
        if ".." in text:
            lo, hi = (float(v) for v in text.split("..", 1))
            if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
                raise bad
            if hi < lo:
                raise BadInput(f"bad --flops {text!r}: the range is reversed; give LOW..HIGH")
            if lo < hi and points < 2:
                raise BadInput(f"--points {points}: a range of budgets needs at least 2 points")
            return [float(v) for v in flops_range(lo, hi, points)]
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise bad from None
    if not values or not all(v > 0 and math.isfinite(v) for v in values):
        raise bad
    return values


def parse_side(text: str | None, option: str, unit: str) -> tuple[float, float] | None:
    """``LO,HI`` → (lo, hi), positive and in order."""
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise BadInput(f"bad {option} {text!r}: expected LOW,HIGH in {unit}, e.g. {option} 0.1,400") from None
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        raise BadInput(f"bad {option} {text!r}: both ends must be positive numbers ({unit})")
    if hi < lo:
        raise BadInput(f"bad {option} {text!r}: the range is reversed; give LOW,HIGH")
    return lo, hi


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise BadInput(f"bad --level {level}: give a number between 0 and 1, e.g. 0.95")


def _check_output(path: Path | None, example: str) -> None:
    if path is not None and path.is_dir():
        raise BadInput(f"{path} is a folder; give a file name such as {example}")


@app.command()
def allocate(
    fit_path: FitArg,
    skill: Annotated[Optional[str], typer.Option(
        "--skill", help="Skill to maximize (named by its anchor). Default: every skill.", show_default=False)] = None,
    benchmark: Annotated[Optional[str], typer.Option(
        "--benchmark", help="Maximize this benchmark's expected score instead of a skill.", show_default=False)] = None,
    family: Annotated[Optional[str], typer.Option(
        "--family", help="Family whose posterior-mean skills give the value at the optimum (the optimum itself does "
                         "not depend on the family). Default: a typical family (α = 0).", show_default=False)] = None,
    flops: FlopsOpt = None,
    points: PointsOpt = 10,
    box_size: Annotated[Optional[str], typer.Option(
        "--box-size", metavar="LO,HI", help="Sizes allowed, billions of parameters. Default: the data's range.",
        show_default=False)] = None,
    box_tokens: Annotated[Optional[str], typer.Option(
        "--box-tokens", metavar="LO,HI", help="Token counts allowed, trillions. Default: the data's range.",
        show_default=False)] = None,
    level: LevelOpt = 0.95,
    draws: Annotated[int, typer.Option("--draws", min=0, help="Parameter draws for the intervals (0: none).")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the parameter draws.")] = 0,
    se: Annotated[CovKind, typer.Option("--se", help="Covariance of the parameters behind the intervals.")
                  ] = CovKind.observed,
    output_path: Annotated[Optional[Path], typer.Option(
        "-o", "--output", metavar="TABLE.csv", help="Save the table as CSV.", show_default=False)] = None,
    plot_path: Annotated[Optional[Path], typer.Option(
        "--plot", metavar="FIG.png", help="Save the allocation frontier as a figure.", show_default=False)] = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Compute-optimal allocation: for each budget C = 6·N·D FLOPs, the size N and tokens D that maximize a
    skill (or a benchmark's expected score) within a box of sizes and tokens, with intervals.

    Example: latentscale allocate fit.json --skill math --flops 1e20..1e25 --points 10 -o math.csv
    """
    import warnings

    from latentscale.allocation import allocate as run_allocate, format_allocation, plot_frontier
    from latentscale.results.fit_result import atomic_write_text

    with reporting(verbose, bad_input=(ValueError, OSError, KeyError)):
        _check_level(level)
        _check_output(output_path, "table.csv")
        _check_output(plot_path, "frontier.png")
        if skill is not None and benchmark is not None:
            raise BadInput("give --skill or --benchmark, not both")
        budgets = parse_flops(flops, points)
        box = (parse_side(box_size, "--box-size", "billions of parameters"),
               parse_side(box_tokens, "--box-tokens", "trillions of tokens"))
        fit = load_fit(fit_path)
        if skill is not None and skill not in fit.spec.skills:
            raise BadInput(f"unknown skill {skill!r}; this fit's skills are {', '.join(fit.spec.skills)}")
        if benchmark is not None and benchmark not in fit.spec.benchmarks:
            raise BadInput(f"unknown benchmark {benchmark!r}; this fit's benchmarks are {', '.join(fit.spec.benchmarks)}")
        if family is not None and (fit.data is None or family not in set(fit.data["family"].astype(str))):
            raise BadInput(f"unknown family {family!r}: not among the fit's rows; leave --family out for a typical "
                           "family")
        uncertainty = draws > 0
        if uncertainty and fit.hessian is None and se != CovKind.opg:
            if not as_json or verbose:
                output.warning("the fit carries no Hessian: no intervals (refit to get them)")
            uncertainty = False
        what = f"skill {skill}" if skill else f"benchmark {benchmark}" if benchmark else "every skill"
        with output.Progress(enabled=not as_json or verbose) as progress, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            progress(f"allocating for {what}" + (f", family {family} (its posterior first)" if family else "")
                     + (f", {draws} parameter draws" if uncertainty else ""))
            table = run_allocate(fit, skill=skill, benchmark=benchmark, family=family, flops=budgets, box=box,
                                 level=level, uncertainty=uncertainty, n_draws=max(draws, 2), seed=seed,
                                 cov_kind=se.value, points=points)
        if output_path is not None:
            atomic_write_text(output_path, table.to_csv(index=False))
        if plot_path is not None:
            plot_frontier(table, fit, plot_path)
    if as_json:
        output.print_json({"fit": str(fit_path), "level": level, "rows": table.to_dict(orient="records")})
    else:
        typer.echo(format_allocation(table))
    if not as_json or verbose:
        for p, what in ((output_path, "table"), (plot_path, "figure")):
            if p is not None:
                output.stderr().print(Text(f"saved the {what} to {p}"))


@app.command()
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
    samples: Annotated[int, typer.Option(
        "--samples", min=100, help="Predictive draws per point of a scaling curve (parameter draws: 1/20 of them, "
        "10 to 100).")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the predictive and parameter draws.")] = 0,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write one self-contained HTML page (figures embedded, viewable offline) about a fit: summary, AIC/BIC
    curve, heatmaps of loadings and skill correlations, coefficients with intervals, scaling curves with
    prediction bands, and the allocation frontier of every skill.

    Example: latentscale report fit.json -o report.html --selection table.csv --family llama-2
    """
    import warnings

    from latentscale.report import build_report

    talk = verbose or not as_json
    with output.Progress(enabled=talk) as progress:
        with reporting(verbose, bad_input=(ValueError, OSError, KeyError)):
            _check_level(level)
            if output_path.is_dir():
                raise BadInput(f"--output {output_path} is a folder; give a file name such as report.html")
            budgets = parse_flops(flops, points)
            fit = load_fit(fit_path)
            if selection is not None and not selection.is_file():
                raise BadInput(f"no such selection table: {selection} (write one with `latentscale select DATA "
                               "--k 1..8 -o table.csv`)")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = build_report(fit, output_path, selection=selection, families=family, flops=budgets,
                                      points=points, level=level, figures_dir=figures_dir, seed=seed, n_samples=samples,
                                      n_parameter_draws=max(10, min(100, samples // 20)),
                                      progress=progress)
    for note in result.notes:
        if talk:
            progress.warn(note)
    if as_json:
        output.print_json({"html": str(result.html), "figures": {k: str(v) for k, v in result.figures.items()},
                           "notes": result.notes})
    else:
        typer.echo(f"wrote {result.html} ({len(result.figures)} figures in "
                   f"{next(iter(result.figures.values())).parent if result.figures else '-'})")
