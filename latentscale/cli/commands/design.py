"""``latentscale design evaluate`` and ``design train``: which evaluations, or which training runs,
would most reduce the uncertainty of a target."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latentscale.cli import output
from latentscale.cli.common import (
    BadInput, FitArg, JsonOpt, QuietOpt, VerboseOpt, check_outputs, load_fit, parse_list, parse_pair, read_table,
    reporting, talk_enabled,
)
from latentscale.cli.commands.predict import SeedOpt
from latentscale.results.io import atomic_write_text

app = typer.Typer(help="Optimal design on the fitted law: what to evaluate next, what to train next.",
                  no_args_is_help=True)

BatchOpt = Annotated[int, typer.Option("--batch", "-b", help="Runs to choose greedily, each given those before it.")]
DrawsOpt = Annotated[int, typer.Option("--draws", help="Posterior draws per family (at least 100).")]
FantasyOpt = Annotated[int, typer.Option("--fantasies", help="Simulated outcomes per candidate (at least 8).")]
ParUncOpt = Annotated[bool, typer.Option(
    "--parameter-uncertainty", help="Draw the parameters from their asymptotic covariance too (default: at the "
                                    "estimate).")]
OutOpt = Annotated[Optional[Path], typer.Option(
    "-o", "--output", metavar="OUT.csv|OUT.json", help="Save the ranked table (CSV) or table and batch (JSON).",
    show_default=False)]


def _check(draws: int, fantasies: int, batch: int) -> None:
    if draws < 100:
        raise BadInput(f"--draws {draws}: give at least 100")
    if fantasies < 8:
        raise BadInput(f"--fantasies {fantasies}: give at least 8")
    if batch < 0:
        raise BadInput(f"--batch {batch}: give 0 or more")


def _save(path: Path | None, result, progress) -> None:
    if path is None:
        return
    import json

    from latentscale.results.jsonable import to_json

    text = (json.dumps(to_json(result.to_dict()), indent=1, allow_nan=False) if path.suffix.lower() == ".json"
            else result.table.to_csv(index=False))
    progress(f"saved {atomic_write_text(path, text)}")


def _show(result, top: int, columns) -> None:
    typer.echo(f"target: {result.target}")
    if len(result.batch):
        typer.echo(f"greedy batch of {len(result.batch)}:")
        typer.echo(result.batch.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        typer.echo("")
    typer.echo(f"candidates, best first ({min(top, len(result.table))} of {len(result.table)}):")
    typer.echo(result.table.head(top)[list(columns)].to_string(index=False, float_format=lambda x: f"{x:.4g}"))


@app.command("evaluate")
def evaluate(
    fit_path: FitArg,
    family: Annotated[Optional[list[str]], typer.Option(
        "--family", "-f", help="A family whose runs to rank (repeat for several; two for --target ranking).",
        show_default=False)] = None,
    target: Annotated[str, typer.Option(
        "--target", help="scores: the families' unevaluated scores; model: one model's (--model); skill: a skill of "
                         "the families (--skill); ranking: the difference of two families in --skill.")] = "scores",
    model: Annotated[Optional[str], typer.Option("--model", help="The model of --target model.",
                                                 show_default=False)] = None,
    skill: Annotated[Optional[str], typer.Option("--skill", help="The skill of --target skill or ranking.",
                                                 show_default=False)] = None,
    candidates: Annotated[Optional[Path], typer.Option(
        "--candidates", metavar="CANDIDATES.csv",
        help="Candidate runs: model, benchmark, optional cost (default 1), and family, size, tokens for models not "
             "in the fit. Default: every unevaluated cell of the families' models.", show_default=False)] = None,
    batch: BatchOpt = 5,
    draws: DrawsOpt = 1000,
    fantasies: FantasyOpt = 128,
    parameter_uncertainty: ParUncOpt = False,
    seed: SeedOpt = 0,
    top: Annotated[int, typer.Option("--top", help="Candidates to print.")] = 20,
    output_path: OutOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Rank candidate evaluations by the expected reduction of the target's variance per unit cost.

    Example: latentscale design evaluate fit.json --family pythia --batch 3 -o next.csv
    """
    from latentscale.design import design_evaluations

    talk = talk_enabled(as_json, quiet, verbose)
    with output.Progress(enabled=talk) as progress, reporting(verbose, interrupted="interrupted; nothing was saved"):
        _check(draws, fantasies, batch)
        check_outputs([output_path], [fit_path, candidates])
        fit = load_fit(fit_path)
        table = read_table(candidates, "candidates table") if candidates is not None else None
        progress(f"posterior draws and {fantasies} simulated outcomes per candidate")
        result = design_evaluations(fit, family, target, model=model, skill=skill, candidates=table, batch=batch,
                                    n_draws=draws, n_fantasies=fantasies, seed=seed,
                                    parameter_uncertainty=parameter_uncertainty, progress=progress)
        _save(output_path, result, progress)
    if as_json:
        output.print_json(result.to_dict())
    else:
        _show(result, top, ("rank", "family", "model", "benchmark", "cost", "reduction", "reduction_per_cost"))


