"""`salus ceiling DATA`: the Monte-Carlo ceiling of the at-risk ROC-AUC (see ``salus.predictor.ceiling_replay``).

For a seeded sample of episodes at risk at each time, the recorded actions are replayed to that step
and the same policy continues K times with fresh policy and world noise; the share of failed
continuations estimates P(fail), whose ROC-AUC against the recorded outcomes is the ceiling. The
options are the fields of the ceiling job (:mod:`salus.jobs.ceiling`).
"""

from __future__ import annotations

import json
from typing import Any

import typer

from salus.cli._jobs import job_command, json_option

__all__ = ["register"]


def _ceiling(job: Any, as_json: bool) -> None:
    """Monte-Carlo ceiling of the at-risk ROC-AUC (resumable, parallel)."""
    from salus.cli._common import RichReporter
    from salus.predictor.ceiling_replay import CEILING_FILE

    with RichReporter() as reporter:
        result = job.run(reporter)
    if as_json:
        typer.echo(json.dumps(json.loads((job.out / CEILING_FILE).read_text()), indent=1))
    else:
        typer.echo("\n".join(result.table_lines()))
    stage = result.to_dict()["stage"]
    reporter.console.print(
        f"results: {job.out / CEILING_FILE} ({result.continuations} continuations, "
        f"{stage['job_s']:g} s of simulation, {stage['wall_s']:g} s this run)"
    )


def register(app: typer.Typer) -> None:
    from salus.jobs.ceiling import MonteCarloCeilingJob

    job_command(
        app,
        "ceiling",
        MonteCarloCeilingJob,
        _ceiling,
        extra=[json_option("Print ceiling.json instead of the table.")],
    )
