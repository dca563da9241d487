"""`salus collect`: run a policy in the simulator and collect episodes into a zarr dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

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


def _fmt_failures(counter: Any) -> str:
    if not counter:
        return "-"
    return " ".join(f"{k}:{v}" for k, v in sorted(counter.items()))


def _warn_unfitted(config: Any, console: Any) -> None:
    """Warn (stderr) when no fitted signal statistics will be used, and say how to fit them."""
    from salus.collect.collector import resolve_signal_stats
    from salus.errors import SalusError

    if config.signal_stats is not None or resolve_signal_stats(config).signal_stats is not None:
        return  # statistics given, found beside the weights, or explicitly 'none'
    try:
        from salus.signals import signal_stats_path

        where = f" (looked for {signal_stats_path(config.policy)}.json / .safetensors)"
    except SalusError:
        where = ""
    console.print(
        f"[yellow]warning: policy {config.policy!r} has no fitted signal statistics{where}: the OOD signal "
        "and the sample signals without a cluster radius are recorded as invalid. Fit them first with "
        f"`salus signals fit --policy '{config.policy}'` (writes them beside the weights), or pass "
        "--signal-stats PATH; --signal-stats none collects without and silences this warning.",
        soft_wrap=True,
    )


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
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from salus.collect import CollectConfig, PerturbationMix, parse_perturb_arg
    from salus.collect.collector import CollectStats, collect
    from salus.errors import InvalidInputError

    if perturb and perturb_mix is not None:
        raise InvalidInputError("use either --perturb NAME=STRENGTH or --perturb-mix FILE, not both")
    mix = None
    if perturb:
        mix = PerturbationMix.fixed([parse_perturb_arg(p) for p in split_values(perturb)])
    elif perturb_mix is not None:
        mix = PerturbationMix.load(perturb_mix)
    env_options: dict[str, Any] = {}
    if env is not None:
        from salus.collect.envs import ObservationMap

        kwargs_obj: Any = {}
        if env_kwargs:
            try:
                kwargs_obj = json.loads(env_kwargs)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"--env-kwargs is not valid JSON: {exc}") from None
            if not isinstance(kwargs_obj, dict):
                raise InvalidInputError(f"--env-kwargs must be a JSON object, got {env_kwargs!r}")
        env_options = {
            "env": env,
            "env_kwargs": kwargs_obj,
            "observation": ObservationMap.parse(list(obs or []), task_text),
            "success": success,
            "failure": failure,
        }
        if robot is not None:
            from salus.data.robot import load_robot

            try:
                env_options["robot"] = load_robot(robot)
            except InvalidInputError as exc:
                raise InvalidInputError(f"--robot {robot}: {exc}") from None
        if perturb or perturb_mix is not None:
            raise InvalidInputError(
                "--perturb / --perturb-mix are salus.sim wrappers; an --env environment runs unperturbed"
            )
    elif obs or task_text or env_kwargs or failure or success != "is_success" or robot is not None:
        raise InvalidInputError(
            "--obs, --task-text, --env-kwargs, --success, --failure and --robot go with --env"
        )
    config = CollectConfig(
        **env_options,
        policy=policy,
        episodes=episodes,
        tasks=tuple(split_values(tasks)),
        seed=seed,
        max_steps=max_steps,
        mix=mix,
        save_images=save_images,
        save_hidden=save_hidden,
        num_samples=samples,
        signal_stats=signal_stats,
    )
    if workers < 1:
        raise InvalidInputError(f"--workers must be >= 1, got {workers}")
    from salus.policies import PolicySpec

    PolicySpec.parse(config.policy).check()  # before the dataset exists: a typo must leave nothing behind
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]collect"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} steps/s"),
        TextColumn("success {task.fields[success]}"),
        TextColumn("failures {task.fields[failures]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
    )
    task_id = progress.add_task("collect", total=episodes, rate="-", success="-", failures="-")

    def on_start(stats: CollectStats) -> None:
        progress.update(task_id, completed=stats.committed)

    def on_progress(stats: CollectStats) -> None:
        rate = stats.success_rate
        progress.update(
            task_id,
            completed=stats.committed,
            rate=f"{stats.steps_per_second:.0f}",
            success="-" if rate is None else f"{rate:.0%}",
            failures=_fmt_failures(stats.failure_types),
        )

    _warn_unfitted(config, console)
    with progress:
        result = collect(
            config,
            out,
            workers=workers,
            batch_size=batch_size,
            use_ray=ray is not None,
            ray_address=ray,
            overwrite=overwrite,
            on_progress=on_progress,
            on_start=on_start,
        )
    summary = result.as_dict()
    if json_out:
        typer.echo(json.dumps(summary))
    else:
        rate = "-" if result.success_rate is None else f"{result.success_rate:.0%}"
        console.print(
            f"{result.path}: {result.episodes} episodes ({result.new_episodes} new, {result.steps} steps in "
            f"{result.seconds:.1f} s, backend {result.backend}); success {rate}; failures "
            f"{_fmt_failures(result.failure_types)}"
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
