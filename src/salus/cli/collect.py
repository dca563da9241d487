"""`salus collect`: run a policy in the simulator and collect episodes into a zarr dataset (the
collect job, :mod:`salus.jobs.collect`; its fields are the options)."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from salus.cli._jobs import job_command, json_option

__all__ = ["register", "normalize_ray_argv"]


def normalize_ray_argv(argv: list[str]) -> list[str]:
    """Let ``--ray`` take an optional value: a bare ``--ray`` becomes ``--ray=local``."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--ray" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out[i] = "--ray=local"
    return out


def _collect(job: Any, as_json: bool) -> None:
    """Collect episodes (resumable: rerun the same command after a crash or Ctrl-C)."""
    from salus.cli._common import RichReporter
    from salus.jobs.collect import failure_text

    with RichReporter(eta=True) as reporter:
        result = job.run(reporter)
    console = reporter.console
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
    else:
        rate = "-" if result.success_rate is None else f"{result.success_rate:.0%}"
        console.print(
            f"{result.path}: {result.episodes} episodes ({result.new_episodes} new, {result.steps} steps in "
            f"{result.seconds:.1f} s, backend {result.backend}); success {rate}; failures "
            f"{failure_text(result.failure_types)}"
        )
    if result.interrupted:
        console.print(
            "[yellow]interrupted: every finished episode is committed; run the same command to resume"
        )
        raise typer.Exit(130)


def register(app: typer.Typer) -> None:
    from salus.jobs.collect import CollectJob

    if len(sys.argv) > 1 and "collect" in sys.argv[1:2]:
        sys.argv[:] = normalize_ray_argv(sys.argv)
    job_command(
        app,
        "collect",
        CollectJob,
        _collect,
        extra=[json_option("Print one JSON summary object on stdout.")],
    )
