"""The ``latentscale`` command: one verb per task, each in its own module under
:mod:`latentscale.cli.commands`, registered here (the command modules import only
:mod:`latentscale.cli.common` and :mod:`latentscale.cli.output`, never this module).

Results go to stdout (a readable report, or one JSON document with ``--json``); progress,
warnings and errors go to stderr. Exit codes: 0 success, 2 the user's mistake (usage, data,
options, files) with one ``error: ...`` line, 1 an internal failure (``--verbose`` shows the
traceback), 130 interrupted.
"""

from __future__ import annotations

import gc
import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from latentscale.cli.commands import allocate, calibrate, confint, curve, data, evaluate, fit, posterior, predict, report, select, show
from latentscale.cli.commands import design, simulate, update
from latentscale.cli.common import EXIT_BAD_INPUT
from latentscale.cli.output import error


#: click's usage-error class as typer ships it (typer vendors click; ``typer.BadParameter`` derives from it).
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class _Group(TyperGroup):
    """Usage errors (an unknown option, a missing argument, a bad choice) as one ``error:`` line
    with a hint, exit code 2, instead of click's framed help text."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                              **extra)
        except UsageError as e:
            ctx = e.ctx
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else " (see `latentscale --help`)"
            error(f"{e.format_message()}{where}")
            if standalone_mode:
                sys.exit(EXIT_BAD_INPUT)
            raise
        except typer.Abort:
            error("interrupted")
            if standalone_mode:
                sys.exit(130)
            raise
        if standalone_mode and isinstance(rv, int) and rv != 0:
            sys.exit(rv)
        return rv


app = typer.Typer(
    name="latentscale",
    cls=_Group,
    help=(
        "Latent-variable scaling laws for LLM families and benchmarks "
        "(Cai, Cui, Maia Polo et al., arXiv:2512.06553).\n\n"
        "Exit codes: 0 success, 1 internal error, 2 bad input (usage, data, options, files), 130 interrupted."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
    import os

    from latentscale.config import cache_from_environment

    # The command's own process caches compiled code on disk, and so do the worker processes of its
    # sweeps (select, evaluate, simulate), which read the setting from the environment: a program one
    # worker compiled is loaded, not compiled again, by the others.
    if cache_from_environment(default=True) is not None:
        os.environ.setdefault("LATENTSCALE_JAX_CACHE", "1")


for module, name in ((fit, "fit"), (select, "select"), (simulate, "simulate"), (predict, "predict"),
                     (posterior, "posterior"), (curve, "curve"), (evaluate, "evaluate"), (allocate, "allocate"),
                     (report, "report"), (data, "data"), (data, "datasets"), (show, "show"), (update, "update"),
                     (confint, "confint"), (calibrate, "calibrate")):
    app.command(name)(getattr(module, name))
app.add_typer(design.app, name="design")


def main() -> None:
    """Console-script entry point. What the imports built (JAX's and pandas' modules among them) is
    frozen out of the garbage collector before the command, and everything alive after it: the
    collections over those objects, the interpreter's last ones at exit included, took 0.1–0.2 s
    of every command."""
    gc.freeze()  # what the imports built stays: later collections need not scan it
    try:
        app()
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
