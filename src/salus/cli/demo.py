"""`salus demo`: the main job, end to end on the embedded default policy (the demo job,
:mod:`salus.jobs.demo`; its fields are the options)."""

from __future__ import annotations

from typing import Any

import typer

from salus.cli._jobs import job_command

__all__ = ["register"]


def _demo(job: Any) -> None:
    """Run the whole pipeline on the embedded default policy and print the results table."""
    from salus.cli._common import run_pipeline
    from salus.jobs.demo import run_demo

    result, console = run_pipeline(run_demo, job)
    console.rule("[bold]done")
    console.print(f"total {result.seconds:.0f} s")
    console.print(f"results table: {result.results}")
    console.print(f"report: {result.report.resolve()}")


def register(app: typer.Typer) -> None:
    from salus.jobs.demo import DemoJob

    job_command(app, "demo", DemoJob, _demo)
