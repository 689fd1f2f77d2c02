"""The ``latentscale`` command: fit, select, simulate, data, datasets, show.

Results go to stdout (a readable report, or one JSON document with ``--json``); progress,
warnings and errors go to stderr. Exit codes: 0 success, 1 unexpected error, 2 bad input
(usage, data, options, files).
"""

from __future__ import annotations

import traceback
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from latentscale.cli import output

EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
FILE_PANEL = "Columns of a CSV / Parquet file"

app = typer.Typer(
    name="latentscale",
    help=(
        "Latent-variable scaling laws for LLM families and benchmarks "
        "(Cai, Cui, Maia Polo et al., arXiv:2512.06553).\n\n"
        "Exit codes: 0 success, 1 unexpected error, 2 bad input (usage, data, options, files)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class BadInput(Exception):
    """A problem with what the user gave (exit code 2)."""


@contextmanager
def reporting(verbose: bool = False, bad_input: tuple[type[BaseException], ...] = (ValueError, OSError)):
    """Turn exceptions into one ``error: ...`` line and an exit code: 2 for ``bad_input``, else 1."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        output.error("interrupted")
        raise typer.Exit(130)
    except (BadInput, *bad_input) as e:
        output.error(_message(e))
        raise typer.Exit(EXIT_BAD_INPUT)
    except Exception as e:
        output.error(f"unexpected {type(e).__name__}: {e}")
        if verbose:
            traceback.print_exc()
        else:
            output.error("this is a bug or an unsupported case; rerun with --verbose for the traceback")
        raise typer.Exit(EXIT_ERROR)


def _message(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError) and e.filename:
        return f"no such file: {e.filename}"
    if isinstance(e, OSError) and e.filename:
        return f"{e.strerror or e}: {e.filename}"
    return str(e) or type(e).__name__


# ---- option parsing --------------------------------------------------------------------
def parse_list(text: str | None, option: str) -> list[str] | None:
    """'a,b, c' -> ['a', 'b', 'c']."""
    if text is None:
        return None
    items = [s.strip() for s in text.split(",")]
    if not all(items):
        raise BadInput(f"bad {option} {text!r}: expected names separated by commas, e.g. a,b,c")
    return items


def parse_clip(text: str | None, no_clip: bool) -> tuple[float, float] | None:
    """The clip interval: default (0.001, 0.999), ``LOW,HIGH``, or None with --no-clip."""
    if no_clip:
        if text is not None:
            raise BadInput("give either --clip or --no-clip, not both")
        return None
    if text is None:
        return (0.001, 0.999)
    try:
        low, high = (float(s) for s in text.split(","))
    except ValueError:
        low = high = float("nan")
    if not (0.0 < low < high < 1.0):
        raise BadInput(f"bad --clip {text!r}: expected LOW,HIGH with 0 < LOW < HIGH < 1, e.g. 0.001,0.999")
    return (low, high)


def parse_floors(items: list[str] | None) -> dict[str, float] | None:
    """['b1=0', 'b2=0.25'] -> {'b1': 0.0, 'b2': 0.25}."""
    if not items:
        return None
    floors = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            c = float(value)
        except ValueError:
            c = float("nan")
        if not sep or not name.strip() or not (0.0 <= c < 1.0):
            raise BadInput(f"bad --floor {item!r}: expected NAME=VALUE with 0 <= VALUE < 1, e.g. --floor gpqa=0.25")
        floors[name.strip()] = c
    return floors


# ---- options shared by fit and data ------------------------------------------------------
DataArg = Annotated[str, typer.Argument(
    metavar="DATA", help="A registered dataset name (see `latentscale datasets`) or a CSV / Parquet file.",
    show_default=False)]
FloorOpt = Annotated[Optional[list[str]], typer.Option(
    "--floor", metavar="NAME=VALUE",
    help="Random-guess floor of a benchmark (repeat for several); overrides the known ones.")]
ModelCol = Annotated[Optional[str], typer.Option(
    "--model-col", rich_help_panel=FILE_PANEL, help="File column with the unique model name (default: model).", show_default=False)]
FamilyCol = Annotated[Optional[str], typer.Option(
    "--family-col", rich_help_panel=FILE_PANEL, help="File column with the family (default: family).", show_default=False)]
GroupCol = Annotated[Optional[str], typer.Option(
    "--group-col", rich_help_panel=FILE_PANEL, help="File column with the group, for held-out evaluation (default: the family).",
    show_default=False)]
SizeCol = Annotated[Optional[str], typer.Option(
    "--size-col", rich_help_panel=FILE_PANEL, help="File column with parameters in billions (default: size).", show_default=False)]
TokensCol = Annotated[Optional[str], typer.Option(
    "--tokens-col", rich_help_panel=FILE_PANEL, help="File column with pre-training tokens in trillions (default: tokens).",
    show_default=False)]
BenchOpt = Annotated[Optional[str], typer.Option(
    "--benchmarks", rich_help_panel=FILE_PANEL, metavar="A,B,...",
    help="File columns holding benchmark scores (default: every other numeric column).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of a report.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show the traceback of an unexpected error.")]
FitVerboseOpt = Annotated[bool, typer.Option(
    "--verbose", "-v", help="Progress and warnings on stderr even with --json; tracebacks of unexpected errors.")]


def load_data(data: str, floor: list[str] | None, benchmarks: str | None, **columns: str | None):
    """Load a registered dataset or a file; ``columns`` (role -> file column) apply to files only."""
    from latentscale.data import list_datasets, load_dataset

    options = {role: col for role, col in columns.items() if col is not None}
    bench = parse_list(benchmarks, "--benchmarks")
    if bench is not None:
        options["benchmarks"] = bench
    if options and data in list_datasets():
        given = ", ".join("--benchmarks" if role == "benchmarks" else f"--{role}-col" for role in options)
        raise BadInput(f"{given} apply to CSV / Parquet files, not to the registered dataset {data!r}")
    floors = parse_floors(floor)
    if floors:
        options["floors"] = floors
    return load_dataset(data, **options)


# ---- commands ----------------------------------------------------------------------------
def _version(value: bool) -> None:
    if value:
        from latentscale import __version__

        typer.echo(f"latentscale {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Latent-variable scaling laws for LLM families and benchmarks."""


class Method(str, Enum):
    aghq = "aghq"
    laplace = "laplace"
    psga = "psga"


class HessianKind(str, Enum):
    laplace = "laplace"
    full = "full"


class CovKind(str, Enum):
    observed = "observed"
    opg = "opg"
    sandwich = "sandwich"


@app.command()
def fit(
    data: DataArg,
    k: Annotated[int, typer.Option("-k", "--skills", min=1, show_default=False,
                                   help="Number of latent skills K.")],
    anchors: Annotated[Optional[str], typer.Option(
        "--anchors", metavar="A,B,...",
        help="K anchor benchmarks, one per skill (anchor k loads only on skill k). Default: the first K benchmarks.",
        show_default=False)] = None,
    method: Annotated[Method, typer.Option(
        "--method", help="aghq: adaptive Gauss-Hermite marginal likelihood; laplace: one node per family "
                         "(faster, less accurate); psga: the paper's projected stochastic gradient ascent.")
    ] = Method.aghq,
    clip: Annotated[Optional[str], typer.Option(
        "--clip", metavar="LOW,HIGH", help="Clip scores into LOW,HIGH before the Beta density. Default 0.001,0.999.",
        show_default=False)] = None,
    no_clip: Annotated[bool, typer.Option("--no-clip", help="No clipping (exact 0 or 1 scores are then an error).")
                       ] = False,
    floor: FloorOpt = None,
    starts: Annotated[int, typer.Option("--starts", min=1, help="Number of starting points (aghq, laplace).")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the perturbed starts (and of psga's draws).")] = 0,
    points: Annotated[Optional[int], typer.Option(
        "--points", min=1, help="Quadrature nodes per skill dimension for aghq (default by K).", show_default=False)
    ] = None,
    grid: Annotated[str, typer.Option(
        "--grid", help="Quadrature grid of aghq: auto (product Gauss-Hermite up to K = 4, sparse beyond), product, "
                       "or sparse (Smolyak, degree 5: 49 nodes at K = 4 instead of 256; for very large data).")
    ] = "auto",
    hessian: Annotated[HessianKind, typer.Option(
        "--hessian", help="Hessian behind the standard errors (aghq, laplace): laplace: of the Laplace objective at "
                          "the optimum (seconds; B's SEs within a few % of full); full: of the adaptive-quadrature "
                          "objective itself (exact; about 30 s more for K = 4).")] = None,
    se: Annotated[CovKind, typer.Option(
        "--se", help="Standard errors in the summary: observed information, outer product of family scores (opg), "
                     "or the robust sandwich.")] = None,
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
    verbose: FitVerboseOpt = False,
) -> None:
    """Fit the model by marginal maximum likelihood and print its summary.

    Example: latentscale fit lvf-paper -k 4
    """
    from latentscale.fitting import LatentScalingModel
    from latentscale.model.design import build_design

    talk = verbose or not as_json
    with output.CapturedWarnings() as caught, output.Progress(enabled=talk) as progress:
        with reporting(verbose):
            if output_path is not None and output_path.is_dir():
                raise BadInput(f"--output {output_path} is a folder; give a file name such as fit.json")
            model = LatentScalingModel(
                k, parse_list(anchors, "--anchors"), method=method.value, clip=parse_clip(clip, no_clip),
                points=points, grid=grid, n_starts=starts, seed=seed,
                **({"method_options": {"hessian": (hessian or HessianKind.laplace).value}}
                   if method != Method.psga else {}),
            )
            scores = load_data(data, floor, benchmarks, model=model_col, family=family_col, group=group_col,
                               size=size_col, tokens=tokens_col)
            spec = model.spec_for(scores)  # anchors and K against the benchmarks
            build_design(scores, spec.benchmarks, spec.clip)  # rows with covariates; exact 0/1 without a clip
        shown = output.merge_warnings(scores.warnings, caught.messages())
        for note in shown:  # before the long part, so that they are read while it runs
            progress.warn(_short_note(note, data))
        progress(f"fitting K = {k} by {method.value} to {scores.n_models} models in {scores.n_families} "
                 f"families, {len(scores.benchmarks)} benchmarks (anchors: {', '.join(spec.anchors)})")
        from latentscale.data import DataError

        with reporting(verbose, bad_input=(DataError,)):
            result = model.fit(scores, progress=progress)
        notes = output.merge_warnings(scores.warnings, caught.messages())
        for note in notes[len(shown):]:
            progress.warn(_short_note(note, data))
        if not result.converged:
            progress.warn("the optimizer did not report convergence (see the gradient norm in the summary); "
                          "try more --starts")
    se_kind = (se or CovKind.observed).value
    if as_json:
        output.print_json({**result.to_dict(se=se_kind), "warnings": notes})
    else:
        typer.echo(result.summary(kind=se_kind))
    if output_path is not None:
        with reporting(verbose):
            saved = result.save(output_path)
        if talk:
            output.stderr().print(Text(f"saved the fit to {saved}"))


def _short_note(note: str, data: str) -> str:
    """A long warning cut short, with where to read all of it."""
    short = output.shorten(note)
    return short if short == note else f"{short} (full text: latentscale data {data})"


@app.command()
def data(
    data: DataArg,
    floor: FloorOpt = None,
    model_col: ModelCol = None,
    family_col: FamilyCol = None,
    group_col: GroupCol = None,
    size_col: SizeCol = None,
    tokens_col: TokensCol = None,
    benchmarks: BenchOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Load and validate a data set; describe its rows, families, benchmarks, missingness and warnings.

    Exits with code 2 and a message naming the rows or columns at fault when the data cannot be used.
    """
    with output.CapturedWarnings() as caught, reporting(verbose):
        scores = load_data(data, floor, benchmarks, model=model_col, family=family_col, group=group_col,
                           size=size_col, tokens=tokens_col)
    desc = scores.describe()
    desc["warnings"] = output.merge_warnings(scores.warnings, caught.messages())
    usable = int((scores.frame["size"].notna() & scores.frame["tokens"].notna()).sum())
    if as_json:
        output.print_json({**desc, "usable_rows": usable})
    else:
        output.render_description(desc, usable)


@app.command()
def datasets(as_json: JsonOpt = False) -> None:
    """List the registered datasets.

    Their files are read from $LATENTSCALE_DATA_DIR/<source>/<file> when that is set, otherwise downloaded
    once from the authors' pinned repositories into $LATENTSCALE_CACHE_DIR (default ~/.cache/latentscale)
    and checked against their sha256.
    """
    from latentscale.data.registry import DATASETS

    entries = [{"name": e.name, "description": e.description, "files": [f"{s}/{f}" for s, f in e.files]}
               for e in DATASETS.values()]
    if as_json:
        output.print_json(entries)
    else:
        output.render_datasets(entries)


@app.command()
def show(
    fit_path: Annotated[Path, typer.Argument(metavar="FIT.json", help="A fit saved by `latentscale fit -o`.",
                                             show_default=False)],
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Print the summary of a saved fit."""
    from latentscale.results.fit_result import FitResult

    with reporting(verbose):
        try:
            result = FitResult.load(fit_path)
        except (KeyError, TypeError) as e:
            raise BadInput(f"{fit_path} is not a complete latentscale fit ({type(e).__name__}: {e})") from e
    if as_json:
        output.print_json(result.to_dict())
    else:
        typer.echo(result.summary())


def parse_ks(text: str) -> list[int]:
    """``1..8``, ``2,4,6`` or ``4`` → a sorted list of K."""
    try:
        if ".." in text:
            a, b = text.split("..", 1)
            ks = list(range(int(a), int(b) + 1))
        else:
            ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadInput(f"--k {text!r}: give a range such as 1..8 or a list such as 2,4,6") from None
    if not ks or min(ks) < 1:
        raise BadInput(f"--k {text!r}: K must be at least 1 (for example 1..8)")
    return sorted(set(ks))


@app.command()
def select(
    data: DataArg,
    k_range: Annotated[str, typer.Option("--k", metavar="A..B", help="The K to compare: a range 1..8 or a list 2,4,6.")
                       ] = "1..8",
    anchors: Annotated[Optional[str], typer.Option(
        "--anchors", metavar="A,B,...",
        help="Anchor ranking: the model with K skills anchors on its first K entries. "
             "Default: the benchmark columns in data order.", show_default=False)] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Local worker processes (-1: every core).")] = -1,
    scheduler: Annotated[Optional[str], typer.Option(
        "--scheduler", metavar="ADDRESS", help="Run the fits on this Dask scheduler (tcp://host:8786) instead.",
        show_default=False)] = None,
    output_path: Annotated[Optional[Path], typer.Option(
        "-o", "--output", metavar="TABLE.csv", help="Save the table as CSV.", show_default=False)] = None,
    plot_path: Annotated[Optional[Path], typer.Option(
        "--plot", metavar="FIG.png", help="Save a plot of AIC and BIC against K (png, pdf or svg).",
        show_default=False)] = None,
    floor: FloorOpt = None,
    benchmarks: BenchOpt = None,
    model_col: ModelCol = None,
    family_col: FamilyCol = None,
    group_col: GroupCol = None,
    size_col: SizeCol = None,
    tokens_col: TokensCol = None,
    as_json: JsonOpt = False,
    verbose: FitVerboseOpt = False,
) -> None:
    """Choose the number of latent skills: fit every K, tabulate log-likelihood, AIC and BIC.

    Example: latentscale select lvf-paper --k 1..8 --plot aic.png
    """
    from latentscale.evaluation.select import select_k
    from latentscale.results.fit_result import atomic_write_text

    talk = verbose or not as_json
    with output.CapturedWarnings() as caught, output.Progress(enabled=talk) as progress:
        with reporting(verbose):
            ks = parse_ks(k_range)
            scores = load_data(data, floor, benchmarks, model=model_col, family=family_col, group=group_col,
                               size=size_col, tokens=tokens_col)
            ranking = parse_list(anchors, "--anchors")
            for p in (output_path, plot_path):
                if p is not None and p.is_dir():
                    raise BadInput(f"{p} is a folder; give a file name")
            if max(ks) > len(scores.benchmarks):
                raise BadInput(f"--k {k_range}: K = {max(ks)} exceeds the {len(scores.benchmarks)} benchmarks")
        for note in output.merge_warnings(scores.warnings, caught.messages()):
            progress.warn(_short_note(note, data))
        where = f"Dask scheduler {scheduler}" if scheduler else f"{jobs if jobs > 0 else 'all'} local process(es)"
        progress(f"fitting K = {', '.join(map(str, ks))} on {where}")
        from latentscale.data import DataError

        with reporting(verbose, bad_input=(DataError, ValueError)):
            result = select_k(scores, ks, anchors=ranking, n_jobs=jobs, scheduler=scheduler, progress=progress)
    if as_json:
        output.print_json({"data": scores.name, "rows": result.to_records(),
                           "best_aic": result.best_aic, "best_bic": result.best_bic})
    else:
        typer.echo(result.format())
    with reporting(verbose):
        if output_path is not None:
            atomic_write_text(output_path, result.table.to_csv(index=False))
        if plot_path is not None:
            result.plot(plot_path)


@app.command()
def simulate(
    k: Annotated[int, typer.Option("-k", "--skills", min=1, help="True number of skills K.")] = 3,
    n_benchmarks: Annotated[int, typer.Option("-J", "--n-benchmarks", min=1, help="Number of benchmarks J.")] = 8,
    families: Annotated[int, typer.Option("--families", min=2, help="Families per data set.")] = 300,
    reps: Annotated[int, typer.Option("--reps", min=1, help="Replications.")] = 200,
    family_sizes: Annotated[str, typer.Option(
        "--family-sizes", help="'real' (the law of the real data) or a fixed number of models per family.")] = "real",
    missing: Annotated[str, typer.Option(
        "--missing", help="'real' (leaderboard-like blocks) or a fraction of cells missing at random.")] = "real",
    compare_k: Annotated[Optional[str], typer.Option(
        "--compare-k", metavar="A,B,...", help="Also fit these K and report how often AIC / BIC pick the true one.",
        show_default=False)] = None,
    level: Annotated[float, typer.Option("--level", min=0.5, max=0.999, help="Level of the Wald intervals.")] = 0.95,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the true parameters and of the design.")] = 0,
    redraw_design: Annotated[bool, typer.Option(
        "--redraw-design", help="Draw a new design (sizes, tokens, missing cells) in every replication.")] = False,
    clip: Annotated[Optional[str], typer.Option(
        "--clip", metavar="LOW,HIGH", help="Clip the simulated scores and the fits into LOW,HIGH (e.g. the reference "
        "analysis's 0.001,0.999). Default: scores as drawn, a correctly specified likelihood.",
        show_default=False)] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Local worker processes (-1: every core).")] = -1,
    scheduler: Annotated[Optional[str], typer.Option(
        "--scheduler", metavar="ADDRESS", help="Run the replications on this Dask scheduler instead.",
        show_default=False)] = None,
    output_path: Annotated[Optional[Path], typer.Option(
        "-o", "--output", metavar="PARAMS.csv", help="Save bias, RMSE, SE and coverage per parameter as CSV.",
        show_default=False)] = None,
    plot_path: Annotated[Optional[Path], typer.Option(
        "--plot", metavar="FIG.png", help="Save a plot of coverage and RMSE by parameter block.",
        show_default=False)] = None,
    as_json: JsonOpt = False,
    verbose: FitVerboseOpt = False,
) -> None:
    """Simulation study: draw data from the model, refit, report bias, RMSE, interval coverage and AIC's K.

    Example: latentscale simulate -k 3 -J 8 --families 300 --reps 200 --compare-k 2,3,4
    """
    from latentscale.evaluation.simstudy import StudyConfig, simulation_study
    from latentscale.results.fit_result import atomic_write_text

    talk = verbose or not as_json
    with output.Progress(enabled=talk) as progress:
        with reporting(verbose):
            sizes = _real_or_number(family_sizes, "--family-sizes", int)
            miss = _real_or_number(missing, "--missing", float)
            if isinstance(miss, float) and not 0 <= miss < 1:
                raise BadInput(f"--missing {missing}: give 'real' or a fraction in [0, 1)")
            others = tuple(parse_ks(compare_k)) if compare_k else ()
            if k > n_benchmarks or any(x > n_benchmarks for x in others):
                raise BadInput(f"K must not exceed the {n_benchmarks} benchmarks (-k {k}, --compare-k {compare_k})")
            for p in (output_path, plot_path):
                if p is not None and p.is_dir():
                    raise BadInput(f"{p} is a folder; give a file name")
            config = StudyConfig(k=k, n_benchmarks=n_benchmarks, n_families=families, family_sizes=sizes,
                                 missing=miss, level=level, compare_k=others, param_seed=seed, design_seed=seed,
                                 fixed_design=not redraw_design,
                                 clip=None if clip is None else parse_clip(clip, False))
        where = f"Dask scheduler {scheduler}" if scheduler else f"{jobs if jobs > 0 else 'all'} local process(es)"
        progress(f"{reps} replications of K = {k}, J = {n_benchmarks}, {families} families on {where}")
        with reporting(verbose):
            result = simulation_study(config, reps, n_jobs=jobs, scheduler=scheduler, progress=progress)
    if as_json:
        output.print_json(result.to_dict())
    else:
        typer.echo(result.summary())
    with reporting(verbose):
        if output_path is not None:
            atomic_write_text(output_path, result.by_parameter().to_csv())
        if plot_path is not None:
            result.plot(plot_path)


def _real_or_number(text: str, option: str, kind: type):
    if text == "real":
        return "real"
    try:
        return kind(text)
    except ValueError:
        raise BadInput(f"{option} {text!r}: give 'real' or a number") from None


# ---- commands defined in their own modules (each registers itself on ``app``) ------------
# One import line per module; keep them here, at the end, after everything they import from this one.
from latentscale.cli import predict_cmd  # noqa: E402,F401
from latentscale.cli import report_cmd  # noqa: E402,F401


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
