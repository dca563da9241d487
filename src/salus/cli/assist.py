"""`salus assist DATA --models DIR --fresh FRESH`: what the monitor's alarm buys in closed loop.

Handover to a person (the scripted expert) or a stop at the first alarm, on fresh episodes, for our
validation pick and the fixed comparators at the calibrated alphas, and at equal cost (curves of
success against help requests, swept thresholds, random requests matched per group); see
``salus.monitor.assist`` and ``salus.predictor.closed_loop``. The options are the fields of the
assist job (:mod:`salus.jobs.assist`).
"""

from __future__ import annotations

import json
from typing import Any

import typer

from salus.cli._jobs import job_command, json_option

__all__ = ["register"]


def _assist(job: Any, as_json: bool) -> None:
    """Closed-loop evaluation: success with handover, stops, help requests; resumable."""
    from salus.cli._common import RichReporter
    from salus.jobs.assist import CLOSED_LOOP_MD
    from salus.monitor.assist import RESULT_FILE

    with RichReporter() as reporter:
        result = job.run(reporter)
    md = (job.out / CLOSED_LOOP_MD).read_text()
    if as_json:
        keep = ("selected", "policy_alone", "ceiling", "replay_mismatches", "total_s")
        typer.echo(json.dumps({k: result[k] for k in keep}, indent=1, default=str))
    else:
        typer.echo(md)
    reporter.console.print(f"results: {job.out / RESULT_FILE}, {job.out / CLOSED_LOOP_MD}")


def register(app: typer.Typer) -> None:
    from salus.jobs.assist import AssistJob

    job_command(
        app,
        "assist",
        AssistJob,
        _assist,
        extra=[json_option("Print the pooled results as JSON.")],
    )
