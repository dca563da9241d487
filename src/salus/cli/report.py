"""`salus report MODEL_DIR DATA --out DIR` (HTML report) and `salus replay DATA --episode I --out FILE`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from salus.cli._common import in_range
from salus.cli._jobs import job_command, json_option, threads_option

__all__ = ["register"]


def _report(job: Any, as_json: bool, threads: int) -> None:
    """An HTML page with the evaluation's tables, calibration, lead-time, score-curve, ROC and signal figures."""
    import torch

    from salus.cli._common import RichReporter

    torch.set_num_threads(threads)
    with RichReporter() as reporter:
        drawn = job.run(reporter)
    console, index = reporter.console, drawn.index
    summary = json.loads((index.parent / "report.json").read_text())
    if as_json:
        typer.echo(json.dumps({"index": str(index), **summary}))
        return
    console.print(f"[green]report written:[/green] {index}")
    for group, h in summary["headline"].items():
        band = h["alarms"].get("band", {})
        fpr = band.get("fpr")
        if band.get("finite") is False:  # an infinite band never alarms: no FPR to report
            console.print(
                f"  {group}: {summary['primary_method']} SAFE ROC-AUC {_num(h['safe_auroc'])}, "
                f"band at alpha {summary['alpha']:g} cannot fire (below)"
            )
            continue
        console.print(
            f"  {group}: {summary['primary_method']} SAFE ROC-AUC {_num(h['safe_auroc'])}, "
            f"band FPR {_num(fpr)} at alpha {summary['alpha']:g}"
        )
        glance = (summary.get("at_a_glance") or {}).get("groups", {}).get(group, {})
        if "caught" in glance:  # the page's first block, in one line
            lead = glance["lead_s_median"]
            console.print(
                f"    caught {glance['caught']}/{glance['n_event']} event failures before the event"
                + (f" (median lead {lead:.2f} s)" if lead is not None else "")
                + f", false alarms {glance['false_alarms']}/{glance['n_success']} successes"
            )
    from salus.predictor.tables import band_state_lines

    methods = drawn.evaluation.report["methods"]
    entry = next((m for m in methods if m["name"] == summary["primary_method"]), None)
    for line in band_state_lines(entry) if entry else []:  # per alpha: can the threshold fire
        console.print(f"  {line}")


def register(app: typer.Typer) -> None:
    from salus.jobs.report import ReportJob

    job_command(
        app,
        "report",
        ReportJob,
        _report,
        extra=[
            json_option("Print one JSON object (paths and the primary method's headline numbers)."),
            threads_option(),
        ],
    )

    @app.command("replay")
    def replay(
        data: Path = typer.Argument(..., help="A salus dataset collected with images saved."),
        episode: int = typer.Option(
            ..., "--episode", callback=in_range(0), help="Episode index in the dataset (0-based)."
        ),
        out: Path = typer.Option(..., "--out", help="Output file: .mp4, .gif, or .png (a strip of frames)."),
        model: Path = typer.Option(
            None, "--model", help="Checkpoint: draw its failure risk and alarm threshold."
        ),
        camera: list[str] = typer.Option(
            None, "--camera", help="Camera to show (repeatable; default: all saved)."
        ),
        fps: float = typer.Option(
            None,
            "--fps",
            callback=in_range(0, 1000, lo_open=True),
            help="Frames per second (default: the control rate).",
        ),
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


def _num(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"
