"""A ``salus`` command made from a job class: its arguments and options are the job's declared
fields (:mod:`salus.jobs.options`), so a flag, its default, its help and its range live in one
place, the job."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any

import typer

from salus.cli._common import in_range, out_dir, positive_int, split_values
from salus.jobs.options import Opt

__all__ = ["job_command", "cli_option", "json_option", "threads_option"]


def _cli_type(annotation: Any) -> tuple[Any, bool]:
    """``(typer annotation, repeatable)`` of a job field's type: a ``tuple[X, ...]`` field is a
    repeatable option (``list[X]``)."""
    args = typing.get_args(annotation)
    base = (
        next((a for a in args if a is not type(None)), annotation)
        if args and type(None) in args
        else annotation
    )
    if typing.get_origin(base) is tuple:
        return list[typing.get_args(base)[0]], True  # type: ignore[misc]
    return annotation, False


def _callback(opt: Opt) -> Callable[[Any], Any] | None:
    if opt.out_dir:
        return out_dir
    if opt.lo is None and opt.hi is None:
        return None
    return in_range(opt.lo, opt.hi, lo_open=opt.lo_open, hi_open=opt.hi_open)


def cli_option(name: str, annotation: Any, default: Any, *flags: str, **kw: Any) -> inspect.Parameter:
    """A command-only option (``--json``, ``--threads``) beside the job's."""
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(default, *flags, **kw),
        annotation=annotation,
    )


def json_option(help: str) -> inspect.Parameter:
    """``--json`` (the run function's ``as_json``): print one JSON object (``help`` says which)
    instead of the text output."""
    return cli_option("as_json", bool, False, "--json", help=help)


def threads_option() -> inspect.Parameter:
    """``--threads``: torch CPU threads of the command (1 by default, as in tests and benchmarks)."""
    return cli_option("threads", int, 1, "--threads", callback=positive_int, help="torch CPU threads (>= 1).")


def _parameters(cls: Any) -> tuple[list[inspect.Parameter], dict[str, bool]]:
    """The typer parameters of ``cls``'s declared fields, and its repeatable ones: name -> whether
    each value is also split at commas."""
    hints = typing.get_type_hints(cls)
    params: list[inspect.Parameter] = []
    repeatable: dict[str, bool] = {}
    for f in dataclasses.fields(cls):
        if "argument" in f.metadata:
            params.append(
                inspect.Parameter(
                    f.name,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=typer.Argument(..., help=f.metadata["argument"]),
                    annotation=hints[f.name],
                )
            )
        elif "option" in f.metadata:
            opt = f.metadata["option"]
            annotation, many = _cli_type(opt.cli_type or hints[f.name])
            if many:
                repeatable[f.name] = opt.commas
            default = None if many else f.default
            if default is dataclasses.MISSING:
                default = ...
            flags = (opt.flag, *opt.aliases)
            info = typer.Option(default, *flags, help=opt.help_text(), callback=_callback(opt))
            params.append(
                inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)
            )
    return params, repeatable


def job_command(
    app: typer.Typer,
    name: str,
    cls: Any,
    run: Callable[..., None],
    *,
    extra: Sequence[inspect.Parameter] = (),
) -> Callable[..., None]:
    """Register ``salus NAME``: the arguments and options of job class ``cls`` (its declared fields,
    in field order), then the command-only options ``extra``. The command builds the job (a
    repeatable option not given keeps the field's default) and calls ``run(job, **extras)``. The
    help is ``run``'s docstring."""
    params, repeatable = _parameters(cls)
    params += list(extra)
    fields = {f.name for f in dataclasses.fields(cls)}

    def command(**kwargs: Any) -> None:
        values = {k: kwargs.pop(k) for k in list(kwargs) if k in fields}
        for k, commas in repeatable.items():
            if not values.get(k):
                values.pop(k, None)  # not given: the job's default
            elif commas and all(isinstance(v, str) for v in values[k]):
                values[k] = split_values(values[k])  # "a,b" and a repeated flag alike
        run(cls(**values), **kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = run.__doc__
    command.__name__ = name.replace("-", "_")
    app.command(name)(command)
    return command
