"""`salus collect`: run a policy in the simulator and collect episodes into a zarr dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from salus.cli._common import POLICY_SPEC_HELP, out_dir, positive_int, seed_option, split_values
from salus.collect.config import DEFAULT_BATCH_SIZE
from salus.policies import DEFAULT_POLICY

__all__ = ["register", "normalize_ray_argv"]


def normalize_ray_argv(argv: list[str]) -> list[str]:
    """Let ``--ray`` take an optional value: a bare ``--ray`` becomes ``--ray=local``."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--ray" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out[i] = "--ray=local"
    return out


def collect_command(
    out: Path = typer.Option(
        ..., "--out", "-o", callback=out_dir, help="Dataset to write (DATA.zarr); an existing one is resumed."
    ),
    policy: str = typer.Option(
        DEFAULT_POLICY,
        "--policy",
        help=POLICY_SPEC_HELP,
    ),
    episodes: int = typer.Option(
        24, "--episodes", "-n", callback=positive_int, help="Episodes the dataset should hold at the end."
    ),
    tasks: list[str] | None = typer.Option(
        None,
        "--tasks",
        help="Tasks (repeat or comma-separate); default: all tasks, rotating. With --env: the one task name "
        "the dataset stores (default: the environment's Gymnasium id, env.spec.id, else the factory's "
        "function name).",
    ),
    seed: int = typer.Option(
        0,
        "--seed",
        callback=seed_option,
        help="Base seed: episode i's seed, task and perturbations derive from it.",
    ),
    max_steps: int | None = typer.Option(
        None,
        "--max-steps",
        callback=positive_int,
        help="Control steps per episode; default: the simulator's limit per task.",
    ),
    perturb: list[str] | None = typer.Option(
        None,
        "--perturb",
        help="NAME=STRENGTH applied to every episode (repeatable); replaces the default mix.",
    ),
    perturb_mix: Path | None = typer.Option(
        None,
        "--perturb-mix",
        help='JSON file: a list of {"weight": w, "perturb": {NAME: STRENGTH or a lo-hi pair}} (docs/dataset.md).',
    ),
    workers: int = typer.Option(
        1, "--workers", "-w", callback=positive_int, help="Local worker processes (or Ray actors with --ray)."
    ),
    batch_size: int = typer.Option(
        DEFAULT_BATCH_SIZE,
        "--batch-size",
        "-b",
        callback=positive_int,
        help="Environments each worker runs in lockstep (one batched policy call per step). "
        "The dataset is the same for any value; larger is faster until memory or cores run out.",
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        help="Run workers as Ray actors: bare --ray starts a local Ray instance, --ray ADDRESS joins a cluster.",
    ),
    save_images: bool = typer.Option(False, "--save-images", help="Store camera images (uint8) per step."),
    save_hidden: bool = typer.Option(
        False,
        "--save-hidden",
        help="Store the policy's hidden state (f16) per step: hidden (this position) and hidden_mean (averaged "
        "over the chunk: SAFE's feature, which the SAFE models then read).",
    ),
    samples: int = typer.Option(
        4,
        "--samples",
        callback=positive_int,
        help="K chunks sampled per computed chunk (K >= 2 for sample signals).",
    ),
    signal_stats: str | None = typer.Option(
        None,
        "--signal-stats",
        help="Fitted signal statistics (PATH for PATH.json + PATH.safetensors), or 'none'; default: "
        "the statistics beside the policy's weights if there are any.",
    ),
    env: str | None = typer.Option(
        None,
        "--env",
        help="Any Gymnasium environment instead of our tasks: a registered id (gym_pusht/PushT-v0) or a "
        "factory MODULE:FUNC / FILE.py:FUNC (docs/byo-robot.md).",
    ),
    env_kwargs: str | None = typer.Option(
        None, "--env-kwargs", help="JSON object of keyword arguments for the --env factory or gymnasium.make."
    ),
    obs: list[str] | None = typer.Option(
        None,
        "--obs",
        help="--env observation -> policy input: state=KEY[,KEY], image_<camera>=KEY, task=KEY, robot_state=KEY "
        "(repeatable; default state=state).",
    ),
    task_text: str = typer.Option(
        "", "--task-text", help="--env: the instruction when the observation has none."
    ),
    success: str = typer.Option(
        "is_success",
        "--success",
        help="--env: info key (bool) or MODULE:FUNC(info, obs) -> bool deciding success.",
    ),
    failure: str | None = typer.Option(
        None,
        "--failure",
        help="--env: MODULE:FUNC(info, obs, steps) -> (failure_step, failure_type); default: last step, 'unknown'.",
    ),
    robot: Path | None = typer.Option(
        None,
        "--robot",
        help="--env: the robot description (salus.data.RobotSpec JSON, docs/byo-robot.md) of the mapped "
        "state; stored in the dataset, and the robot-state signals read the state through it.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete an existing dataset at --out first."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON summary object on stdout."),
) -> None:
    """Collect episodes (resumable: rerun the same command after a crash or Ctrl-C)."""
    from salus.cli._common import RichReporter
    from salus.jobs.collect import CollectJob, failure_text

    job = CollectJob(
        out=out, policy=policy, episodes=episodes, tasks=tuple(split_values(tasks)), seed=seed,
        max_steps=max_steps, perturb=tuple(split_values(perturb)), perturb_mix=perturb_mix,
        workers=workers, batch_size=batch_size, ray=ray, save_images=save_images,
        save_hidden=save_hidden, samples=samples, signal_stats=signal_stats, env=env,
        env_kwargs=env_kwargs, obs=tuple(obs or ()), task_text=task_text, success=success,
        failure=failure, robot=robot, overwrite=overwrite,
    )  # fmt: skip
    with RichReporter(eta=True) as reporter:
        result = job.run(reporter)
    console = reporter.console
    if json_out:
        typer.echo(json.dumps(result.as_dict()))
    else:
        rate = "-" if result.success_rate is None else f"{result.success_rate:.0%}"
        console.print(
            f"{result.path}: {result.episodes} episodes ({result.new_episodes} new, {result.steps} steps in "
            f"{result.seconds:.1f} s, backend {result.backend}); success {rate}; failures "
            f"{failure_text(result.failure_types)}"
        )
    if result.interrupted:
        console.print(
            "[yellow]interrupted: every finished episode is committed; run the same command to resume"
        )
        raise typer.Exit(130)


def register(app: typer.Typer) -> None:
    if len(sys.argv) > 1 and "collect" in sys.argv[1:2]:
        sys.argv[:] = normalize_ray_argv(sys.argv)
    app.command("collect")(collect_command)
