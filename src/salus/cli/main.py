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
    "ceiling",
)

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"salus.cli.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"salus.cli.{_name}":
            raise
        continue
    _module.register(app)


def _click_classes(name: str) -> tuple[type, ...]:
    """Exception class ``name`` of every click the CLI may meet: the one typer vendors
    (``typer._click``, typer >= 0.29) and the standalone ``click`` (what older typer uses)."""
    found: list[type] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
    return tuple(found)


def _show_usage_error(exc: Exception) -> None:
    """Print a click error as typer itself does (its rich panel when rich is there, else click's text)."""
    try:
        from typer import rich_utils

        if type(exc).__name__ == "NoArgsIsHelpError":  # the help text itself, not an error panel
            raise ImportError
        rich_utils.rich_format_error(exc)  # type: ignore[arg-type]
    except ImportError:
        exc.show()  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app and turns salus errors into a clear message and exit code 2, and
    usage errors (unknown option or command, missing argument, bad value) into typer's message and
    exit code 2, whichever click typer uses. ``argv`` defaults to ``sys.argv[1:]``."""
    from salus.errors import SalusError

    try:
        exit_code = app(args=argv, prog_name="salus", standalone_mode=False)
    except SalusError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except Exception as exc:
        if isinstance(exc, (typer.Abort, *_click_classes("Abort"))):
            typer.secho("aborted", err=True)
            sys.exit(130)
        if isinstance(exc, _click_classes("ClickException")):
            _show_usage_error(exc)
            sys.exit(int(getattr(exc, "exit_code", 2)))
        if isinstance(exc, (typer.Exit, *_click_classes("Exit"))):
            sys.exit(int(getattr(exc, "exit_code", 0)))
        raise
    if isinstance(exit_code, int) and exit_code:
        sys.exit(exit_code)


if __name__ == "__main__":
    main()
