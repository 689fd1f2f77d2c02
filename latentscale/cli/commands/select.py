"""``latentscale select``: fit every K, tabulate log-likelihood, parameters, AIC and BIC."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from latentscale.cli import output
from latentscale.cli.commands.fit import ClipOpt, GridOpt, MethodOpt, NoClipOpt, PointsOpt, StartsOpt, short_note
from latentscale.cli.common import (
    BadInput, BenchOpt, DataArg, FamilyCol, FloorOpt, GroupCol, JsonOpt, LogitClipOpt, Method, ModelCol, PaperOpt,
    QuietOpt, SizeCol, TokensCol, VerboseOpt, build_model, check_outputs, data_inputs, file_columns, load_data,
    paper_data_floors, parse_ks, parse_list, reporting, talk_enabled, variant_columns,
)

JobsOpt = Annotated[int, typer.Option("--jobs", "-j", help="Local worker processes (-1: every core).")]
SchedulerOpt = Annotated[Optional[str], typer.Option(
    "--scheduler", metavar="ADDRESS", help="Run on this Dask scheduler (tcp://host:8786) instead.", show_default=False)]
KRangeOpt = Annotated[str, typer.Option("--k", metavar="A..B", help="The K to compare: a range 1..8 or a list 2,4,6.")]
RankingOpt = Annotated[Optional[str], typer.Option(
    "--anchors", metavar="A,B,...",
    help="Anchor ranking: the model with K skills anchors on its first K entries. Default: the benchmark columns "
         "in data order (with --paper: the reference code's order).", show_default=False)]
VariantsOpt = Annotated[Optional[str], typer.Option(
    "--variants", metavar="V,V,...",
    help="Model variants to compare at every K, e.g. plain,residual,residual+ceiling (terms: plain, residual, "
         "slope, ceiling, power, hetero, clamp, paper, size-tokens, flops, family:COLUMN, joined by +). "
         "Default: the plain model.",
    show_default=False)]
TableOpt = Annotated[Optional[Path], typer.Option(
    "-o", "--output", metavar="TABLE.csv", help="Save the table as CSV.", show_default=False)]
PlotOpt = Annotated[Optional[Path], typer.Option(
    "--plot", metavar="FIG.png", help="Save a plot of AIC and BIC against K (png, pdf or svg).", show_default=False)]


def select(
    data: DataArg,
    k_range: KRangeOpt = "1..8",
    variants: VariantsOpt = None,
    anchors: RankingOpt = None,
    method: MethodOpt = Method.aghq,
    clip: ClipOpt = None,
    no_clip: NoClipOpt = False,
    logit_clip: LogitClipOpt = None,
    paper: PaperOpt = False,
    points: PointsOpt = None,
    grid: GridOpt = None,
    starts: StartsOpt = None,
    jobs: JobsOpt = -1,
    scheduler: SchedulerOpt = None,
    output_path: TableOpt = None,
    plot_path: PlotOpt = None,
    floor: FloorOpt = None,
    benchmarks: BenchOpt = None,
    model_col: ModelCol = None,
    family_col: FamilyCol = None,
    group_col: GroupCol = None,
    size_col: SizeCol = None,
    tokens_col: TokensCol = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Choose the number of latent skills (and the model variant): fit every K, tabulate log-likelihood, AIC and BIC.

    Examples: latentscale select lvf-paper --k 1..8 --plot aic.png;
    latentscale select sloth --k 1..4 --variants plain,hetero
    """
    from latentscale.evaluation.select import select_k
    from latentscale.fitting import PAPER_ANCHORS
    from latentscale.results.io import atomic_write_text

    talk = talk_enabled(as_json, quiet, verbose)
    with output.CapturedWarnings() as caught, output.Progress(enabled=talk) as progress:
        with reporting(verbose, interrupted="interrupted; nothing was saved"):
            ks = parse_ks(k_range)
            check_outputs([output_path, plot_path], data_inputs(data))
            scores = load_data(data, paper_data_floors(floor, paper), benchmarks,
                               variant_columns(*(parse_list(variants, "--variants") or [])),
                               **file_columns(model_col, family_col, group_col, size_col, tokens_col))
            ranking = parse_list(anchors, "--anchors")
            if ranking is None and paper:
                ranking = [b for b in PAPER_ANCHORS if b in scores.benchmarks]
            if max(ks) > len(scores.benchmarks):
                raise BadInput(f"--k {k_range}: K = {max(ks)} exceeds the {len(scores.benchmarks)} benchmarks")
            model = build_model(max(ks), None, method=method, clip=clip, no_clip=no_clip, logit_clip=logit_clip,
                                paper=paper, points=points, grid=grid, starts=starts)
            variant_list = parse_list(variants, "--variants")
            if variant_list:
                from latentscale.model.variants import parse_variant

                for v in variant_list:
                    parse_variant(v)  # an unknown term is the user's mistake, before any fit
            options = {key: v for key, v in model.get_params().items() if key not in ("k", "anchors")}
            # The table needs ℓ and convergence, not standard errors: no Hessian at the optimum
            # (2P gradient calls per fit; with sparse grids often of the full rule).
            options["hessian"] = None
            for note in output.merge_warnings(scores.warnings, caught.messages()):
                progress.warn(short_note(note, data))
            where = f"Dask scheduler {scheduler}" if scheduler else f"{jobs if jobs > 0 else 'all'} local process(es)"
            progress(f"fitting K = {', '.join(map(str, ks))}"
                     + (f" for variants {', '.join(variant_list)}" if variant_list else "") + f" on {where}")
            result = select_k(scores, ks, variants=variant_list, anchors=ranking, n_jobs=jobs, scheduler=scheduler,
                              progress=progress, **options)
            if output_path is not None:
                atomic_write_text(output_path, result.table.join(result.weights()).to_csv(index=False))
                progress(f"saved the table to {output_path}")
            if plot_path is not None:
                result.plot(plot_path)
                progress(f"saved the plot to {plot_path}")
    if as_json:
        output.print_json({"data": scores.name, "rows": result.to_records(),
                           "best_aic": result.best_aic, "best_bic": result.best_bic,
                           "best_aic_variant": result.best_aic_variant, "best_bic_variant": result.best_bic_variant})
    else:
        typer.echo(result.format())
