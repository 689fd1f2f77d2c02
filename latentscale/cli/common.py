"""What every command shares: error mapping, option types and parsers, input and output checks.

Exit codes: 0 success; 2 the user's mistake (a bad option, data or file: :class:`~latentscale.errors.InputError`,
a missing or unreadable input, an output that cannot be written), with one ``error: ...`` line;
1 an internal failure (a bug or an unsupported case), with one line and the traceback under
``--verbose``; 130 interrupted.
"""

from __future__ import annotations

import os
import re
import traceback
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Iterable, Optional

import typer

from latentscale.cli import output
from latentscale.errors import InputError

EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
FILE_PANEL = "Columns of a CSV / Parquet file"


class BadInput(InputError):
    """A problem with what the user gave on the command line (exit code 2)."""


@contextmanager
def reporting(verbose: bool = False, interrupted: str = "interrupted"):
    """Turn exceptions into one ``error: ...`` line and an exit code (module docstring)."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        output.error(interrupted)
        raise typer.Exit(EXIT_INTERRUPTED)
    except InputError as e:
        output.error(str(e) or type(e).__name__)
        raise typer.Exit(EXIT_BAD_INPUT)
    except OSError as e:  # the user's files: missing, unreadable, unwritable
        output.error(os_message(e))
        raise typer.Exit(EXIT_BAD_INPUT)
    except Exception as e:
        output.error(f"internal error ({type(e).__name__}): {e}")
        if verbose:
            traceback.print_exc()
        else:
            output.error("this is a bug or an unsupported case; rerun with --verbose for the traceback")
        raise typer.Exit(EXIT_ERROR)


def os_message(e: OSError) -> str:
    if isinstance(e, FileNotFoundError) and e.filename:
        return f"no such file: {e.filename}"
    if isinstance(e, IsADirectoryError) and e.filename:
        return f"{e.filename} is a folder; give a file"
    if e.filename:
        return f"{e.strerror or e}: {e.filename}"
    return str(e) or type(e).__name__


# ---- parsing ----------------------------------------------------------------------------------
def parse_list(text: str | None, option: str) -> list[str] | None:
    """'a,b, c' -> ['a', 'b', 'c']; commas inside brackets stay (parameter names such as
    'B[log_size,math]')."""
    if text is None:
        return None
    items = [s.strip() for s in re.split(r",(?![^\[]*\])", text)]
    if not all(items):
        raise BadInput(f"bad {option} {text!r}: expected names separated by commas, e.g. a,b,c")
    return items


def parse_pair(text: str, option: str, example: str) -> tuple[float, float]:
    try:
        low, high = (float(s) for s in text.split(","))
    except ValueError:
        raise BadInput(f"bad {option} {text!r}: expected LOW,HIGH, e.g. {option} {example}") from None
    return low, high


def parse_clip(text: str | None, no_clip: bool) -> tuple[float, float] | None:
    """The clip interval: default (0.001, 0.999), ``LOW,HIGH``, or None with --no-clip."""
    from latentscale.model.spec import DEFAULT_CLIP

    if no_clip:
        if text is not None:
            raise BadInput("give either --clip or --no-clip, not both")
        return None
    if text is None:
        return DEFAULT_CLIP
    low, high = parse_pair(text, "--clip", "0.001,0.999")
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


def parse_ks(text: str) -> list[int]:
    """``1..8``, ``2,4,6`` or ``4`` → a sorted list of K."""
    try:
        if ".." in text:
            lo, hi = (int(v) for v in text.split("..", 1))
            ks = None
        else:
            ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadInput(f"--k {text!r}: give a range such as 1..8 or a list such as 2,4,6") from None
    if ks is None:
        if hi < lo:
            raise BadInput(f"--k {text!r}: the range is reversed; give LOW..HIGH, e.g. {hi}..{lo}")
        ks = list(range(lo, hi + 1))
    if not ks or min(ks) < 1:
        raise BadInput(f"--k {text!r}: K must be at least 1 (for example 1..8)")
    return sorted(set(ks))


def parse_levels(levels: list[float] | None, default=(0.8, 0.95)) -> list[float]:
    levels = list(levels or default)
    for x in levels:
        if not 0.0 < x < 1.0:
            raise BadInput(f"--level {x:g}: a level is a probability strictly between 0 and 1, e.g. --level 0.9")
    return sorted(set(levels))


# ---- inputs and outputs --------------------------------------------------------------------
def variant_columns(*variants: str | None) -> tuple[str, ...]:
    """The family covariate columns (``family:COLUMN`` terms) the given variant names use."""
    from latentscale.model.variants import parse_variant

    out: list[str] = []
    for v in variants:
        if v:
            out += [c for c in parse_variant(v).get("family_covariates", ()) if c not in out]
    return tuple(out)


def load_data(data: str, floor: list[str] | None, benchmarks: str | None, attributes: tuple[str, ...] = (),
              **columns: str | None):
    """Load a registered dataset or a file; ``columns`` (role -> file column) apply to files only;
    ``attributes``: family attribute columns a model uses (kept from a file; a registered
    dataset must carry them)."""
    from latentscale.data import list_datasets, load_dataset

    options = {role: col for role, col in columns.items() if col is not None}
    bench = parse_list(benchmarks, "--benchmarks")
    if bench is not None:
        options["benchmarks"] = bench
    registered = data in list_datasets()
    if options and registered:
        given = ", ".join("--benchmarks" if role == "benchmarks" else f"--{role}-col" for role in options)
        raise BadInput(f"{given} apply to CSV / Parquet files, not to the registered dataset {data!r}")
    floors = parse_floors(floor)
    if floors:
        options["floors"] = floors
    if attributes and not registered:
        options["attributes"] = list(attributes)
    scores = load_dataset(data, **options)
    absent = [a for a in attributes if a not in scores.attributes]
    if absent:
        raise BadInput(f"family:{absent[0]}: the dataset {data!r} has no family attribute {absent[0]!r} (its family "
                       f"attributes: {', '.join(scores.attributes) or 'none'})")
    if floors:
        unknown = [b for b in floors if b not in scores.benchmarks]
        if unknown:
            raise BadInput(f"--floor given for {', '.join(map(repr, unknown))}, which is not a benchmark of {data}; "
                           f"its benchmarks are {', '.join(scores.benchmarks)}")
    return scores


def load_fit(path: Path):
    """A saved fit, checked on load (errors name the file and the field)."""
    from latentscale.results.fit_result import FitResult

    return FitResult.load(path)


def load_calibration(path: Path | None, fit, levels):
    """``--calibration``: the calibration at ``path`` checked to have ``levels`` (None without a path), with a
    warning when it was made for another fit."""
    if path is None:
        return None
    import warnings

    from latentscale.evaluation.calibration import for_fit

    cal, why = for_fit(path, fit, levels)
    if why is not None:
        warnings.warn(why, UserWarning, stacklevel=2)
    return cal


def read_table(path: Path, what: str = "table"):
    """A CSV or Parquet table; errors name the file and say what is wrong."""
    import pandas as pd

    from latentscale.data.loaders import read_table as read_any

    if path.is_dir():
        raise BadInput(f"{path} is a folder; give a CSV or Parquet file")
    if not path.exists():
        raise BadInput(f"no such file: {path}")
    frame = read_any(path)
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        raise BadInput(f"{path}: the {what} has no rows; give at least one")
    return frame


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(outputs: Iterable[Path | None], inputs: Iterable[Path | str | None] = ()) -> None:
    """Before any work: every output can be written, none is an input, none repeats another."""
    from latentscale.results.io import check_writable

    outs = [Path(p) for p in outputs if p is not None]
    ins = [Path(p) for p in inputs if p is not None and Path(p).exists()]
    for i, out in enumerate(outs):
        for inp in ins:
            if same_file(out, inp) or out.resolve() == inp.resolve():
                raise BadInput(f"the output {out} is also an input; writing it would destroy the input. "
                               "Give another output file name")
        for other in outs[:i]:
            if out.resolve() == other.resolve():
                raise BadInput(f"{out} is given as two different outputs; give each its own file name")
        check_writable(out)


# ---- shared option types -------------------------------------------------------------------
class CovKind(str, Enum):
    observed = "observed"
    opg = "opg"
    sandwich = "sandwich"


class Method(str, Enum):
    aghq = "aghq"
    laplace = "laplace"
    psga = "psga"


class HessianKind(str, Enum):
    laplace = "laplace"
    full = "full"


class Grid(str, Enum):
    auto = "auto"
    product = "product"
    sparse = "sparse"


DataArg = Annotated[str, typer.Argument(
    metavar="DATA", help="A registered dataset name (see `latentscale datasets`) or a CSV / Parquet file.",
    show_default=False)]
FitArg = Annotated[Path, typer.Argument(metavar="FIT.json", help="A fit saved by `latentscale fit -o`.",
                                        show_default=False)]
FloorOpt = Annotated[Optional[list[str]], typer.Option(
    "--floor", metavar="NAME=VALUE",
    help="Random-guess floor of a benchmark (repeat for several); overrides the known ones.")]
ModelCol = Annotated[Optional[str], typer.Option(
    "--model-col", rich_help_panel=FILE_PANEL, help="File column with the unique model name (default: model).",
    show_default=False)]
FamilyCol = Annotated[Optional[str], typer.Option(
    "--family-col", rich_help_panel=FILE_PANEL, help="File column with the family (default: family).",
    show_default=False)]
GroupCol = Annotated[Optional[str], typer.Option(
    "--group-col", rich_help_panel=FILE_PANEL,
    help="File column with the group, for held-out evaluation (default: the family).", show_default=False)]
SizeCol = Annotated[Optional[str], typer.Option(
    "--size-col", rich_help_panel=FILE_PANEL, help="File column with parameters in billions (default: size).",
    show_default=False)]
TokensCol = Annotated[Optional[str], typer.Option(
    "--tokens-col", rich_help_panel=FILE_PANEL,
    help="File column with pre-training tokens in trillions (default: tokens).", show_default=False)]
BenchOpt = Annotated[Optional[str], typer.Option(
    "--benchmarks", rich_help_panel=FILE_PANEL, metavar="A,B,...",
    help="File columns holding benchmark scores (default: every other numeric column).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of a report.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on stderr (errors still show).")]
VerboseOpt = Annotated[bool, typer.Option(
    "--verbose", "-v", help="Progress and warnings on stderr even with --json; tracebacks of internal errors.")]
SeOpt = Annotated[CovKind, typer.Option(
    "--se", help="Covariance of the estimate behind the parameter draws: the sandwich (robust to a misspecified "
                 "model), observed information, or outer product of family scores (opg).")]
LogitClipOpt = Annotated[Optional[float], typer.Option(
    "--logit-clip", metavar="L", help="Clamp the linear predictor to [-L, L] before the sigmoid, as the reference "
    "code behind the paper's figures does (4.5). Default: no clamp (the model of the paper's text).",
    show_default=False)]
VariantOpt = Annotated[Optional[str], typer.Option(
    "--variant", metavar="TERM+TERM", show_default=False,
    help="Model variant: plain (default), or terms joined by +: residual (a family × benchmark residual effect), "
         "slope (with it, a family × benchmark random slope in size), power (a fitted link power per benchmark; power:S penalizes each log power by N(0, S²)), "
         "ceiling (a fitted ceiling per benchmark), hetero (precision depending on size and tokens), "
         "size-tokens or flops (covariate sets), clamp (the reference code's logit clamp), family:COLUMN (a column "
         "constant within a family, e.g. Instruct, in the mean of the family effect). "
         "Example: --variant residual+ceiling")]
PaperOpt = Annotated[bool, typer.Option(
    "--paper", help="The reference code's settings: logit clamp 4.5, exact BBH and MuSR floors, scores clipped to "
                    "0.001,0.999, anchors in the order math, ifeval, hellaswag, bbh, mmlu-pro, mmlu, arc, truthfulqa, "
                    "gsm8k, winogrande, gpqa, musr.")]


def file_columns(model_col, family_col, group_col, size_col, tokens_col) -> dict:
    return {"model": model_col, "family": family_col, "group": group_col, "size": size_col, "tokens": tokens_col}


def data_inputs(data: str) -> list[Path]:
    """The user's files among the inputs (a registered dataset name is not a file)."""
    p = Path(data)
    return [p] if p.exists() else []


