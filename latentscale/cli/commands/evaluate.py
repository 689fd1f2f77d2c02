"""``latentscale evaluate``: held-out calibration of the intervals, or cross-validation against baselines."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from latentscale.cli import output
from latentscale.cli.commands.predict import SamplesOpt, SeedOpt, check_samples, save_csv
from latentscale.cli.commands.select import JobsOpt, SchedulerOpt
from latentscale.cli.common import (
    BadInput, CovKind, DataArg, FamilyCol, FloorOpt, GroupCol, JsonOpt, LogitClipOpt, ModelCol, PaperOpt, QuietOpt,
    SeOpt, SizeCol, TokensCol, VariantOpt, VerboseOpt, build_model, check_outputs, data_inputs, file_columns,
    load_data, paper_data_floors, parse_levels, parse_list, reporting, talk_enabled, variant_columns,
)


class Protocol(str, Enum):
    holdout_largest = "holdout-largest"
    family_group = "family-group"


EVAL_PANEL = "Protocol family-group"

ProtocolOpt = Annotated[Protocol, typer.Option(
    "--protocol", help="holdout-largest: hold out each family's largest model, refit, check the prediction "
                       "intervals; family-group: leave-family-group-out cross-validation against baselines.")]
KOpt = Annotated[int, typer.Option("-k", "--skills", help="Number of latent skills (holdout-largest).")]
AnchorsOpt = Annotated[Optional[str], typer.Option(
    "--anchors", metavar="A,B,...", help="Anchor benchmarks (holdout-largest; default: the first K).",
    show_default=False)]
HoldoutOpt = Annotated[Optional[Path], typer.Option(
    "--holdout", metavar="FILE", help="Hold out exactly these models (one name per line) instead of each "
                                      "family's largest (holdout-largest).", show_default=False)]
LevelOpt = Annotated[Optional[list[float]], typer.Option(
    "--level", metavar="P", help="Interval level in (0, 1); repeat for several. Default 0.5, 0.8 and 0.95.",
    show_default=False)]
CalibrateOpt = Annotated[bool, typer.Option(
    "--calibrate", help="holdout-largest: widen the intervals by factors learned on the training rows alone (their "
                        "families' largest models held out in a second refit; split conformal, docs/prediction.md).")]
BenchSetOpt = Annotated[str, typer.Option(
    "--benchmarks", metavar="v1|v2|all", rich_help_panel=EVAL_PANEL, help="Benchmark set (family-group).")]
NTrainOpt = Annotated[int, typer.Option("--n-train", rich_help_panel=EVAL_PANEL,
                                        help="Smallest models per held-out family kept in training (0: the "
                                             "held-out families are unseen).")]
MethodsOpt = Annotated[Optional[str], typer.Option(
    "--methods", metavar="M,M,...", rich_help_panel=EVAL_PANEL, help="Methods to compare (default: all).",
    show_default=False)]
GroupsOpt = Annotated[Optional[Path], typer.Option(
    "--groups", metavar="FILE", rich_help_panel=EVAL_PANEL,
    help="JSON file of held-out groups (default: every group of the data).", show_default=False)]
EvalJobsOpt = Annotated[int, typer.Option("--jobs", "-j", rich_help_panel=EVAL_PANEL,
                                          help="Local worker processes (-1: every core).")]
PublishedOpt = Annotated[bool, typer.Option(
    "--published", rich_help_panel=EVAL_PANEL,
    help="Show Sloth's published results for the same test cases next to ours (needs LATENTSCALE_DATA_DIR with "
         "sloth/published_errors_long.csv).")]
OutputOpt = Annotated[Optional[Path], typer.Option(
    "-o", "--output", metavar="OUT.csv",
    help="Save the tidy per-model results: predictions with actual scores (holdout-largest), absolute errors "
         "(family-group).", show_default=False)]


def evaluate(
    data: DataArg,
    protocol: ProtocolOpt = Protocol.holdout_largest,
    k: KOpt = 4,
    anchors: AnchorsOpt = None,
    holdout: HoldoutOpt = None,
    level: LevelOpt = None,
    calibrate: CalibrateOpt = False,
    samples: SamplesOpt = 4000,
    seed: SeedOpt = 0,
    se: SeOpt = CovKind.sandwich,
    bench_set: BenchSetOpt = "all",
    n_train: NTrainOpt = 1,
    methods: MethodsOpt = None,
    groups: GroupsOpt = None,
    jobs: EvalJobsOpt = 1,
    scheduler: SchedulerOpt = None,
    published: PublishedOpt = False,
    output_path: OutputOpt = None,
    logit_clip: LogitClipOpt = None,
    paper: PaperOpt = False,
    variant: VariantOpt = None,
    floor: FloorOpt = None,
    model_col: ModelCol = None,
    family_col: FamilyCol = None,
    group_col: GroupCol = None,
    size_col: SizeCol = None,
    tokens_col: TokensCol = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Held-out evaluation: calibration of the prediction intervals, or cross-validation against baselines.

    Examples: latentscale evaluate lvf-paper --protocol holdout-largest;
    latentscale evaluate sloth --protocol family-group --benchmarks v1 --n-train 2
    """
    talk = talk_enabled(as_json, quiet, verbose)
    with output.CapturedWarnings() as caught, output.Progress(enabled=talk) as progress:
        with reporting(verbose, interrupted="interrupted; nothing was saved"):
            check_samples(samples)
            if k < 1 or n_train < 0:
                raise BadInput("need -k >= 1 and --n-train >= 0 (0: unseen families)")
            if calibrate and protocol != Protocol.holdout_largest:
                raise BadInput("--calibrate widens prediction intervals: use it with --protocol holdout-largest")
            check_outputs([output_path], [*data_inputs(data), holdout, groups])
            scores = load_data(data, paper_data_floors(floor, paper), None,
                               variant_columns(variant, *_method_variants(methods)),
                               **file_columns(model_col, family_col, group_col, size_col, tokens_col))
            model = build_model(k, anchors, logit_clip=logit_clip, paper=paper, variant=variant)
            if protocol == Protocol.holdout_largest:
                result = _holdout(scores, model, holdout, level, samples, seed, se, calibrate, progress)
                tidy = result.predictions
            else:
                result = _family_group(scores, model, bench_set, n_train, methods, groups, jobs, scheduler, progress)
                if published:
                    result.add_published()
                tidy = result.errors
            if output_path is not None:
                save_csv(output_path, tidy, progress)
        for note in output.merge_warnings(scores.warnings, caught.messages()):
            progress.warn(output.shorten(note))
    if as_json:
        doc = {"data": scores.name, "protocol": protocol.value, "rows": result.to_records()}
        if protocol == Protocol.holdout_largest:
            doc["fit"] = result.fit_record()
        if protocol == Protocol.holdout_largest and result.info.get("calibration") is not None:
            cal = result.info["calibration"]
            doc["calibration"] = {"factors": cal.factors.to_dict(orient="records"), "info": cal.info}
        if protocol == Protocol.family_group:
            doc["convergence"] = result.convergence().reset_index().to_dict(orient="records")
            if result.has_rivals:
                doc["margins"] = result.margins_record()
            doc["notes"] = list(result.notes)
            if result.published is not None:
                doc["published"] = result.published.reset_index().rename(columns={"index": "method"}).to_dict(
                    orient="records")
        output.print_json(doc)
    else:
        typer.echo(result.format())


