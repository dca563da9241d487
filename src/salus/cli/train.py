"""`salus train DATA --model NAME --out MODEL_DIR`: train failure predictors on a collected dataset."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import typer


def _model_names(spec: str) -> list[str]:
    from salus.predictor.config import MODEL_NAMES, check_model_name

    if spec == "all":
        return list(MODEL_NAMES)
    return [check_model_name(s.strip()) for s in spec.split(",") if s.strip()]


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        data: Path = typer.Argument(..., help="A salus zarr dataset (from `salus collect`)."),
        model: str = typer.Option(
            "salus-tcn",
            "--model",
            help="salus-mlp, salus-tcn, safe-mlp, safe-lstm, a comma list, or 'all' (one sub-directory each).",
        ),
        out: Path = typer.Option(..., "--out", help="Checkpoint directory."),
        holdout_tasks: list[str] = typer.Option(
            None,
            "--holdout-task",
            help="Task never used for training/calibration ('unseen' test); repeatable.",
        ),
        epochs: int = typer.Option(
            60, "--epochs", help="Maximum epochs (early stopping on validation loss)."
        ),
        patience: int = typer.Option(
            8, "--patience", help="Epochs without validation improvement before stopping."
        ),
        batch_episodes: int = typer.Option(32, "--batch-episodes", help="Episodes per gradient step."),
        lr: float = typer.Option(1e-3, "--lr"),
        seed: int = typer.Option(0, "--seed", help="Seeds the split, initialisation and shuffling."),
        alpha: float = typer.Option(0.1, "--alpha", help="Default alarm alpha stored in the checkpoint."),
        val_fraction: float = typer.Option(0.1, "--val-fraction", help="Seen episodes for early stopping."),
        calib_fraction: float = typer.Option(
            0.2, "--calib-fraction", help="Seen episodes whose successes calibrate the conformal bands."
        ),
        test_fraction: float = typer.Option(
            0.25, "--test-fraction", help="Seen episodes kept for the 'seen' test."
        ),
        horizons: str = typer.Option(
            "6,10,13,16",
            "--horizons",
            help="Prediction horizons in control steps (20 Hz), comma list, increasing.",
        ),
        score_horizon: int = typer.Option(
            -1,
            "--score-horizon",
            help="Index of the horizon whose probability is the alarm score (-1: longest).",
        ),
        threads: int = typer.Option(1, "--threads", help="torch CPU threads."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Train predictors with an episode-level split, early stopping and conformal calibration."""
        import torch
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from salus.data import SalusDataset
        from salus.predictor import (
            DEFAULT_ALPHAS,
            ConformalConfig,
            ModelConfig,
            SplitConfig,
            TrainConfig,
            episodes_from_dataset,
            split_episodes,
            train_model,
        )

        torch.set_num_threads(max(1, threads))
        names = _model_names(model)
        alphas = tuple(sorted({*DEFAULT_ALPHAS, float(alpha)}))
        try:
            horizon_steps = tuple(int(h) for h in horizons.split(",") if h.strip())
        except ValueError:
            from salus.errors import InvalidInputError

            raise InvalidInputError(
                f"--horizons must be a comma list of step counts, got {horizons!r}"
            ) from None
        tcfg = TrainConfig(
            seed=seed,
            horizons=horizon_steps,
            score_horizon=score_horizon,
            max_epochs=epochs,
            patience=patience,
            batch_episodes=batch_episodes,
            lr=lr,
            split=SplitConfig(
                val_fraction=val_fraction,
                calib_fraction=calib_fraction,
                test_fraction=test_fraction,
                holdout_tasks=tuple(holdout_tasks or ()),
                seed=seed,
            ),
            conformal=ConformalConfig(alphas=alphas, alpha=float(alpha)),
        )
        needs_embedding = any(ModelConfig(name=n).input_kind == "embedding" for n in names)
        episodes = episodes_from_dataset(SalusDataset(data), embeddings=needs_embedding)
        if needs_embedding and not episodes.has_embedding:
            from salus.errors import DatasetError

            raise DatasetError(
                f"{data} has no obs_embedding; safe-mlp and safe-lstm need it (train salus-* only)"
            )
        split = split_episodes(episodes, tcfg.split)
        command = "salus " + shlex.join(sys.argv[1:]) if sys.argv and "train" in sys.argv else None
        results: list[dict[str, Any]] = []
        stderr_console = None
        if as_json:
            from rich.console import Console

            stderr_console = Console(stderr=True)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
        )
        with Progress(*columns, console=stderr_console) as bar:
            for name in names:
                job = bar.add_task(name, total=epochs, info="")

                def on_epoch(log: Any, job: Any = job) -> None:
                    bar.update(
                        job,
                        completed=log.epoch,
                        info=f"train {log.train_loss:.4f} val {log.val_loss:.4f}{' *' if log.best else ''}",
                    )

                trained = train_model(episodes, ModelConfig(name=name), tcfg, split=split, on_epoch=on_epoch)
                bar.update(job, completed=epochs)
                trained.meta["command"] = command
                target = out if len(names) == 1 else out / name
                trained.save(target)
                info = trained.meta["training"]
                results.append(
                    {
                        "name": name,
                        "path": str(target),
                        "best_epoch": info["best_epoch"],
                        "epochs_run": info["epochs_run"],
                        "best_val_loss": info["best_val_loss"],
                    }
                )
        summary = {
            "data": str(data),
            "split": {k: len(v) for k, v in split.to_dict().items()},
            "models": results,
        }
        if as_json:
            typer.echo(json.dumps(summary))
            return
        for r in results:
            typer.echo(
                f"{r['name']}: best epoch {r['best_epoch']}/{r['epochs_run']}, val loss {r['best_val_loss']:.4f} -> {r['path']}"
            )
