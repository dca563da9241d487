"""`salus sim rollout | tasks | perturbations`: run and inspect the MuJoCo Panda simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from salus.cli._common import in_range, out_dir, positive_int, seed_option

__all__ = ["register"]

sim_app = typer.Typer(
    help="The MuJoCo Franka Panda tasks, scripted experts and perturbations.", no_args_is_help=True
)


@sim_app.command("tasks")
def tasks_command(json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """List the valid task names with their task strings and step limits."""
    from salus.sim.tasks import TASK_SPECS

    if json_out:
        typer.echo(
            json.dumps({n: {"texts": list(s.texts), "max_steps": s.max_steps} for n, s in TASK_SPECS.items()})
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("task", "max steps", "task strings")
    for name, spec in TASK_SPECS.items():
        table.add_row(name, str(spec.max_steps), " | ".join(spec.texts))
    Console().print(table)


@sim_app.command("perturbations")
def perturbations_command(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """List the valid perturbation names (use as NAME=STRENGTH, strength in [0, 1])."""
    from salus.sim.perturbations import PERTURBATIONS

    if json_out:
        typer.echo(json.dumps({n: cls.description for n, cls in PERTURBATIONS.items()}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("perturbation", "what it changes")
    for name, cls in PERTURBATIONS.items():
        table.add_row(name, cls.description)
    Console().print(table)


@sim_app.command("rollout")
def rollout_command(
    task: str = typer.Option("pick_place", "--task", help="Task name (see `salus sim tasks`)."),
    policy: str = typer.Option("scripted", "--policy", help="Policy to run: scripted."),
    episodes: int = typer.Option(10, "--episodes", callback=positive_int, help="Number of episodes."),
    perturb: list[str] = typer.Option(
        [], "--perturb", help="NAME=STRENGTH, repeatable (see `salus sim perturbations`)."
    ),
    seed: int = typer.Option(
        0, "--seed", callback=seed_option, help="Seed of the first episode (episode k uses seed + k)."
    ),
    save_frames: Path = typer.Option(
        None, "--save-frames", callback=out_dir, help="Write PNG frames of every episode here."
    ),
    render: bool = typer.Option(False, "--render/--no-render", help="Render camera images every step."),
    image_size: int = typer.Option(
        96, "--image-size", callback=in_range(8), help="Image size in pixels when rendering."
    ),
    max_steps: int = typer.Option(
        None, "--max-steps", callback=positive_int, help="Step limit (default: the task's)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run episodes and print the success rate, failure-type counts and control steps per second."""
    from salus.sim.perturbations import parse_perturbation
    from salus.sim.rollout import run_rollouts
    from salus.sim.tasks import get_task

    get_task(task)
    parsed = [parse_perturbation(p) for p in perturb]
    rollout_args: dict[str, Any] = dict(
        policy=policy,
        episodes=episodes,
        seed=seed,
        perturbations=parsed,
        render=render,
        image_size=image_size,
        max_steps=max_steps,
        save_frames=save_frames,
    )
    if json_out:
        result = run_rollouts(task, **rollout_args)
        typer.echo(json.dumps(result.as_dict()))
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = Console()
    with Progress(
        TextColumn(f"[bold]{task}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("episodes", total=episodes)
        result = run_rollouts(task, **rollout_args, on_episode=lambda _: progress.advance(bar))
    pert = ", ".join(f"{n}={s:g}" for n, s in result.perturbations) or "none"
    table = Table("task", "perturbations", "episodes", "success", *result.failure_counts, "steps/s")
    table.add_row(
        task,
        pert,
        str(len(result.episodes)),
        f"{result.success_rate:.0%}",
        *(str(v) for v in result.failure_counts.values()),
        f"{result.steps_per_second:.0f}",
    )
    console.print(table)
    if save_frames is not None:
        console.print(f"frames written under {save_frames}")


def register(app: typer.Typer) -> None:
    app.add_typer(sim_app, name="sim")