def talk_enabled(as_json: bool, quiet: bool, verbose: bool) -> bool:
    """Progress on stderr: on by default, off with --quiet or --json (unless --verbose)."""
    return verbose or not (as_json or quiet)


def build_model(k: int, anchors: str | None, *, method: Method = Method.aghq, clip: str | None = None,
                no_clip: bool = False, logit_clip: float | None = None, paper: bool = False,
                floors: dict | None = None, points: int | None = None, grid: Grid | None = None,
                starts: int | None = None, seed: int = 0, hessian: HessianKind | None = None,
                variant: str | None = None):
    """The :class:`~latentscale.LatentScalingModel` of the command-line options (``--paper`` sets
    the reference code's settings; options given explicitly override them)."""
    from latentscale.fitting import PAPER_ANCHORS, PAPER_FLOORS, PAPER_SETTINGS, LatentScalingModel

    anchor_list = parse_list(anchors, "--anchors")
    if logit_clip is not None and not logit_clip > 0:
        raise BadInput(f"--logit-clip {logit_clip:g}: give a positive number, e.g. 4.5")
    from latentscale.model.variants import parse_variant

    options = dict(method=method.value, clip=parse_clip(clip, no_clip), points=points,
                   grid=None if grid is None else grid.value, seed=seed,
                   hessian=(hessian or HessianKind.laplace).value)
    if variant is not None:
        options.update(parse_variant(variant))
    if starts is not None:
        options["n_starts"] = starts
    if paper:
        if anchor_list is None:
            anchor_list = list(PAPER_ANCHORS[:k])
        options.setdefault("n_starts", PAPER_SETTINGS["n_starts"])
        options["logit_clip"] = PAPER_SETTINGS["logit_clip"] if logit_clip is None else logit_clip
        options["floors"] = {**PAPER_FLOORS, **(floors or {})}
    else:
        if logit_clip is not None or "logit_clip" not in options:
            options["logit_clip"] = logit_clip
        options["floors"] = floors
    return LatentScalingModel(k, anchor_list, **options)


def paper_data_floors(floor: list[str] | None, paper: bool) -> list[str] | None:
    """The --floor list with the reference code's exact floors added under --paper (explicit ones win)."""
    if not paper:
        return floor
    from latentscale.fitting import PAPER_FLOORS

    given = {item.rpartition("=")[0].strip() for item in (floor or [])}
    return [f"{b}={c}" for b, c in PAPER_FLOORS.items() if b not in given] + list(floor or [])
