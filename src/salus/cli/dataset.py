"""`salus dataset info | check`: summarise or verify a collected zarr dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

__all__ = ["register"]

dataset_app = typer.Typer(help="Inspect and verify salus zarr episode datasets.", no_args_is_help=True)


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}"


@dataset_app.command("info")
def info_command(
    data: Path = typer.Argument(..., help="Dataset (DATA.zarr)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Episodes, steps, success rate, failure types, tasks, perturbations and per-signal statistics."""
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


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
