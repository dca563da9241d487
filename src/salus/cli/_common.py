"""Small helpers shared by the CLI modules (cheap imports only)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from salus._checks import SEED_MAX, check_range
from salus.policies.spec import POLICY_SPEC_HELP

__all__ = [
    "RichReporter",
    "run_pipeline",
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


class RichReporter:
    """A job reporter (:class:`salus.jobs.stages.Reporter`) on stderr: one rich progress bar per
    key, messages printed above the bars. Use as a context manager around the job."""

    def __init__(self, eta: bool = False) -> None:
        from rich.progress import TimeRemainingColumn

        self.bar = progress_bar()
        if eta:
            self.bar.columns = (*self.bar.columns, TimeRemainingColumn())
        self.console = self.bar.console
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> RichReporter:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def say(self, text: str) -> None:
        self.console.print(text, soft_wrap=True, markup=False, highlight=False)

    def progress(self, key: str, done: int, total: int | None, info: str | None = None) -> None:
        if key not in self._tasks:
            self._tasks[key] = self.bar.add_task(key, total=total, info="")
        fields = {} if info is None else {"info": info}
        self.bar.update(self._tasks[key], completed=done, total=total, **fields)


def run_pipeline(run: Callable[[Any, Any], Any], job: Any) -> tuple[Any, Any]:
    """``run(job, reporter)`` of a pipeline job (``run_demo``, ``run_benchmark``) in a
    :class:`RichReporter`: ``(result, console)``; an interrupted stage exits 130 (rerun to resume)."""
    import typer

    from salus.jobs.stages import StageInterrupted

    with RichReporter(eta=True) as reporter:
        try:
            result = run(job, reporter)
        except StageInterrupted as exc:
            reporter.say(str(exc))
            raise typer.Exit(130) from None
    return result, reporter.console
