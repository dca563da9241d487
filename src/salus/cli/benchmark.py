"""`salus benchmark`: the fixed benchmark that ranks failure detectors, end to end and resumable
(the benchmark job, :mod:`salus.jobs.benchmark`; its fields are the options). The results file
(``docs/results.md`` by default) is this command's output, never edited by hand, and starts with
the commands and the time each stage took."""

from __future__ import annotations

from typing import Any

import typer

from salus.cli._jobs import job_command

__all__ = ["register"]


def _benchmark(job: Any) -> None:
    """Collect, train (per split seed), ablate, evaluate and report: the benchmark, resumable."""
    from salus.cli._common import run_pipeline
    from salus.jobs.benchmark import run_benchmark

    result, console = run_pipeline(run_benchmark, job)
    console.print(f"results: {result.results} (total {result.seconds:.0f} s)")


def register(app: typer.Typer) -> None:
    from salus.jobs.benchmark import BenchmarkJob

    job_command(app, "benchmark", BenchmarkJob, _benchmark)
