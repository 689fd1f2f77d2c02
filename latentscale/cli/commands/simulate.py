"""``latentscale simulate``: a simulation study of the estimator (bias, RMSE, coverage, AIC's K)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latentscale.cli import output
from latentscale.cli.commands.select import JobsOpt, SchedulerOpt
from latentscale.cli.common import (
    BadInput, JsonOpt, LogitClipOpt, QuietOpt, VerboseOpt, check_outputs, parse_clip, parse_ks, parse_list,
    reporting, talk_enabled,
)


def simulate(
    k: Annotated[int, typer.Option("-k", "--skills", help="True number of skills K.")] = 3,
    n_benchmarks: Annotated[int, typer.Option("-J", "--n-benchmarks", help="Number of benchmarks J.")] = 8,
    families: Annotated[int, typer.Option("--families", help="Families per data set (at least 2).")] = 300,
    reps: Annotated[int, typer.Option("--reps", help="Replications.")] = 200,
    family_sizes: Annotated[str, typer.Option(
        "--family-sizes", help="'real' (the law of the real data) or a fixed number of models per family.")] = "real",
    missing: Annotated[str, typer.Option(
        "--missing", help="'real' (leaderboard-like blocks) or a fraction of cells missing at random.")] = "real",
    compare_k: Annotated[Optional[str], typer.Option(
        "--compare-k", metavar="A,B,...", help="Also fit these K and report how often AIC / BIC pick the true one.",
        show_default=False)] = None,
    level: Annotated[float, typer.Option("--level", help="Level of the Wald intervals, in (0.5, 1).")] = 0.95,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the true parameters and of the design.")] = 0,
    redraw_design: Annotated[bool, typer.Option(
        "--redraw-design", help="Draw a new design (sizes, tokens, missing cells) in every replication.")] = False,
    clip: Annotated[Optional[str], typer.Option(
        "--clip", metavar="LOW,HIGH", help="Clip the simulated scores and the fits into LOW,HIGH (e.g. the reference "
        "analysis's 0.001,0.999). Default: scores as drawn, a correctly specified likelihood.",
        show_default=False)] = None,
    logit_clip: LogitClipOpt = None,
    variant: Annotated[str, typer.Option(
        "--variant", help="The model the data are drawn from and fitted by: plain, hetero, size-tokens, flops, "
                          "hetero+flops, ...")] = "plain",
    compare_variants: Annotated[Optional[str], typer.Option(
        "--compare-variants", metavar="V,V,...", help="Also fit these variants (at the true K) and report how often "
                                                     "AIC / BIC pick the true one.", show_default=False)] = None,
    profile: Annotated[Optional[str], typer.Option(
        "--profile", metavar="BLOCK,...", help="Also the coverage of profile-likelihood intervals of these parameter "
                                               "blocks (e.g. link_power,ceiling; seconds per parameter and "
                                               "replication).", show_default=False)] = None,
    truth_range: Annotated[Optional[str], typer.Option(
        "--truth-range", metavar="BLOCK=LOW:HIGH,...", help="Draw the true values of these blocks from LOW..HIGH "
        "instead of the default range, the law kept (residual_sd, slope_sd, ceiling: uniform; link_power: "
        "log-uniform), e.g. link_power=0.6:6.", show_default=False)] = None,
    jobs: JobsOpt = -1,
    scheduler: SchedulerOpt = None,
    output_path: Annotated[Optional[Path], typer.Option(
        "-o", "--output", metavar="PARAMS.csv", help="Save bias, RMSE, SE and coverage per parameter as CSV.",
        show_default=False)] = None,
    plot_path: Annotated[Optional[Path], typer.Option(
        "--plot", metavar="FIG.png", help="Save a plot of coverage and RMSE by parameter block.",
        show_default=False)] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Simulation study: draw data from the model, refit, report bias, RMSE, interval coverage and AIC's K.

    With --logit-clip the data are drawn from, and fitted by, the model with the clamped logit.

    Example: latentscale simulate -k 3 -J 8 --families 300 --reps 200 --compare-k 2,3,4
    """
    from latentscale.evaluation.simstudy import StudyConfig, simulation_study
    from latentscale.results.io import atomic_write_text

    talk = talk_enabled(as_json, quiet, verbose)
    with output.Progress(enabled=talk) as progress:
        with reporting(verbose, interrupted="interrupted; nothing was saved"):
            if k < 1 or n_benchmarks < 1 or families < 2 or reps < 1:
                raise BadInput("need -k >= 1, -J >= 1, --families >= 2 and --reps >= 1")
            if not 0.5 <= level < 1:
                raise BadInput(f"--level {level:g}: give a probability between 0.5 and 1, e.g. 0.95")
            sizes = _real_or_number(family_sizes, "--family-sizes", int)
            miss = _real_or_number(missing, "--missing", float)
            if isinstance(miss, float) and not 0 <= miss < 1:
                raise BadInput(f"--missing {missing}: give 'real' or a fraction in [0, 1)")
            others = tuple(parse_ks(compare_k)) if compare_k else ()
            if k > n_benchmarks or any(x > n_benchmarks for x in others):
                raise BadInput(f"K must not exceed the {n_benchmarks} benchmarks (-k {k}, --compare-k {compare_k})")
            check_outputs([output_path, plot_path])
            config = StudyConfig(k=k, n_benchmarks=n_benchmarks, n_families=families, family_sizes=sizes,
                                 missing=miss, level=level, compare_k=others, param_seed=seed, design_seed=seed,
                                 fixed_design=not redraw_design,
                                 clip=None if clip is None else parse_clip(clip, False), logit_clip=logit_clip,
                                 variant=variant, compare_variants=tuple(parse_list(compare_variants,
                                                                                    "--compare-variants") or ()),
                                 profile_blocks=tuple(parse_list(profile, "--profile") or ()),
                                 truth_ranges=_truth_ranges(truth_range))
            where = f"Dask scheduler {scheduler}" if scheduler else f"{jobs if jobs > 0 else 'all'} local process(es)"
            progress(f"{reps} replications of K = {k} ({variant}), J = {n_benchmarks}, {families} families on {where}")
            result = simulation_study(config, reps, n_jobs=jobs, scheduler=scheduler, progress=progress)
            if output_path is not None:
                atomic_write_text(output_path, result.by_parameter().to_csv())
            if plot_path is not None:
                result.plot(plot_path)
    if as_json:
        output.print_json(result.to_dict())
    else:
        typer.echo(result.summary())


def _truth_ranges(text: str | None) -> tuple[tuple[str, float, float], ...]:
    """``BLOCK=LOW:HIGH,...`` as (block, low, high) triples (their values are checked by the study)."""
    out = []
    for item in parse_list(text, "--truth-range") or ():
        name, eq, bounds = item.partition("=")
        low, colon, high = bounds.partition(":")
        try:
            if not (eq and colon):
                raise ValueError
            out.append((name.strip(), float(low), float(high)))
        except ValueError:
            raise BadInput(f"--truth-range {item!r}: give BLOCK=LOW:HIGH, e.g. link_power=0.6:6") from None
    return tuple(out)


def _real_or_number(text: str, option: str, kind: type):
    if text == "real":
        return "real"
    try:
        return kind(text)
    except ValueError:
        raise BadInput(f"{option} {text!r}: give 'real' or a number") from None
