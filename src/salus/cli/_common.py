"""Small helpers shared by the CLI modules (cheap imports only)."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from salus._checks import SEED_MAX, check_range

__all__ = [
    "invoked_command",
    "split_values",
    "progress_bar",
    "POLICY_SPEC_HELP",
    "check_range",
    "in_range",
    "out_dir",
    "SEED_MAX",
    "seed_option",
    "positive_int",
]

# The --policy help of every command that takes a policy spec (the default is salus.policies.DEFAULT_POLICY).
POLICY_SPEC_HELP = (
    "Policy spec: smolvla (the packaged SmolVLA, the default), builtin (the light option), "
    "builtin:DIR, smolvla:PATH, python:FILE.py:FUNC or python:MODULE:FUNC (a function of yours "
    "that builds your own PyTorch policy, docs/byo-robot.md), ..."
)


def in_range(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False
) -> Callable[[Any], Any]:
    """A typer option callback refusing NaN, infinities and values outside the range (also each
    value of a repeated option) where the option is parsed: a usage error (exit 2) whose message
    names the option, the allowed range and the value. ``None`` (option not given) passes."""

    def callback(value: Any) -> Any:
        import typer

        from salus.errors import InvalidInputError

        for v in value if isinstance(value, list | tuple) else [value]:
            try:
                check_range(v, "it", lo, hi, lo_open=lo_open, hi_open=hi_open)
            except InvalidInputError as exc:
                raise typer.BadParameter(str(exc).removeprefix("it ")) from None
        return value

    return callback


#: Callbacks of the options most commands share.
seed_option = in_range(0, SEED_MAX)
positive_int = in_range(1)


def out_dir(value: Path | None) -> Path | None:
    """A typer callback for an output folder option: refused (exit 2) when it, or a folder it would
    be created in, is an existing file."""
    import typer

    if value is None:
        return None
    for p in (Path(value), *Path(value).parents):
        if p.exists():
            if not p.is_dir():
                where = "" if p == Path(value) else f" ({p} is a file)"
                raise typer.BadParameter(f"{value} must be a folder (existing or new), not a file{where}")
            break
    return value


def split_values(values: list[str] | None) -> list[str]:
    """Flatten repeated and comma-separated option values: ``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def progress_bar() -> Any:
    """A rich progress bar on stderr (so ``--json`` output on stdout stays clean)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


def invoked_command(ctx: Any) -> str:
    """The command line that reproduces this invocation (``salus <command> ARGS --option VALUE``),
    built from the parsed values, so a command chained by ``salus demo`` prints its real arguments;
    options left at their defaults are omitted."""
    words = ["salus", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.param_type_name == "argument":
            words += [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
            continue
        if value is None or value == param.default or value in ((), []) or value is False:
            continue
        flag = param.opts[0]
        if value is True:
            words.append(flag)
        elif isinstance(value, list | tuple):
            for v in value:
                words += [flag, str(v)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)
