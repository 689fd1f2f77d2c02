"""``latentscale data`` (validate and describe a data set) and ``latentscale datasets`` (the registry)."""

from __future__ import annotations

from latentscale.cli import output
from latentscale.cli.common import (
    BenchOpt, DataArg, FamilyCol, FloorOpt, GroupCol, JsonOpt, ModelCol, SizeCol, TokensCol, VerboseOpt,
    file_columns, load_data, reporting,
)


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
        scores = load_data(data, floor, benchmarks, **file_columns(model_col, family_col, group_col, size_col,
                                                                  tokens_col))
    desc = scores.describe()
    desc["warnings"] = output.merge_warnings(scores.warnings, caught.messages())
    usable = int((scores.frame["size"].notna() & scores.frame["tokens"].notna()).sum())
    if as_json:
        output.print_json({**desc, "usable_rows": usable})
    else:
        output.render_description(desc, usable)


def datasets(as_json: JsonOpt = False) -> None:
    """List the registered datasets.

    Shipped ones are read from the package itself (no network needed); the others from
    $LATENTSCALE_DATA_DIR/<source>/<file> when that is set, otherwise downloaded once from the authors'
    pinned repositories into $LATENTSCALE_CACHE_DIR (default ~/.cache/latentscale) and checked against
    their sha256.
    """
    from latentscale.data.registry import DATASETS

    entries = [{"name": e.name, "description": e.description, "files": [f"{s}/{f}" for s, f in e.files]}
               for e in DATASETS.values()]
    if as_json:
        output.print_json(entries)
    else:
        output.render_datasets(entries)
