"""``latentscale confint``: confidence intervals of a saved fit's parameters, Wald or profile likelihood."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from latentscale.cli import output
from latentscale.cli.common import (
    BadInput, CovKind, FitArg, JsonOpt, QuietOpt, SeOpt, VerboseOpt, check_outputs, load_fit, parse_list, reporting,
    talk_enabled,
)


class IntervalMethod(str, Enum):
    profile = "profile"
    wald = "wald"


def confint(
    fit_path: FitArg,
    params: Annotated[Optional[str], typer.Option(
        "--params", "-p", metavar="NAME,...", help="Parameters or blocks, e.g. link_power or 'ceiling[mmlu]' "
                                                    "(default: all; `latentscale show` lists them).",
        show_default=False)] = None,
    method: Annotated[IntervalMethod, typer.Option(
        "--method", help="profile: profile likelihood (refits with each parameter held; seconds per parameter); "
                         "wald: from the standard errors.")] = IntervalMethod.profile,
    level: Annotated[float, typer.Option("--level", help="Confidence level, in (0, 1).")] = 0.95,
    se: SeOpt = CovKind.observed,
    output_path: Annotated[Optional[Path], typer.Option(
        "-o", "--output", metavar="INTERVALS.csv", help="Also save the table as CSV.", show_default=False)] = None,
    plot_path: Annotated[Optional[Path], typer.Option(
        "--plot", metavar="FIG.png", help="Save the profiles (ζ against each parameter, profile and Wald intervals "
                                         "marked); profile method only.", show_default=False)] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Confidence intervals of a fit's parameters (R's confint): profile likelihood by default.

    A profile interval holds each parameter in turn and maximizes the likelihood over the others on the fit's rows; an end marked 'bound' is open.

    Example: latentscale confint fit.json --params link_power,ceiling
    """
    from latentscale.results.io import atomic_write_text

    talk = talk_enabled(as_json, quiet, verbose)
    with output.Progress(enabled=talk) as progress, reporting(verbose):
        if not 0 < level < 1:
            raise BadInput(f"--level {level:g}: give a probability between 0 and 1, e.g. 0.95")
        check_outputs([output_path, plot_path], [fit_path])
        if plot_path is not None and method is not IntervalMethod.profile:
            raise BadInput("--plot draws the likelihood profiles: use it with --method profile")
        fit = load_fit(fit_path)
        names = parse_list(params, "--params")
        if method is IntervalMethod.profile:
            from latentscale.results.profile import plot_profiles

            table, traces = fit.profile(names, level, progress=progress, with_traces=True)
            if plot_path is not None:
                plot_profiles(table, traces, level, plot_path)
        else:
            from latentscale.results.profile import resolve_parameters

            chosen = resolve_parameters(fit, names)
            if fit.hessian is None and se is not CovKind.opg:
                raise BadInput("this fit has no Hessian (fitted with hessian=None), so no Wald intervals; use "
                               "--method profile, or refit with a Hessian")
            table = fit.conf_int(1.0 - level, kind=se.value).loc[chosen]
            table.insert(0, "estimate", fit.params.loc[chosen])
        if output_path is not None:
            atomic_write_text(output_path, table.to_csv())
    if as_json:
        output.print_json({"method": method.value, "level": level,
                           "intervals": table.reset_index().to_dict(orient="records")})
        return
    penalized = "log_penalty" in fit.diagnostics
    head = (f"{100 * level:g}% profile-likelihood intervals ({fit.n_families} families, ℓ = {fit.log_likelihood:.3f}"
            + (f"; profiles of the penalized objective, {fit.diagnostics['penalized_log_likelihood']:.3f} at the optimum"
               if penalized else "") + ")"
            if method is IntervalMethod.profile else f"{100 * level:g}% Wald intervals ({se.value} covariance)")
    typer.echo(head)
    typer.echo(table.to_string(float_format=lambda x: f"{x:.4f}"))
    if method is IntervalMethod.profile:
        if (table[["lower_status", "upper_status"]] == "bound").any(axis=None):
            typer.echo("bound: the interval is open on that side (the profile stays above the threshold up to the "
                       "optimizer's box, whose value is shown)")
        if not table["converged"].all():
            typer.echo("warning: some profile fits did not converge (column converged); read those ends with care")
