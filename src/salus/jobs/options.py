"""Command-line options declared once, on a job's dataclass fields.

A job field made with :func:`option` (or :func:`argument`) carries its flag, its help and its
allowed range. From that one declaration come the ``salus`` command's option (``salus.cli._jobs``
builds the typer parameters: default, flag, help, range check), the job's own range check
(:func:`check_options`, in ``__post_init__``, so a library caller gets the same refusal as the
command line) and the command line that reruns the job (:func:`option_words`). A field without
either is not on the command line (e.g. the recorded ``command``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from salus._checks import check_range

__all__ = [
    "REQUIRED",
    "Opt",
    "option",
    "argument",
    "job_options",
    "job_arguments",
    "check_options",
    "option_words",
]


#: The default of a required option (``option(REQUIRED, "--out", ...)``): the field has none.
REQUIRED: Any = dataclasses.MISSING


@dataclass(frozen=True)
class Opt:
    """One option of a job field: ``flag`` (``--epochs``), ``help`` (a string, or a function
    returning it, for help read from a registry), the allowed range (``lo`` / ``hi``, open or
    closed; every item of a tuple field), ``aliases`` (other names: ``("-w",)``), ``out_dir`` (a folder the job writes:
    the command refuses an existing file there), ``commas`` (a tuple of strings: the command also
    splits each value at commas, ``--tasks a,b``; False where a value holds commas itself),
    ``cli_type`` (the command's type where the field's is wider, e.g. ``int`` for ``int | Mapping``)."""

    flag: str
    help: str | Callable[[], str]
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    aliases: tuple[str, ...] = ()
    out_dir: bool = False
    commas: bool = True
    cli_type: Any = None

    def help_text(self) -> str:
        return self.help if isinstance(self.help, str) else self.help()

    def check(self, value: Any) -> None:
        """``InvalidInputError`` naming the flag when ``value`` (or an item of it) is out of range."""
        if self.lo is None and self.hi is None:
            return
        for v in value if isinstance(value, tuple | list) else (value,):
            check_range(v, self.flag, self.lo, self.hi, lo_open=self.lo_open, hi_open=self.hi_open)


def option(default: Any, flag: str, help: str | Callable[[], str], **kw: Any) -> Any:
    """A job field with a default that is the command's ``flag`` (see :class:`Opt` for ``kw``)."""
    return dataclasses.field(default=default, metadata={"option": Opt(flag, help, **kw)})


def argument(help: str) -> Any:
    """A required job field that is one of the command's positional arguments, in field order."""
    return dataclasses.field(metadata={"argument": help})


def job_options(cls: Any) -> dict[str, Opt]:
    """Field name -> :class:`Opt` of a job class (or instance), in field order."""
    return {f.name: f.metadata["option"] for f in dataclasses.fields(cls) if "option" in f.metadata}


def job_arguments(cls: Any) -> dict[str, str]:
    """Field name -> help of a job's positional arguments, in field order."""
    return {f.name: f.metadata["argument"] for f in dataclasses.fields(cls) if "argument" in f.metadata}


def check_options(job: Any, skip: tuple[str, ...] = ()) -> None:
    """Every option of ``job`` but ``skip`` in its range (``InvalidInputError`` naming the flag
    otherwise)."""
    for name, opt in job_options(job).items():
        if name not in skip:
            opt.check(getattr(job, name))


def option_words(job: Any, flags: dict[str, str] | None = None) -> list[str]:
    """The options of ``job`` (a dataclass) that differ from the field defaults, as command-line
    words: ``flags`` maps field name -> option (default: the job's declared options); True -> the
    bare flag, a tuple -> the flag once per item, None / False / the default -> nothing."""
    flags = flags if flags is not None else {n: o.flag for n, o in job_options(job).items()}
    defaults = {f.name: f.default for f in dataclasses.fields(job)}
    words: list[str] = []
    for name, flag in flags.items():
        value = getattr(job, name)
        if value is None or value is False or value == defaults.get(name) or value == ():
            continue
        if value is True:
            words.append(flag)
        elif isinstance(value, tuple):
            for v in value:
                words += [flag, str(v)]
        else:
            words += [flag, str(value)]
    return words
