"""``latentscale fit``: fit the model by marginal maximum likelihood and print its summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latentscale.cli import output
from latentscale.cli.common import (
    BadInput, BenchOpt, CovKind, DataArg, FamilyCol, FloorOpt, Grid, GroupCol, HessianKind, JsonOpt, LogitClipOpt,
    Method, ModelCol, PaperOpt, QuietOpt, SizeCol, TokensCol, VariantOpt, VerboseOpt, build_model, check_outputs,
    data_inputs, file_columns, load_data, paper_data_floors, reporting, talk_enabled, variant_columns,
)

KOpt = Annotated[int, typer.Option("-k", "--skills", show_default=False, help="Number of latent skills K (at least 1).")]
AnchorsOpt = Annotated[Optional[str], typer.Option(
    "--anchors", metavar="A,B,...",
    help="K anchor benchmarks, one per skill (anchor k loads only on skill k). Default: the first K benchmarks "
         "(with --paper: the reference code's order).", show_default=False)]
MethodOpt = Annotated[Method, typer.Option(
    "--method", help="aghq: adaptive quadrature marginal likelihood; laplace: one node per family (faster, less "
                     "accurate); psga: the paper's projected stochastic gradient ascent.")]
ClipOpt = Annotated[Optional[str], typer.Option(
    "--clip", metavar="LOW,HIGH", help="Clip scores into LOW,HIGH before the Beta density. Default 0.001,0.999.",
    show_default=False)]
NoClipOpt = Annotated[bool, typer.Option("--no-clip", help="No clipping (exact 0 or 1 scores are then an error).")]
StartsOpt = Annotated[Optional[int], typer.Option(
    "--starts", min=1, show_default=False,
    help="Number of starting points (aghq, laplace). Default 3; 10 with --paper (the clamped likelihood has more "
         "local optima).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the perturbed starts (and of psga's draws).")]
PointsOpt = Annotated[Optional[int], typer.Option(
    "--points", min=1, help="Quadrature nodes per skill dimension of the product rule (default by K).",
    show_default=False)]
GridOpt = Annotated[Optional[Grid], typer.Option(
    "--grid", help="Quadrature grid: auto (product Gauss-Hermite up to K = 4, sparse beyond), product, or sparse "
                   "(Smolyak, degree 5: 49 nodes at K = 4 instead of 256; for very large data).", show_default=False)]
HessianOpt = Annotated[Optional[HessianKind], typer.Option(
    "--hessian", help="Hessian behind the standard errors (aghq, laplace): laplace: of the Laplace objective at the "
                      "optimum (fast); full: of the quadrature objective itself.", show_default=False)]


def fit(
    data: DataArg,
    k: KOpt,
    anchors: AnchorsOpt = None,
    method: MethodOpt = Method.aghq,
    clip: ClipOpt = None,
    no_clip: NoClipOpt = False,
    logit_clip: LogitClipOpt = None,
    paper: PaperOpt = False,
    variant: VariantOpt = None,
    floor: FloorOpt = None,
    starts: StartsOpt = None,
    seed: SeedOpt = 0,
    points: PointsOpt = None,
    grid: GridOpt = None,
    hessian: HessianOpt = None,
    se: Annotated[CovKind, typer.Option(
        "--se", help="Standard errors in the summary: observed information, outer product of family scores (opg), "
                     "or the robust sandwich.")] = CovKind.observed,
    output_path: Annotated[Optional[Path], typer.Option(
        "-o", "--output", metavar="FIT.json", help="Save the fit as JSON (read it back with `latentscale show`).",
        show_default=False)] = None,
    model_col: ModelCol = None,
    family_col: FamilyCol = None,
    group_col: GroupCol = None,
    size_col: SizeCol = None,
    tokens_col: TokensCol = None,
    benchmarks: BenchOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Fit the model by marginal maximum likelihood and print its summary.

    Example: latentscale fit lvf-paper -k 4
    """
    from latentscale.model.design import build_design

    talk = talk_enabled(as_json, quiet, verbose)
    saved = None
    with output.CapturedWarnings() as caught, output.Progress(enabled=talk) as progress:
        with reporting(verbose, interrupted="interrupted; nothing was fitted or saved"):
            if k < 1:
                raise BadInput(f"-k {k}: the number of skills must be at least 1")
            check_outputs([output_path], data_inputs(data))
            scores = load_data(data, paper_data_floors(floor, paper), benchmarks, variant_columns(variant),
                               **file_columns(model_col, family_col, group_col, size_col, tokens_col))
            model = build_model(k, anchors, method=method, clip=clip, no_clip=no_clip, logit_clip=logit_clip,
                                paper=paper, points=points, grid=grid, starts=starts, seed=seed, hessian=hessian,
                                variant=variant)
            spec = model.spec_for(scores)  # anchors and K against the benchmarks
            build_design(scores, spec.benchmarks, spec.clip,  # rows with covariates; exact 0/1 without a clip
                         family_covariates=spec.family_covariates)
            shown = output.merge_warnings(scores.warnings, caught.messages())
            for note in shown:  # before the long part, so that they are read while it runs
                progress.warn(short_note(note, data))
            progress(f"fitting K = {k} by {method.value} to {scores.n_models} models in {scores.n_families} "
                     f"families, {len(scores.benchmarks)} benchmarks (anchors: {', '.join(spec.anchors)})")
            result = model.fit(scores, progress=progress)
        with reporting(verbose, interrupted="interrupted while saving; the fit was not saved"):
            if output_path is not None:  # saved before the summary: an interrupt there keeps the fit
                saved = result.save(output_path)
                progress(f"saved the fit to {saved}")
        notes = output.merge_warnings(scores.warnings, caught.messages())
        for note in notes[len(shown):]:
            progress.warn(short_note(note, data))
        if not result.converged and method != Method.psga:
            progress.warn("the optimizer did not report convergence (see the gradient norm in the summary); "
                          "try more --starts")
    where = f"; the fit is saved in {saved}" if saved else ""
    with reporting(verbose, interrupted=f"interrupted{where}"):
        if as_json:
            output.print_json({**result.to_dict(se=se.value), "warnings": notes})
        else:
            typer.echo(result.summary(kind=se.value).as_text(), nl=False)


def short_note(note: str, data: str) -> str:
    """A long warning cut short, with where to read all of it."""
    short = output.shorten(note)
    return short if short == note else f"{short} (full text: latentscale data {data})"
