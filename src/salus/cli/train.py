"""`salus train DATA --model NAME --out MODEL_DIR`: train failure predictors on a collected dataset
(the train job, :mod:`salus.jobs.train`; its fields are the options)."""

from __future__ import annotations

import json
from typing import Any

import typer

from salus.cli._jobs import job_command, json_option, threads_option

__all__ = ["register"]


def _train(job: Any, threads: int, as_json: bool) -> None:
    """Train predictors with an episode-level split, early stopping and conformal calibration."""
    import torch

    from salus.cli._common import RichReporter

    torch.set_num_threads(threads)
    with RichReporter() as reporter:
        result = job.run(reporter)
    if as_json:
        typer.echo(json.dumps(result.summary()))
        return
    for r in result.models:
        loss = r["best_val_loss"]
        trained_text = (
            "fitted, no training"
            if not r["epochs_run"]
            else f"best epoch {r['best_epoch']}/{r['epochs_run']}, val loss "
            + (f"{loss:.4f}" if isinstance(loss, int | float) else "n/a")
        )
        held = f", unseen {', '.join(r['holdout_tasks'])}" if r["holdout_tasks"] else ""
        typer.echo(
            f"{r['name']} (seed {r['seed']}{held}): {trained_text} -> {r['path']}"
            f"{' (kept)' if r.get('resumed') else ''}"
        )
        for b in r["bands"]:
            typer.echo(f"  conformal band at {b['text']}")


def register(app: typer.Typer) -> None:
    from salus.jobs.train import TrainJob

    job_command(
        app,
        "train",
        TrainJob,
        _train,
        extra=[
            threads_option(),
            json_option("Print one JSON object."),
        ],
    )
