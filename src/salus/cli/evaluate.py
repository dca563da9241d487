"""`salus evaluate MODEL_DIR DATA`: every method side by side under the protocol (the evaluate job,
:mod:`salus.jobs.evaluate`; its fields are the options)."""

from __future__ import annotations

import json
from typing import Any

import typer

from salus.cli._jobs import job_command, json_option, threads_option

__all__ = ["register"]


def _evaluate(job: Any, threads: int, as_json: bool) -> None:
    """SAFE-comparable, at-risk and time-matched ROC-AUC, and conformal alarms, for every method."""
    import torch

    from salus.cli._common import RichReporter
    from salus.jobs.stages import command_line

    torch.set_num_threads(threads)
    with RichReporter() as reporter:
        result = job.run(reporter)
    me = [command_line(job)]
    typer.echo(json.dumps(result.payload(me)) if as_json else result.markdown(me))


def register(app: typer.Typer) -> None:
    from salus.jobs.evaluate import EvaluateJob

    job_command(
        app,
        "evaluate",
        EvaluateJob,
        _evaluate,
        extra=[
            json_option("Print the report as one JSON object instead of markdown."),
            threads_option(),
        ],
    )
