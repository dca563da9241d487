"""`salus demo`: the main job, end to end on the embedded default policy (the demo job,
:mod:`salus.jobs.demo`)."""

from __future__ import annotations

from pathlib import Path

import typer

from salus.cli._common import in_range, out_dir, positive_int, seed_option
from salus.policies import DEFAULT_POLICY

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(
            Path("runs/demo"), "--out", callback=out_dir, help="Folder for the dataset, models and report."
        ),
        episodes: int = typer.Option(
            400,
            "--episodes",
            "-n",
            callback=in_range(8),
            help="Episodes to collect (resumed if present; >= 8).",
        ),
        workers: int = typer.Option(
            2, "--workers", "-w", callback=positive_int, help="Local collection worker processes."
        ),
        seed: int = typer.Option(
            0, "--seed", callback=seed_option, help="Seeds collection, splits and training."
        ),
        holdout_task: str = typer.Option(
            "pick_color", "--holdout-task", help="Task never used in training or calibration (unseen)."
        ),
        models: str = typer.Option(
            "all", "--models", help="Predictors to train: 'all' or a comma-separated list."
        ),
        epochs: int = typer.Option(
            30, "--epochs", callback=positive_int, help="Maximum training epochs (early stopping applies)."
        ),
        alpha: float = typer.Option(
            0.1,
            "--alpha",
            callback=in_range(0, 1, lo_open=True, hi_open=True),
            help="Conformal alarm level for the report.",
        ),
        max_steps: int | None = typer.Option(
            None,
            "--max-steps",
            callback=positive_int,
            help="Control steps per episode; default: the simulator's limit per task.",
        ),
        policy: str = typer.Option(
            DEFAULT_POLICY,
            "--policy",
            help="Policy spec: smolvla (the packaged SmolVLA, the default), builtin (the light, "
            "LeRobot-free option), or any spec `salus collect` takes.",
        ),
    ) -> None:
        """Run the whole pipeline on the embedded default policy and print the results table."""
        from salus.cli._common import run_pipeline
        from salus.jobs.demo import DemoJob, run_demo

        job = DemoJob(
            out=out, episodes=episodes, workers=workers, seed=seed, holdout_task=holdout_task, models=models,
            epochs=epochs, alpha=alpha, max_steps=max_steps, policy=policy,
        )  # fmt: skip
        result, console = run_pipeline(run_demo, job)
        console.rule("[bold]done")
        console.print(f"total {result.seconds:.0f} s")
        console.print(f"results table: {result.results}")
        console.print(f"report: {result.report.resolve()}")
