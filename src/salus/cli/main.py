"""The `salus` command line. Each part of the system registers its own commands."""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="salus",
    help="Predict robot policy failures before they happen.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules under salus.cli, each with `register(app)`. Heavy imports stay inside the commands.
COMMAND_MODULES = (
    "sim",
    "policy",
    "signals",
    "collect",
    "dataset",
    "train",
    "evaluate",
    "report",
    "demo",
    "benchmark",
    "assist",
)

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"salus.cli.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"salus.cli.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    """Entry point: runs the app and turns salus errors into a clear message and exit code 2."""
    from salus.errors import SalusError

    try:
        exit_code = app(standalone_mode=False)
    except SalusError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except typer.Abort:
        typer.secho("aborted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        raise
    if isinstance(exit_code, int) and exit_code:
        sys.exit(exit_code)


if __name__ == "__main__":
    main()