@app.command("train")
def train(
    fit_path: FitArg,
    family: Annotated[str, typer.Option("--family", "-f", help="The family to train a new model of.",
                                        show_default=False)],
    runs: Annotated[Path, typer.Option(
        "--runs", metavar="RUNS.csv", help="Candidate runs: size (billions), tokens (trillions), optional run (a "
                                           "name) and flops (default 6·N·D).", show_default=False)],
    target: Annotated[str, typer.Option(
        "--target", help="skill: the family's --skill at --at; scores: the expected scores of a model at --at; "
                         "allocation: the compute-optimal tokens per parameter D*/N* of --skill at --flops.")
    ] = "skill",
    skill: Annotated[Optional[str], typer.Option("--skill", help="The skill of --target skill or allocation.",
                                                 show_default=False)] = None,
    at: Annotated[Optional[str], typer.Option(
        "--at", metavar="SIZE,TOKENS", help="Where the target is: billions of parameters, trillions of tokens "
                                            "(default: the largest candidate run).", show_default=False)] = None,
    flops: Annotated[Optional[float], typer.Option(
        "--flops", metavar="C", help="The budget of --target allocation (default: the FLOPs of --at).",
        show_default=False)] = None,
    benchmarks: Annotated[Optional[str], typer.Option(
        "--benchmarks", metavar="A,B,...", help="What each new model is evaluated on (default: every benchmark).",
        show_default=False)] = None,
    batch: BatchOpt = 1,
    draws: DrawsOpt = 2000,
    fantasies: FantasyOpt = 128,
    parameter_uncertainty: ParUncOpt = False,
    seed: SeedOpt = 0,
    output_path: OutOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Rank candidate training runs of a family by the expected reduction of the target's variance per FLOP.

    Example: latentscale design train fit.json --family pythia --runs runs.csv --skill MMLU --at 70,2
    """
    from latentscale.design.train import design_training

    talk = talk_enabled(as_json, quiet, verbose)
    with output.Progress(enabled=talk) as progress, reporting(verbose, interrupted="interrupted; nothing was saved"):
        _check(draws, fantasies, batch)
        check_outputs([output_path], [fit_path, runs])
        fit = load_fit(fit_path)
        table = read_table(runs, "runs table")
        where = parse_pair(at, "--at", "70,2") if at is not None else None
        if flops is not None and not flops > 0:
            raise BadInput(f"--flops {flops:g}: give a positive budget in FLOPs (C = 6·N·D), e.g. 1e23")
        result = design_training(fit, family, table, target, skill=skill, at=where, flops=flops,
                                 benchmarks=parse_list(benchmarks, "--benchmarks"), batch=batch, n_draws=draws,
                                 n_fantasies=fantasies, seed=seed, parameter_uncertainty=parameter_uncertainty,
                                 progress=progress)
        _save(output_path, result, progress)
    if as_json:
        output.print_json(result.to_dict())
    else:
        _show(result, len(result.table), ("rank", "run", "size", "tokens", "flops", "reduction",
                                           "reduction_per_flop"))