def _method_variants(methods: str | None) -> list[str]:
    """The variants of the latent-kK:VARIANT methods in --methods."""
    from latentscale.evaluation.crossval import parse_latent

    latent = [parse_latent(m) for m in parse_list(methods, "--methods") or []]
    return [variant for _, variant in filter(None, latent)]


def _holdout(scores, model, holdout, level, samples, seed, se, calibrate, progress):
    """The holdout-largest protocol with the command's model and options."""
    from latentscale.evaluation.holdout import LEVELS, evaluate_holdout, read_holdout_file

    names = read_holdout_file(holdout) if holdout is not None else None
    return evaluate_holdout(scores, holdout=names, k=model.k, anchors=model.anchors,
                            levels=parse_levels(level, LEVELS),
                            fit_options={key: v for key, v in model.get_params().items() if key not in ("k", "anchors")},
                            predict_options={"n_samples": samples, "seed": seed, "se": se.value},
                            calibrate=calibrate, progress=progress)


def _family_group(scores, model, bench_set, n_train, methods, groups, jobs, scheduler, progress):
    """The family-group cross-validation with the command's options."""
    from latentscale.evaluation.crossval import family_group_cv
    from latentscale.model.variants import DEFAULTS  # the variant options

    return family_group_cv(scores, benchmarks=bench_set, n_train=n_train, methods=parse_list(methods, "--methods"),
                           groups=groups, n_jobs=jobs, scheduler=scheduler, progress=progress,
                           model_options={key: v for key, v in model.get_params().items() if key in DEFAULTS})
