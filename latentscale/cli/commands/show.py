"""``latentscale show``: the summary of a saved fit (no refit, nothing recomputed that the fit carries)."""

from __future__ import annotations

from typing import Annotated

import typer

from latentscale.cli import output
from latentscale.cli.common import CovKind, FitArg, JsonOpt, VerboseOpt, load_fit, reporting


def show(
    fit_path: FitArg,
    se: Annotated[CovKind, typer.Option("--se", help="Standard errors in the summary.")] = CovKind.observed,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Print the summary of a saved fit."""
    with reporting(verbose):
        result = load_fit(fit_path)
        if as_json:
            output.print_json(result.to_dict(se=se.value))
        else:
            typer.echo(result.summary(kind=se.value).as_text(), nl=False)
