"""`salus evaluate MODEL_DIR DATA`: every method side by side under the protocol.

MODEL_DIR is a checkpoint, a directory of checkpoints (`salus train --model all`), or a directory of
``seed<S>/`` directories (`salus train --split-seeds ...`): then every seed is evaluated and the
results are aggregated (mean and spread over seeds, headline differences with intervals).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from salus.cli._common import in_range, invoked_command, out_dir, positive_int

__all__ = ["register", "evaluate_seeds", "clean_json"]


def clean_json(value: Any) -> Any:
    """NaN/inf -> null, numpy -> Python, so the output is strict JSON."""
    from salus._json import to_json

    return to_json(value, non_finite="null")


def evaluate_seeds(
    model_dir: Path, episodes: Any, alphas: Any, progress: Any = None
) -> tuple[list[Any], dict[str, Any] | None]:
    """Evaluations of MODEL_DIR (one per seed directory, or one) and their aggregate (None for one)."""
    from salus.predictor import aggregate_seeds, evaluate_detailed
    from salus.predictor.discovery import load_checkpoints, read_selection_record, seed_dirs

    seeds = seed_dirs(model_dir)
    dirs = [d for _, d in seeds] or [model_dir]
    evals = []
    for d in dirs:
        preds = load_checkpoints(d)
        record = read_selection_record(d) if not (d / "predictor.json").is_file() else None
        evals.append(evaluate_detailed(episodes, preds, alphas=alphas, progress=progress, selection=record))
    agg = aggregate_seeds([e.report for e in evals], [e.samples for e in evals]) if seeds else None
    return evals, agg


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        ctx: typer.Context,
        model_dir: Path = typer.Argument(
            ...,
            help="A checkpoint, a directory of checkpoints (`salus train --model all`), or of seed<S>/ "
            "directories (`salus train --split-seeds`).",
        ),
        data: Path = typer.Argument(..., help="The dataset the checkpoints were trained on."),
        alpha: list[float] = typer.Option(
            None,
            "--alpha",
            callback=in_range(0, 1, lo_open=True, hi_open=True),
            help="Conformal alpha; repeatable (default 0.05 0.1 0.2).",
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print the report as one JSON object instead of markdown."
        ),
        out: Path = typer.Option(
            None,
            "--out",
            callback=out_dir,
            help="Also write results.json and results.md into this directory.",
        ),
        threads: int = typer.Option(1, "--threads", callback=positive_int, help="torch CPU threads (>= 1)."),
    ) -> None:
        """SAFE-comparable, at-risk and time-matched ROC-AUC, and conformal alarms, for every method."""
        import torch
        from rich.console import Console

        from salus.data import SalusDataset
        from salus.predictor import DEFAULT_ALPHAS, episodes_from_dataset
        from salus.predictor.tables import format_benchmark, format_markdown

        torch.set_num_threads(threads)
        alphas = tuple(sorted(set(alpha))) if alpha else DEFAULT_ALPHAS
        episodes = episodes_from_dataset(SalusDataset(data), embeddings=True)
        console = Console(stderr=True)
        with console.status("evaluating") as status:
            evals, agg = evaluate_seeds(model_dir, episodes, alphas, progress=lambda m: status.update(m))
        reports = [e.report for e in evals]
        commands = [p.get("command") for r in reports for p in r.get("predictors", []) if p.get("command")]
        commands = list(dict.fromkeys(commands))
        commands.append(invoked_command(ctx))
        if agg is None:
            payload: dict[str, Any] = {**reports[0], "commands": commands}
            md = format_markdown(reports[0], commands=commands)
        else:
            payload = {"aggregate": agg, "seeds": reports, "commands": commands}
            md = format_benchmark(agg, reports, commands=commands)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "results.json").write_text(json.dumps(clean_json(payload), indent=1) + "\n")
            (out / "results.md").write_text(md)
        if as_json:
            typer.echo(json.dumps(clean_json(payload)))
        else:
            typer.echo(md)
