"""``latentscale allocate``: the compute-optimal size and tokens per FLOP budget, with intervals."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from latentscale.cli import output
from latentscale.cli.common import (
    BadInput, CovKind, FitArg, JsonOpt, QuietOpt, VerboseOpt, check_outputs, load_fit, reporting, talk_enabled,
)

FlopsOpt = Annotated[Optional[str], typer.Option(
    "--flops", metavar="LO..HI", help="Budgets in FLOPs (C = 6·N·D): a range 1e20..1e25 (log-spaced, --points), "
    "a list 1e21,1e23 or one value. Default: the range of 6·N·D in the fit's data.", show_default=False)]
PointsOpt = Annotated[int, typer.Option("--points", help="Number of budgets in a --flops range (at least 1).")]
LevelOpt = Annotated[float, typer.Option("--level", help="Level of the intervals, in (0, 1).")]


def parse_flops(text: str | None, points: int) -> list[float] | None:
    """``1e20..1e25`` (``points`` log-spaced budgets), ``1e21,1e23`` or ``1e22`` → budgets in FLOPs."""
    from latentscale.allocation import flops_range

    if text is None:
        return None
    bad = BadInput(f"bad --flops {text!r}: give a range such as 1e20..1e25, a list such as 1e21,1e23 "
                   "or one budget, in FLOPs (positive)")
    try:
        parts = text.split("..", 1) if ".." in text else text.split(",")
        values = [float(v) for v in parts]
    except ValueError:
        raise bad from None
    if ".." in text:
        lo, hi = values
        if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
            raise bad
        if hi < lo:
            raise BadInput(f"bad --flops {text!r}: the range is reversed; give LOW..HIGH")
        if lo < hi and points < 2:
            raise BadInput(f"--points {points}: a range of budgets needs at least 2 points")
        return [float(v) for v in flops_range(lo, hi, points)]
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


def check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise BadInput(f"bad --level {level}: give a number between 0 and 1, e.g. 0.95")


SkillOpt = Annotated[Optional[str], typer.Option(
    "--skill", help="Skill to maximize (named by its anchor). Default: every skill.", show_default=False)]
BenchmarkOpt = Annotated[Optional[str], typer.Option(
    "--benchmark", help="Maximize this benchmark's expected score instead of a skill.", show_default=False)]
FamilyOpt = Annotated[Optional[str], typer.Option(
    "--family", help="Family whose posterior-mean skills give the value at the optimum (the optimum itself does "
                     "not depend on the family). Default: a typical family (α = 0).", show_default=False)]
BoxSizeOpt = Annotated[Optional[str], typer.Option(
    "--box-size", metavar="LO,HI", help="Sizes allowed, billions of parameters. Default: the data's range.",
    show_default=False)]
BoxTokensOpt = Annotated[Optional[str], typer.Option(
    "--box-tokens", metavar="LO,HI", help="Token counts allowed, trillions. Default: the data's range.",
    show_default=False)]
DrawsOpt = Annotated[int, typer.Option("--draws", min=0, help="Parameter draws for the intervals (0: none).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the parameter draws.")]
SeOpt = Annotated[CovKind, typer.Option("--se", help="Covariance of the parameters behind the intervals.")]
OutputOpt = Annotated[Optional[Path], typer.Option(
    "-o", "--output", metavar="TABLE.csv", help="Save the table as CSV.", show_default=False)]
PlotOpt = Annotated[Optional[Path], typer.Option(
    "--plot", metavar="FIG.png", help="Save the allocation frontier as a figure.", show_default=False)]


def allocate(
    fit_path: FitArg,
    skill: SkillOpt = None,
    benchmark: BenchmarkOpt = None,
    family: FamilyOpt = None,
    flops: FlopsOpt = None,
    points: PointsOpt = 10,
    box_size: BoxSizeOpt = None,
    box_tokens: BoxTokensOpt = None,
    level: LevelOpt = 0.95,
    draws: DrawsOpt = 2000,
    seed: SeedOpt = 0,
    se: SeOpt = CovKind.observed,
    output_path: OutputOpt = None,
    plot_path: PlotOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Compute-optimal allocation: for each budget C = 6·N·D FLOPs, the size N and tokens D that maximize a
    skill (or a benchmark's expected score) within a box of sizes and tokens, with intervals.

    Example: latentscale allocate fit.json --skill math --flops 1e20..1e25 --points 10 -o math.csv
    """
    import warnings

    from latentscale.allocation import allocate as run_allocate, format_allocation, plot_frontier
    from latentscale.results.io import atomic_write_text

    talk = talk_enabled(as_json, quiet, verbose)
    with output.Progress(enabled=talk) as progress, reporting(verbose, interrupted="interrupted; nothing was saved"):
        check_level(level)
        if points < 1:
            raise BadInput(f"--points {points}: give at least 1")
        check_outputs([output_path, plot_path], [fit_path])
        if skill is not None and benchmark is not None:
            raise BadInput("give --skill or --benchmark, not both")
        budgets = parse_flops(flops, points)
        box = (parse_side(box_size, "--box-size", "billions of parameters"),
               parse_side(box_tokens, "--box-tokens", "trillions of tokens"))
        fit = load_fit(fit_path)
        check_target(fit, skill, benchmark, family)
        uncertainty = draws > 0
        if uncertainty and fit.hessian is None and se != CovKind.opg:
            progress.warn("the fit carries no Hessian: no intervals (refit with standard errors to get them)")
            uncertainty = False
        what = f"skill {skill}" if skill else f"benchmark {benchmark}" if benchmark else "every skill"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            progress(f"allocating for {what}" + (f", family {family} (its posterior first)" if family else "")
                     + (f", {draws} parameter draws" if uncertainty else ""))
            table = run_allocate(fit, skill=skill, benchmark=benchmark, family=family, flops=budgets, box=box,
                                 level=level, uncertainty=uncertainty, n_draws=max(draws, 2), seed=seed,
                                 cov_kind=se.value, points=points)
        if output_path is not None:
            atomic_write_text(output_path, table.to_csv(index=False))
            progress(f"saved the table to {output_path}")
        if plot_path is not None:
            plot_frontier(table, fit, plot_path)
            progress(f"saved the figure to {plot_path}")
    if as_json:
        output.print_json({"fit": str(fit_path), "level": level, "rows": table.to_dict(orient="records")})
    else:
        typer.echo(format_allocation(table))


def check_target(fit, skill: str | None, benchmark: str | None, family: str | None) -> None:
    """The skill, benchmark and family named on the command line exist in the fit."""
    if skill is not None and skill not in fit.spec.skills:
        raise BadInput(f"unknown skill {skill!r}; this fit's skills are {', '.join(fit.spec.skills)}")
    if benchmark is not None and benchmark not in fit.spec.benchmarks:
        raise BadInput(f"unknown benchmark {benchmark!r}; this fit's benchmarks are {', '.join(fit.spec.benchmarks)}")
    if family is not None and (fit.data is None or family not in set(fit.data["family"].astype(str))):
        from latentscale.prediction.posterior import unknown_families_message

        raise BadInput(unknown_families_message([family], set() if fit.data is None else set(fit.data["family"]))
                       + "; leave --family out for a typical family")
