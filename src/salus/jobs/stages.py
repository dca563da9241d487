"""Stages: a job with a name, run in a list (``salus demo``, ``salus benchmark``).

A stage job is a frozen dataclass that can say which ``salus`` command line runs it (``argv``, the
line the results header prints, so a person can rerun one stage by hand) and run itself with a
:class:`Reporter` (progress and messages; the CLI gives a rich one, tests a silent one). The CLI
commands build the same jobs from their options, and a test parses every stage's ``argv`` with the
CLI and checks that it builds the stage's job.
"""

from __future__ import annotations

import dataclasses
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "Reporter",
    "SilentReporter",
    "StageJob",
    "Stage",
    "StageInterrupted",
    "run_stages",
    "command_line",
    "coerce_fields",
]


class Reporter(Protocol):
    """Where a running job reports: ``say`` a line; ``progress`` of a keyed bar (``total`` None:
    unknown; ``info`` None keeps the bar's last text)."""

    def say(self, text: str) -> None: ...

    def progress(self, key: str, done: int, total: int | None, info: str | None = None) -> None: ...


class SilentReporter:
    """A reporter that shows nothing (tests, library calls)."""

    def say(self, text: str) -> None:
        pass

    def progress(self, key: str, done: int, total: int | None, info: str | None = None) -> None:
        pass


class StageJob(Protocol):
    """A job that a stage runs: the command line that runs it, and the run."""

    def argv(self) -> list[str]: ...

    def run(self, reporter: Reporter) -> Any: ...


@dataclass(frozen=True)
class Stage:
    """One named step of a pipeline."""

    name: str
    job: StageJob

    def command(self) -> str:
        """``salus ...``: the command line that runs this stage alone."""
        return command_line(self.job)


def command_line(job: StageJob) -> str:
    """``salus ...``: the command line that runs ``job``."""
    return "salus " + shlex.join(job.argv())


class StageInterrupted(Exception):
    """A stage stopped early (Ctrl-C) with its finished work saved: rerun the pipeline to resume."""

    def __init__(self, stage: Stage) -> None:
        super().__init__(f"{stage.name} was interrupted; every finished part is saved: rerun to resume")
        self.stage = stage


def run_stages(
    stages: list[Stage],
    reporter: Reporter,
    prepare: Callable[[Stage], Stage | None] | None = None,
) -> dict[str, float]:
    """Run ``stages`` in order; returns the seconds each stage that ran took. ``prepare(stage)``,
    asked just before a stage runs (so it sees what the stages before it made), returns the stage
    to run (possibly adjusted) or None to skip it. Raises :class:`StageInterrupted` when a stage
    reports that it stopped early (a collection's ``interrupted``)."""
    timings: dict[str, float] = {}
    for planned in stages:
        stage = planned if prepare is None else prepare(planned)
        if stage is None:
            continue
        reporter.say(f"== {stage.name}: {stage.command()}")
        t0 = time.perf_counter()
        result = stage.job.run(reporter)
        if getattr(result, "interrupted", False):
            raise StageInterrupted(stage)
        timings[stage.name] = time.perf_counter() - t0
        reporter.say(f"{stage.name} took {timings[stage.name]:.0f} s")
    return timings


def coerce_fields(job: Any) -> None:
    """Give a frozen job dataclass's fields the types their annotations name, in ``__post_init__``:
    a ``Path`` field (or ``Path | None``, not None) from a string, a ``tuple[...]`` field (or
    ``tuple[...] | None``, not None) from any iterable, so a job built from Python lists and strings
    equals the one the CLI builds."""
    for f in dataclasses.fields(job):
        kind = str(f.type).split(" | ")[0]
        value = getattr(job, f.name)
        if value is None or (kind != "Path" and not kind.startswith("tuple[")):
            continue
        object.__setattr__(job, f.name, Path(value) if kind == "Path" else tuple(value))
