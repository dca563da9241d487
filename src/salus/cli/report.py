"""`salus report MODEL_DIR DATA --out DIR` (HTML report) and `salus replay DATA --episode I --out FILE`."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        model_dir: Path = typer.Argument(
            ..., help="A checkpoint, or a directory of checkpoints (`salus train --model all`)."
        ),
        data: Path = typer.Argument(..., help="The dataset the checkpoints were trained on."),
        out: Path = typer.Option(
            ..., "--out", help="Directory for index.html, the PNG figures and report.json."
        ),
        alpha: float = typer.Option(
            None, "--alpha", help="Conformal alpha of the alarms (default: the checkpoint's)."
        ),
        primary: str = typer.Option(
            None, "--primary", help="Method drawn in the timelines (default: best predictor)."
        ),
        time: int = typer.Option(
            None, "--time", help="Fixed ROC time T in steps (default: shortest success per task)."
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print one JSON object (paths and headline numbers)."
        ),
        threads: int = typer.Option(1, "--threads", help="torch CPU threads."),
    ) -> None:
        """An HTML page with ROC curves, score timelines, lead times, signal distributions and the results table."""
        import torch
        from rich.console import Console

        from salus.monitor.evaluation import build_report_inputs
        from salus.monitor.report import render_report

        torch.set_num_threads(max(1, threads))
        console = Console(stderr=True)
        with console.status("building the report") as status:
            inputs, _ = build_report_inputs(
                model_dir, data, alpha=alpha, primary=primary, time=time, progress=lambda m: status.update(m)
            )
            status.update("drawing figures")
            index = render_report(inputs, out)
        summary = json.loads((index.parent / "report.json").read_text())
        if as_json:
            typer.echo(json.dumps({"index": str(index), **summary}))
            return
        console.print(f"[green]report written:[/green] {index}")
        for split, aucs in summary["roc_auc"].items():
            best = aucs.get(inputs.primary_method)
            if best is not None:
                console.print(f"  {split}: {inputs.primary_method} ROC-AUC@T {best:.3f}")

    @app.command("replay")
    def replay(
        data: Path = typer.Argument(..., help="A salus dataset collected with images saved."),
        episode: int = typer.Option(..., "--episode", help="Episode index in the dataset (0-based)."),
        out: Path = typer.Option(..., "--out", help="Output file: .mp4, .gif, or .png (a strip of frames)."),
        model: Path = typer.Option(
            None, "--model", help="Checkpoint: draw its failure risk and alarm threshold."
        ),
        camera: list[str] = typer.Option(
            None, "--camera", help="Camera to show (repeatable; default: all saved)."
        ),
        fps: float = typer.Option(None, "--fps", help="Frames per second (default: the control rate)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Frames of an episode with the risk curve (or, without --model, the signals) under them."""
        from rich.console import Console

        from salus.monitor.replay import replay_episode

        console = Console(stderr=True)
        with console.status(f"rendering episode {episode}"):
            result = replay_episode(data, episode, out, model_dir=model, cameras=camera or None, fps=fps)
        if as_json:
            typer.echo(json.dumps(result))
        else:
            console.print(f"[green]replay written:[/green] {result['out']} ({result['steps']} steps)")
