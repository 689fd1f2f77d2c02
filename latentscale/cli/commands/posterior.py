"""``latentscale posterior``: a family's latent skills given its evaluated models, or two families compared."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from latentscale.cli import output
from latentscale.cli.commands.predict import NoParOpt, SamplesOpt, SeedOpt, check_samples
from latentscale.cli.common import (
    CovKind, FitArg, JsonOpt, QuietOpt, SeOpt, VerboseOpt, load_fit, parse_levels, reporting, talk_enabled,
)


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
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Posterior of a family's latent skills given its evaluated models; or compare two families.

    Example: latentscale posterior fit.json yi-1.5-chat --compare yi-1.5
    """
    from latentscale.prediction import compare_families, family_posterior

    talk = talk_enabled(as_json, quiet, verbose)
    with output.Progress(enabled=talk) as progress, reporting(verbose):
        check_samples(samples)
        parse_levels([level])
        fit = load_fit(fit_path)
        options = dict(n_samples=samples, seed=seed, parameter_uncertainty=not no_parameter_uncertainty, se=se.value)
        if compare is None:
            progress(f"posterior of {family}")
            post = family_posterior(fit, family, **options)
            table = post.summary(level)
            head = (f"posterior of the skills of {family} ({post.n_models} models, {post.n_obs} scores); "
                    f"mode, mean, sd at the estimate; {100 * level:g}% interval of the draws")
        else:
            progress(f"posteriors of {family} and {compare}")
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
