"""`salus dataset info | check | repair | label`: summarise, verify, repair or label a zarr dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from salus.cli._common import in_range, out_dir

__all__ = ["register"]

dataset_app = typer.Typer(help="Inspect and verify salus zarr episode datasets.", no_args_is_help=True)


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}"


@dataset_app.command("info")
def info_command(
    data: Path = typer.Argument(..., help="Dataset (DATA.zarr)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Episodes, steps, success rate, failure types, tasks, perturbations, the robot description
    (state width and names, rate, which robot-state signals it supports) and per-signal statistics.

    Refuses (exit 2) a store that lacks a group, an array or a chunk file (listed, not decoded);
    chunk checksums are verified by `salus dataset check`."""
    from rich.console import Console
    from rich.table import Table

    from salus.data import dataset_info

    info = dataset_info(data)
    if json_out:
        typer.echo(json.dumps(info))
        return
    console = Console()
    rate = info["success_rate"]
    console.print(
        f"[bold]{info['path']}[/]: {info['episodes']} episodes, {info['steps']} steps "
        f"(mean length {info['mean_episode_length']:.1f}), success rate {'-' if rate is None else f'{rate:.1%}'}"
    )
    for key in ("failure_types", "tasks", "perturbations"):
        console.print(f"{key}: " + ", ".join(f"{k} {v}" for k, v in sorted(info[key].items())))
    console.print(
        "step keys: "
        + ", ".join(f"{k} {tuple(v['shape'])} {v['dtype']}" for k, v in info["step_keys"].items())
    )
    robot = info.get("robot")
    if robot and "error" in robot:
        console.print(f"[red]robot:[/] {robot['error']}", soft_wrap=True)
    elif robot:
        action = "-" if robot["action_dim"] is None else robot["action_dim"]
        origin = "stored" if robot["stored"] else "derived from the dataset's attributes"
        console.print(
            f"robot: {robot['name']} ({origin}): state {robot['state_dim']} values, action {action}, "
            f"{robot['control_hz']:g} Hz",
            soft_wrap=True,
        )
        if robot["state_names"]:
            console.print("  state names: " + ", ".join(robot["state_names"]), soft_wrap=True)
        for name, why in robot["robot_signals"].items():
            console.print(f"  {name}: " + ("valid" if why is None else f"invalid ({why})"), soft_wrap=True)
    if info["signals"]:
        table = Table("signal", "valid", "mean", "std", "min", "max")
        for name, s in info["signals"].items():
            table.add_row(
                name,
                f"{s['valid_fraction']:.0%}",
                _fmt(s["mean"]),
                _fmt(s["std"]),
                _fmt(s["min"]),
                _fmt(s["max"]),
            )
        console.print(table)
    console.print(f"[yellow]note:[/] {info['integrity']['note']}", soft_wrap=True)


@dataset_app.command("check")
def check_command(
    data: Path = typer.Argument(..., help="Dataset (DATA.zarr)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Decode every chunk and check the metadata; exit 1 and say what is wrong if anything is."""
    from rich.console import Console

    from salus.data import check_dataset

    report = check_dataset(data)
    if json_out:
        typer.echo(json.dumps(report.as_dict()))
    else:
        console = Console()
        for note in report.notes:
            console.print(f"[yellow]note:[/] {note}")
        for problem in report.problems:
            console.print(f"[red]problem:[/] {problem}")
        if report.ok:
            console.print(f"[green]ok[/]: {report.path}: {report.episodes} episodes, {report.steps} steps")
    if not report.ok:
        raise typer.Exit(1)


@dataset_app.command("repair")
def repair_command(
    data: Path = typer.Argument(..., help="Damaged dataset (DATA.zarr); it is only read."),
    out: Path = typer.Option(
        ..., "--out", "-o", callback=out_dir, help="New dataset to write with the undamaged episodes."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a salus dataset at --out."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Copy every undamaged episode into a new, consistent dataset (never in place); say what was dropped."""
    from salus.data.repair import repair_dataset

    report = repair_dataset(data, out, overwrite=overwrite)
    if json_out:
        typer.echo(json.dumps(report.as_dict()))
        return
    from rich.console import Console

    from salus.data.integrity import format_indices

    console = Console()
    for d in report.damage:
        console.print(
            f"[red]damaged:[/] {d['array']} chunk {d['chunk']} ({d['kind']}): episodes {format_indices(d['episodes'])}"
        )
    console.print(report.summary())


@dataset_app.command("label")
def label_command(
    data: Path = typer.Argument(..., help="Dataset (DATA.zarr)."),
    episode: int | None = typer.Argument(
        None, callback=in_range(0), help="Episode position in the dataset (0-based)."
    ),
    success: bool = typer.Option(False, "--success", help="The episode succeeded."),
    failure_step: int | None = typer.Option(
        None, "--failure-step", callback=in_range(0), help="Step at which the episode failed (>= 0)."
    ),
    failure_type: str | None = typer.Option(
        None, "--failure-type", help="What went wrong (drop, miss, collision, timeout, ... or unknown)."
    ),
    from_file: Path | None = typer.Option(
        None,
        "--from",
        help="Label many episodes: a JSON list or a CSV (episode,success,failure_step,failure_type).",
    ),
    by: str | None = typer.Option(None, "--by", help="Who gives the label (default: user@host)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Relabel episodes that already have an outcome."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the stored labels as JSON."),
) -> None:
    """Give episodes their outcome after the fact (stored with who and when; training refuses
    unlabelled episodes)."""
    from rich.console import Console

    from salus.data.labels import Label, read_label_file
    from salus.data.relabel import label_episodes
    from salus.errors import InvalidInputError

    if from_file is not None:
        if episode is not None or success or failure_step is not None or failure_type is not None:
            raise InvalidInputError(
                "use either EPISODE with --success / --failure-step, or --from FILE, not both"
            )
        labels = read_label_file(from_file)
    else:
        if episode is None:
            raise InvalidInputError("name the EPISODE to label (or pass --from FILE)")
        if success and (failure_step is not None or failure_type is not None):
            raise InvalidInputError("--success takes no --failure-step / --failure-type")
        if not success and failure_step is None:
            raise InvalidInputError(
                f"episode {episode}: say how it ended: --success, or --failure-step N --failure-type T"
            )
        if success:
            labels = [Label(episode, True)]
        else:
            assert failure_step is not None
            kind = "unknown" if failure_type is None else failure_type  # '' is refused by Label
            labels = [Label(episode, False, failure_step, kind)]
    stored = label_episodes(data, labels, by=by, overwrite=overwrite)
    if json_out:
        typer.echo(json.dumps(stored))
        return
    console = Console()
    for entry in stored:
        outcome = (
            "success"
            if entry["success"]
            else f"failure at step {entry['failure_step']} ({entry['failure_type']})"
        )
        console.print(
            f"episode {entry['episode']}: {outcome} (by {entry['labelled_by']}, {entry['labelled_at']})"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
