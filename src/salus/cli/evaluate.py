"""`salus evaluate MODEL_DIR DATA`: every method side by side under SAFE's protocol."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        model_dir: Path = typer.Argument(
            ..., help="A checkpoint, or a directory of checkpoints (`salus train --model all`)."
        ),
        data: Path = typer.Argument(..., help="The dataset the checkpoints were trained on."),
        alpha: list[float] = typer.Option(
            None, "--alpha", help="Conformal alpha; repeatable (default 0.05 0.1 0.2)."
        ),
        time: int = typer.Option(
            None, "--time", help="T in steps (default: the length of the shortest successful rollout)."
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print the report as one JSON object instead of markdown."
        ),
        out: Path = typer.Option(
            None, "--out", help="Also write results.json and results.md into this directory."
        ),
        threads: int = typer.Option(1, "--threads", help="torch CPU threads."),
    ) -> None:
        """ROC-AUC / AP at T and over all steps, and conformal TPR/FPR/detection/lead time, for every method."""
        import torch
        from rich.console import Console

        from salus.data import SalusDataset
        from salus.errors import CheckpointError
        from salus.predictor import (
            DEFAULT_ALPHAS,
            TrainedPredictor,
            episodes_from_dataset,
            format_markdown,
            run_evaluation,
        )
        from salus.predictor.checkpoint import is_checkpoint_dir

        torch.set_num_threads(max(1, threads))
        if is_checkpoint_dir(model_dir):
            dirs = [model_dir]
        else:
            dirs = (
                sorted(d for d in model_dir.iterdir() if d.is_dir() and is_checkpoint_dir(d))
                if model_dir.is_dir()
                else []
            )
        if not dirs:
            raise CheckpointError(
                f"{model_dir} holds no predictor checkpoint (predictor.json + model.safetensors)"
            )
        predictors = [TrainedPredictor.load(d) for d in dirs]
        alphas = tuple(sorted(set(alpha))) if alpha else DEFAULT_ALPHAS
        episodes = episodes_from_dataset(SalusDataset(data), embeddings=True)
        console = Console(stderr=True)
        with console.status("evaluating") as status:
            report = run_evaluation(
                episodes, predictors, alphas=alphas, time=time, progress=lambda m: status.update(m)
            )
        commands = [p.meta["command"] for p in predictors if p.meta.get("command")]
        commands = list(dict.fromkeys(commands))
        commands.append(
            "salus " + shlex.join(sys.argv[1:]) if "evaluate" in sys.argv else "salus evaluate ..."
        )
        report["commands"] = commands
        md = format_markdown(report, commands=commands)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "results.json").write_text(json.dumps(_clean(report), indent=1) + "\n")
            (out / "results.md").write_text(md)
        if as_json:
            typer.echo(json.dumps(_clean(report)))
        else:
            typer.echo(md)


def _clean(value: object) -> object:
    """NaN -> null so the output is strict JSON."""
    import math

    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
