"""`salus train DATA --model NAME --out MODEL_DIR`: train failure predictors on a collected dataset."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from salus.cli._common import (
    in_range,
    out_dir,
    positive_int,
    seed_option,
)
from salus.predictor.config import SCORE_RAMP_S


def _model_help() -> str:
    """The ``--model`` help, from the model registry (one list of names)."""
    from salus.predictor.registry import get_model_spec, model_names

    trained = [n for n in model_names() if not get_model_spec(n).training_free]
    free = [n for n in model_names() if get_model_spec(n).training_free]
    return (
        f"A registered model ({', '.join(trained)}; the training-free baselines {', '.join(free)}, "
        "fitted on the training episodes, which run live like the others), a comma list, or 'all' "
        "(the trained models, one sub-directory each, without the baselines, which evaluation scores "
        "anyway; oracle-risk only when the data has `privileged`)."
    )


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        data: Path = typer.Argument(..., help="A salus zarr dataset (from `salus collect`)."),
        model: str = typer.Option(
            "salus-tcn",
            "--model",
            help=_model_help(),
        ),
        out: Path = typer.Option(..., "--out", callback=out_dir, help="Checkpoint directory."),
        holdout_tasks: list[str] = typer.Option(
            None,
            "--holdout-task",
            help="Task never used for training/calibration ('unseen' test); repeatable. 'rotate': "
            "leave one task out per split seed, the j-th seed given holding out the j-th of the "
            "dataset's sorted tasks (modulo their number), so seeds as many as tasks hold out each once.",
        ),
        epochs: int = typer.Option(
            60, "--epochs", callback=positive_int, help="Maximum epochs (early stopping on validation loss)."
        ),
        patience: int = typer.Option(
            8,
            "--patience",
            callback=positive_int,
            help="Epochs without validation improvement before stopping.",
        ),
        batch_episodes: int = typer.Option(
            32, "--batch-episodes", callback=positive_int, help="Episodes per gradient step."
        ),
        lr: float = typer.Option(
            1e-3, "--lr", callback=in_range(0, lo_open=True), help="AdamW learning rate."
        ),
        seed: int = typer.Option(
            0, "--seed", callback=seed_option, help="Seeds the split, initialisation and shuffling."
        ),
        alpha: float = typer.Option(
            0.1,
            "--alpha",
            callback=in_range(0, 1, lo_open=True, hi_open=True),
            help="Default alarm alpha stored in the checkpoint.",
        ),
        max_train: int = typer.Option(
            0,
            "--max-train-episodes",
            callback=in_range(0),
            help="Keep at most this many training episodes (0: all); validation, calibration and test "
            "are unchanged (the data-efficiency curve of `salus benchmark`).",
        ),
        val_fraction: float = typer.Option(
            0.1,
            "--val-fraction",
            callback=in_range(0, 1, lo_open=True, hi_open=True),
            help="Seen episodes for early stopping.",
        ),
        calib_fraction: float = typer.Option(
            0.2,
            "--calib-fraction",
            callback=in_range(0, 1, lo_open=True, hi_open=True),
            help="Seen episodes whose successes calibrate the conformal bands.",
        ),
        test_fraction: float = typer.Option(
            0.25,
            "--test-fraction",
            callback=in_range(0, 1, lo_open=True, hi_open=True),
            help="Seen episodes kept for the 'seen' test.",
        ),
        horizons: str = typer.Option(
            None,
            "--horizons",
            help="Prediction horizons in control steps of the dataset's control rate, comma list, "
            "increasing (default 6,10,13,16: 0.3-0.8 s at our Panda's 20 Hz, 0.6-1.6 s at 10 Hz).",
        ),
        horizons_s: str = typer.Option(
            None,
            "--horizons-s",
            help="Prediction horizons in seconds, comma list, increasing: converted to control steps "
            "with the dataset's control rate (each must be a whole number of steps). Not with --horizons.",
        ),
        score_horizon: int = typer.Option(
            -1,
            "--score-horizon",
            help="Index of the horizon whose probability is the alarm score (-1: longest).",
        ),
        threads: int = typer.Option(1, "--threads", callback=positive_int, help="torch CPU threads (>= 1)."),
        split_seeds: str = typer.Option(
            None,
            "--split-seeds",
            help="Comma list of split seeds: every model is trained once per seed into OUT/seed<S>/<model> "
            "(`salus evaluate OUT DATA` then reports mean and spread over seeds).",
        ),
        feature_groups: str = typer.Option(
            None,
            "--feature-groups",
            help="For salus-risk / oracle-risk: comma list of feature groups (ablations); "
            "default: the model's own.",
        ),
        objective: str = typer.Option(
            None,
            "--objective",
            help="For salus-risk / oracle-risk: 'horizons' trains the seed's horizon target instead of "
            "the model's own (an ablation).",
        ),
        score_ramp: float = typer.Option(
            SCORE_RAMP_S,
            "--score-ramp",
            callback=in_range(0.0),
            help="What our models add to their per-step score per second elapsed, so that the running "
            "max follows the current estimate (docs/predictor.md); 0: none. Published baselines keep "
            "their own score.",
        ),
        label: str = typer.Option(
            None, "--label", help="Name of the trained model in results (default: the model name)."
        ),
        resume: bool = typer.Option(
            False, "--resume", help="Keep checkpoints that already exist under --out instead of retraining."
        ),
        select: str = typer.Option(
            "auto",
            "--select",
            help="How our model is chosen among the salus models: auto (validation with >= 60 "
            "validation episodes, else 5-fold cross-validation over training + validation), "
            "validation or cross-validation.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Train predictors with an episode-level split, early stopping and conformal calibration."""
        import torch

        from salus.cli._common import RichReporter
        from salus.jobs.train import TrainJob

        torch.set_num_threads(threads)
        job = TrainJob(
            data=data, out=out, models=model, holdout_tasks=tuple(holdout_tasks or ()), epochs=epochs,
            patience=patience, batch_episodes=batch_episodes, lr=lr, seed=seed, alpha=alpha,
            max_train=max_train, val_fraction=val_fraction, calib_fraction=calib_fraction,
            test_fraction=test_fraction, horizons=horizons, horizons_s=horizons_s,
            score_horizon=score_horizon, split_seeds=split_seeds, feature_groups=feature_groups,
            objective=objective, score_ramp=score_ramp, label=label, resume=resume, select=select,
        )  # fmt: skip
        with RichReporter() as reporter:
            result = job.run(reporter)
        if as_json:
            typer.echo(json.dumps(result.summary()))
            return
        for r in result.models:
            loss = r["best_val_loss"]
            trained_text = (
                "fitted, no training"
                if not r["epochs_run"]
                else f"best epoch {r['best_epoch']}/{r['epochs_run']}, val loss "
                + (f"{loss:.4f}" if isinstance(loss, int | float) else "n/a")
            )
            held = f", unseen {', '.join(r['holdout_tasks'])}" if r["holdout_tasks"] else ""
            typer.echo(
                f"{r['name']} (seed {r['seed']}{held}): {trained_text} -> {r['path']}"
                f"{' (kept)' if r.get('resumed') else ''}"
            )
            for b in r["bands"]:
                typer.echo(f"  conformal band at {b['text']}")
