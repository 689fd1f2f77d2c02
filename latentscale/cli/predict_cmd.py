"""``latentscale predict`` / ``posterior`` / ``curve`` / ``evaluate``: predictions for new models,
family posteriors, scaling curves and held-out evaluation."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from latentscale.cli import output
from latentscale.cli.app import (
    BadInput,
    CovKind,
    DataArg,
    FamilyCol,
    FitVerboseOpt,
    FloorOpt,
    GroupCol,
    JsonOpt,
    ModelCol,
    SizeCol,
    TokensCol,
    app,
    load_data,
    parse_list,
    reporting,
)

FitArg = Annotated[Path, typer.Argument(metavar="FIT.json", help="A fit saved by `latentscale fit -o`.",
                                        show_default=False)]
LevelOpt = Annotated[Optional[list[float]], typer.Option(
    "--level", metavar="P", help="Interval level in (0, 1); repeat for several. Default 0.8 and 0.95.",
    show_default=False)]
SamplesOpt = Annotated[int, typer.Option("--samples", min=100, help="Monte Carlo draws per model.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the draws (same seed, same numbers).")]
NoParOpt = Annotated[bool, typer.Option(
    "--no-parameter-uncertainty",
    help="Condition on the estimate instead of integrating over its asymptotic covariance.")]
SeOpt = Annotated[CovKind, typer.Option(
    "--se", help="Covariance of the estimate behind the parameter draws: the sandwich (robust to a misspecified "
                 "model), observed information, or outer product of family scores (opg).")]
OutOpt = Annotated[Optional[Path], typer.Option("-o", "--output", metavar="OUT.csv", help="Save the table as CSV.",
                                                show_default=False)]


def load_fit(path: Path):
    """A saved fit, or a clear bad-input error."""
    from latentscale.results.fit_result import FitResult

    try:
        return FitResult.load(path)
    except (KeyError, TypeError) as e:
        raise BadInput(f"{path} is not a complete latentscale fit ({type(e).__name__}: {e})") from e


def read_table(path: Path):
    """A CSV or Parquet table (bad-input errors for a missing file or an unknown format)."""
    import pandas as pd

    if path.is_dir():
        raise BadInput(f"{path} is a folder; give a CSV or Parquet file")
    if not path.exists():
        raise BadInput(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".txt", ""):
        return pd.read_csv(path)
    raise BadInput(f"{path}: unknown table format {suffix!r}; give a .csv or .parquet file")


def check_output(*paths: Path | None) -> None:
    for p in paths:
        if p is not None and p.is_dir():
            raise BadInput(f"{p} is a folder; give a file name")


def _levels(levels: list[float] | None, default=(0.8, 0.95)) -> list[float]:
    levels = list(levels or default)
    for x in levels:
        if not 0.0 < x < 1.0:
            raise BadInput(f"--level {x:g}: a level is a probability strictly between 0 and 1, e.g. --level 0.9")
    return sorted(set(levels))


def _save_csv(path: Path, frame, talk: bool) -> None:
    from latentscale.results.fit_result import atomic_write_text

    saved = atomic_write_text(path, frame.to_csv(index=False))
    if talk:
        output.stderr().print(Text(f"saved {saved}"))


@app.command()
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
    samples: SamplesOpt = 4000,
    seed: SeedOpt = 0,
    no_parameter_uncertainty: NoParOpt = False,
    se: SeOpt = CovKind.sandwich,
    output_path: OutOpt = None,
    as_json: JsonOpt = False,
    verbose: FitVerboseOpt = False,
) -> None:
    """Predict every benchmark score of unevaluated models: mean, median and intervals.

    One row per model, benchmark and level: model, family, benchmark, mean, median, level, lower, upper
    (interval for an observed score), expected_lower, expected_upper (for the expected score) and new_family.

    Example: latentscale predict fit.json --models new.csv --level 0.8 --level 0.95 -o pred.csv
    """
    from latentscale.data import DataError
    from latentscale.prediction import predict as predict_models

    talk = verbose or not as_json
    with output.CapturedWarnings() as caught, output.Progress(enabled=talk) as progress:
        with reporting(verbose, bad_input=(DataError, ValueError, KeyError, OSError)):
            check_output(output_path)
            levels = _levels(level)
            fit = load_fit(fit_path)
            new = read_table(models)
            extra = read_table(rows) if rows is not None else None
            progress(f"predicting {len(new)} models ({samples} draws each, "
                     f"{'without' if no_parameter_uncertainty else 'with'} parameter uncertainty)")
            table = predict_models(fit, new, levels, rows=extra, n_samples=samples, seed=seed,
                                   parameter_uncertainty=not no_parameter_uncertainty, se=se.value)
        for note in caught.messages():
            progress.warn(output.shorten(note))
    if as_json:
        output.print_json({"fit": str(fit_path), "rows": table.to_dict(orient="records"),
                           "warnings": caught.messages()})
    else:
        _print_predictions(table)
    if output_path is not None:
        with reporting(verbose):
            _save_csv(output_path, table, talk)


def _print_predictions(table) -> None:
    shown = table.copy()
    for col in ("mean", "median", "lower", "upper", "expected_lower", "expected_upper"):
        shown[col] = shown[col].map(lambda x: f"{x:.3f}")
    shown["level"] = shown["level"].map(lambda x: f"{100 * x:g}%")
    typer.echo(shown.to_string(index=False))


@app.command()
def posterior(
    fit_path: FitArg,
    family: Annotated[str, typer.Argument(metavar="FAMILY", help="A family of the fit.", show_default=False)],
    compare: Annotated[Optional[str], typer.Option(
        "--compare", metavar="OTHER", help="Compare with another family: posterior of FAMILY − OTHER per skill.",
        show_default=False)] = None,
    level: Annotated[float, typer.Option("--level", help="Level of the intervals.")] = 0.95,
    samples: SamplesOpt = 4000,
    seed: SeedOpt = 0,
    no_parameter_uncertainty: NoParOpt = False,
    se: SeOpt = CovKind.sandwich,
    as_json: JsonOpt = False,
    verbose: FitVerboseOpt = False,
) -> None:
    """Posterior of a family's latent skills given its evaluated models; or compare two families.

    Example: latentscale posterior fit.json yi-1.5-chat --compare yi-1.5
    """
    from latentscale.prediction import compare_families, family_posterior

    with reporting(verbose, bad_input=(ValueError, KeyError, OSError)):
        _levels([level])
        fit = load_fit(fit_path)
        options = dict(n_samples=samples, seed=seed, parameter_uncertainty=not no_parameter_uncertainty,
                       se=se.value)
        if compare is None:
            post = family_posterior(fit, family, **options)
            table = post.summary(level)
            head = (f"posterior of the skills of {family} ({post.n_models} models, {post.n_obs} scores); "
                    f"mode, mean, sd at the estimate; {100 * level:g}% interval of the draws")
        else:
            table = compare_families(fit, family, compare, level=level, **options)
            head = f"{family} − {compare}, skill by skill"
    if as_json:
        doc = {"family": family, "level": level, "skills": table.reset_index().to_dict(orient="records")}
        if compare is not None:
            doc["compare"] = compare
        output.print_json(doc)
    else:
        typer.echo(head)
        typer.echo(table.to_string(float_format=lambda x: f"{x:.3f}"))


@app.command()
def curve(
    fit_path: FitArg,
    family: Annotated[str, typer.Option("--family", metavar="NAME",
                                        help="Family to draw (its posterior; an unseen name uses the prior).",
                                        show_default=False)],
    tokens: Annotated[Optional[float], typer.Option(
        "--tokens", metavar="T", help="Hold tokens (trillions) fixed. Default: the family's median.",
        show_default=False)] = None,
    tokens_per_param: Annotated[Optional[float], typer.Option(
        "--tokens-per-param", metavar="R", help="Scale tokens with size, R tokens per parameter (20: Chinchilla).",
        show_default=False)] = None,
    points: Annotated[int, typer.Option("--points", min=2, help="Number of sizes (log-spaced over the data).")] = 25,
    level: LevelOpt = None,
    samples: SamplesOpt = 2000,
    seed: SeedOpt = 0,
    se: SeOpt = CovKind.sandwich,
    output_path: OutOpt = None,
    plot_path: Annotated[Optional[Path], typer.Option(
        "--plot", metavar="FIG.png", help="Save the curves with their bands (png, pdf or svg).", show_default=False)
    ] = None,
    expected: Annotated[bool, typer.Option("--expected", help="Bands for the expected score, not an observed one.")
                        ] = False,
    as_json: JsonOpt = False,
    verbose: FitVerboseOpt = False,
) -> None:
    """Scaling curves: predicted score of every benchmark against size for one family, with bands.

    Example: latentscale curve fit.json --family qwen2 --tokens-per-param 20 --plot qwen2.png
    """
    from latentscale.prediction import plot_scaling_curve, scaling_curve

    talk = verbose or not as_json
    with output.Progress(enabled=talk) as progress, reporting(verbose, bad_input=(ValueError, KeyError, OSError)):
        check_output(output_path, plot_path)
        levels = _levels(level, (0.5, 0.95))
        fit = load_fit(fit_path)
        progress(f"predicting {family} at {points} sizes")
        table = scaling_curve(fit, family, n_points=points, tokens=tokens, tokens_per_param=tokens_per_param,
                              levels=levels, n_samples=samples, seed=seed, se=se.value)
    if as_json:
        output.print_json({"family": family, "rows": table.to_dict(orient="records")})
    elif output_path is None and plot_path is None:
        typer.echo(table[table["level"] == max(levels)][["benchmark", "size", "tokens", "mean", "lower", "upper",
                                                         "extrapolated"]].to_string(index=False))
    with reporting(verbose):
        if output_path is not None:
            _save_csv(output_path, table, talk)
        if plot_path is not None:
            plot_scaling_curve(fit, table, plot_path, expected=expected)
            if talk:
                output.stderr().print(Text(f"saved {plot_path}"))


class Protocol(str, Enum):
    holdout_largest = "holdout-largest"
    family_group = "family-group"


EVAL_PANEL = "Protocol family-group"


@app.command()
def evaluate(
    data: DataArg,
    protocol: Annotated[Protocol, typer.Option(
        "--protocol", help="holdout-largest: hold out each family's largest model, refit, check the prediction "
                           "intervals; family-group: leave-family-group-out cross-validation against baselines.")
    ] = Protocol.holdout_largest,
    k: Annotated[int, typer.Option("-k", "--skills", min=1, help="Number of latent skills (holdout-largest).")] = 4,
    anchors: Annotated[Optional[str], typer.Option(
        "--anchors", metavar="A,B,...", help="Anchor benchmarks (holdout-largest; default: the first K).",
        show_default=False)] = None,
    holdout: Annotated[Optional[Path], typer.Option(
        "--holdout", metavar="FILE", help="Hold out exactly these models (one name per line) instead of each "
                                          "family's largest (holdout-largest).", show_default=False)] = None,
    level: LevelOpt = None,
    samples: SamplesOpt = 4000,
    seed: SeedOpt = 0,
    se: SeOpt = CovKind.sandwich,
    bench_set: Annotated[str, typer.Option(
        "--benchmarks", metavar="v1|v2|all", rich_help_panel=EVAL_PANEL,
        help="Benchmark set (family-group).")] = "all",
    n_train: Annotated[int, typer.Option("--n-train", min=1, rich_help_panel=EVAL_PANEL,
                                         help="Smallest models per held-out family kept in training.")] = 1,
    methods: Annotated[Optional[str], typer.Option(
        "--methods", metavar="M,M,...", rich_help_panel=EVAL_PANEL, help="Methods to compare (default: all).",
        show_default=False)] = None,
    groups: Annotated[Optional[Path], typer.Option(
        "--groups", metavar="FILE", rich_help_panel=EVAL_PANEL,
        help="JSON file of held-out groups (default: every group of the data).", show_default=False)] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", rich_help_panel=EVAL_PANEL,
                                      help="Local worker processes (-1: every core).")] = 1,
    scheduler: Annotated[Optional[str], typer.Option(
        "--scheduler", metavar="ADDRESS", rich_help_panel=EVAL_PANEL, help="Run the folds on this Dask scheduler.",
        show_default=False)] = None,
    output_path: Annotated[Optional[Path], typer.Option(
        "-o", "--output", metavar="OUT.csv",
        help="Save the tidy per-model results: predictions with actual scores (holdout-largest), absolute errors "
             "(family-group).", show_default=False)] = None,
    floor: FloorOpt = None,
    model_col: ModelCol = None,
    family_col: FamilyCol = None,
    group_col: GroupCol = None,
    size_col: SizeCol = None,
    tokens_col: TokensCol = None,
    as_json: JsonOpt = False,
    verbose: FitVerboseOpt = False,
) -> None:
    """Held-out evaluation: calibration of the prediction intervals, or cross-validation against baselines.

    Examples: latentscale evaluate lvf-paper --protocol holdout-largest;
    latentscale evaluate sloth --protocol family-group --benchmarks v1 --n-train 2
    """
    from latentscale.data import DataError

    talk = verbose or not as_json
    with output.CapturedWarnings() as caught, output.Progress(enabled=talk) as progress:
        with reporting(verbose, bad_input=(DataError, ValueError, KeyError, OSError)):
            check_output(output_path)
            scores = load_data(data, floor, None, model=model_col, family=family_col, group=group_col,
                               size=size_col, tokens=tokens_col)
            if protocol == Protocol.holdout_largest:
                from latentscale.evaluation.holdout import LEVELS, evaluate_holdout, read_holdout_file

                names = read_holdout_file(holdout) if holdout is not None else None
                result = evaluate_holdout(scores, holdout=names, k=k, anchors=parse_list(anchors, "--anchors"),
                                          levels=_levels(level, LEVELS),
                                          predict_options={"n_samples": samples, "seed": seed, "se": se.value},
                                          progress=progress)
                tidy = result.predictions
            else:
                from latentscale.evaluation.crossval import family_group_cv

                result = family_group_cv(scores, benchmarks=bench_set, n_train=n_train,
                                         methods=parse_list(methods, "--methods"), groups=groups, n_jobs=jobs,
                                         scheduler=scheduler, progress=progress)
                tidy = result.errors
        for note in output.merge_warnings(scores.warnings, caught.messages()):
            progress.warn(output.shorten(note))
    if as_json:
        output.print_json({"data": scores.name, "protocol": protocol.value, "rows": result.to_records()})
    else:
        typer.echo(result.format())
    if output_path is not None:
        with reporting(verbose):
            _save_csv(output_path, tidy, talk)
