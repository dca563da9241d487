"""`salus evaluate MODEL_DIR DATA`: every method side by side under the protocol (the evaluate job,
:mod:`salus.jobs.evaluate`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from salus.cli._common import in_range, out_dir, positive_int

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        model_dir: Path = typer.Argument(
            ...,
            help="A checkpoint, a directory of checkpoints (`salus train --model all`), or of seed<S>/ "
            "directories (`salus train --split-seeds`).",
        ),
        data: Path = typer.Argument(..., help="The dataset the checkpoints were trained on."),
        alpha: list[float] = typer.Option(
            None,
            "--alpha",
            callback=in_range(0, 1, lo_open=True, hi_open=True),
            help="Conformal alpha; repeatable (default 0.05 0.1 0.2).",
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print the report as one JSON object instead of markdown."
        ),
        out: Path = typer.Option(
            None,
            "--out",
            callback=out_dir,
            help="Also write results.json and results.md into this directory.",
        ),
        threads: int = typer.Option(1, "--threads", callback=positive_int, help="torch CPU threads (>= 1)."),
        workers: int = typer.Option(
            1,
            "--workers",
            "-w",
            callback=positive_int,
            help="Processes for the split seeds (forked; the same numbers as one process).",
        ),
        transfer_from: Path = typer.Option(
            None,
            "--transfer-from",
            help="Models trained on another policy's episodes (the same --split-seeds layout): their signal "
            "models are scored on DATA as comparators transfer:LABEL:MODEL (is the monitor specific to "
            "the policy it watched?).",
        ),
        transfer_label: str = typer.Option(
            "transfer",
            "--transfer-label",
            help="LABEL of the --transfer-from rows (e.g. the other policy's name).",
        ),
    ) -> None:
        """SAFE-comparable, at-risk and time-matched ROC-AUC, and conformal alarms, for every method."""
        import torch

        from salus.cli._common import RichReporter
        from salus.jobs.evaluate import EvaluateJob
        from salus.jobs.stages import command_line
        from salus.predictor import DEFAULT_ALPHAS

        torch.set_num_threads(threads)
        alphas = tuple(alpha) if alpha else DEFAULT_ALPHAS
        job = EvaluateJob(
            model_dir,
            data,
            alphas,
            workers,
            transfer_from=transfer_from,
            transfer_label=transfer_label,
            out=out,
        )
        with RichReporter() as reporter:
            result = job.run(reporter)
        me = [command_line(job)]
        if as_json:
            typer.echo(json.dumps(result.payload(me)))
        else:
            typer.echo(result.markdown(me))
