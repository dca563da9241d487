"""`salus demo`: the main job, end to end on the embedded default policy.

collect (the embedded default policy, the packaged SmolVLA, under the perturbation mix) -> train every predictor with one task held out ->
calibrate and evaluate seen and unseen -> HTML report. Each stage is the same command a user would
run by hand; the demo only chains them with one output folder, so rerunning it resumes collection
and every number comes from the seeded commands.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from salus.cli._common import in_range, out_dir, positive_int, seed_option
from salus.collect.config import DEFAULT_BATCH_SIZE
from salus.policies import DEFAULT_POLICY

__all__ = ["register", "demo_stages"]


def demo_stages(
    out: Path,
    *,
    episodes: int,
    workers: int,
    seed: int,
    holdout_task: str,
    models: str,
    epochs: int,
    alpha: float,
    max_steps: int | None,
    policy: str = DEFAULT_POLICY,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[tuple[str, list[str]]]:
    """The demo as a list of (stage name, salus CLI arguments): what a person would type."""
    data = out / "data.zarr"
    model_dir = out / "models"
    collect = ["collect", "--policy", policy, "--episodes", str(episodes), "--seed", str(seed)]
    collect += [
        "--workers",
        str(workers),
        "--batch-size",
        str(batch_size),
        "--save-hidden",
        "--out",
        str(data),
    ]
    if max_steps is not None:
        collect += ["--max-steps", str(max_steps)]
    train = ["train", str(data), "--model", models, "--out", str(model_dir), "--holdout-task", holdout_task]
    # A larger calibration share than the default: the policy's successes are what the
    # conformal band is calibrated on, and alpha = 0.05 needs about 20 of them in the scoring half.
    train += ["--seed", str(seed), "--epochs", str(epochs), "--alpha", str(alpha), "--calib-fraction", "0.3"]
    evaluate = ["evaluate", str(model_dir), str(data), "--out", str(out / "evaluation")]
    report = ["report", str(model_dir), str(data), "--out", str(out / "report"), "--alpha", str(alpha)]
    return [("collect", collect), ("train", train), ("evaluate", evaluate), ("report", report)]


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
        from rich.console import Console

        from salus.cli.main import app as root_app

        console = Console(stderr=True)
        command = typer.main.get_command(root_app)
        out.mkdir(parents=True, exist_ok=True)
        stages = demo_stages(
            out,
            episodes=episodes,
            workers=workers,
            seed=seed,
            holdout_task=holdout_task,
            models=models,
            epochs=epochs,
            alpha=alpha,
            max_steps=max_steps,
            policy=policy,
        )
        started = time.perf_counter()
        for name, args in stages:
            console.rule(f"[bold]{name}[/bold]: salus {' '.join(args)}")
            stage_start = time.perf_counter()
            exit_code = command.main(args=args, prog_name="salus", standalone_mode=False)
            if isinstance(exit_code, int) and exit_code:
                raise typer.Exit(exit_code)
            console.print(f"[dim]{name} took {time.perf_counter() - stage_start:.0f} s[/dim]")
        console.rule("[bold]done")
        console.print(f"total {time.perf_counter() - started:.0f} s")
        console.print(f"results table: {out / 'evaluation' / 'results.md'}")
        console.print(f"report: {(out / 'report' / 'index.html').resolve()}")
