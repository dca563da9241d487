"""`salus train DATA --model NAME --out MODEL_DIR`: train failure predictors on a collected dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from salus.cli._common import (
    SEED_MAX,
    check_range,
    in_range,
    invoked_command,
    out_dir,
    positive_int,
    seed_option,
)
from salus.predictor.config import SCORE_RAMP_S


def _model_names(spec: str) -> list[str]:
    from salus.predictor.config import MODEL_NAMES, check_model_name

    if spec == "all":
        return list(MODEL_NAMES)
    return [check_model_name(s.strip()) for s in spec.split(",") if s.strip()]


def _write_selection(base: Path, episodes: Any, split: Any, directory: Path, rule: str) -> dict[str, Any]:
    """Pick our model by ``salus.predictor.selection``'s rule (validation, or cross-validation
    when validation is small) and record it in selection.json, which ``Monitor.load``,
    ``salus evaluate`` and ``salus report`` follow."""
    from salus.predictor import TrainedPredictor
    from salus.predictor.discovery import read_selection_record, write_selection
    from salus.predictor.selection import select_model

    preds = [TrainedPredictor.load(d) for d in sorted(base.iterdir()) if (d / "predictor.json").is_file()]
    trained = {p.name: p.meta["files"].get("model.safetensors", "") for p in preds if not p.meta.get("label")}
    old = read_selection_record(directory)
    if old and old.get("requested_rule") == rule and old.get("checkpoints") == trained:
        return old  # the same checkpoints: a resumed run keeps its (possibly cross-validated) choice
    sel = {**select_model(episodes, split, preds, rule=rule), "requested_rule": rule, "checkpoints": trained}
    write_selection(directory, sel)
    return sel


def _seeds(spec: str | None, default: int) -> list[int]:
    from salus.errors import InvalidInputError

    if not spec:
        return [default]
    try:
        seeds = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise InvalidInputError(f"--split-seeds must be a comma list of integers, got {spec!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise InvalidInputError(f"--split-seeds must list distinct integers, got {spec!r}")
    for s in seeds:
        check_range(s, "every --split-seeds seed", 0, SEED_MAX)
    return seeds


def _steps_from_seconds(seconds: str, steps: str | None, data: Path) -> tuple[int, ...]:
    """``--horizons-s`` (seconds, comma list) as control steps at the dataset's control rate."""
    from salus.data import SalusDataset
    from salus.errors import InvalidInputError

    if steps is not None:
        raise InvalidInputError("give --horizons (control steps) or --horizons-s (seconds), not both")
    try:
        values = [float(h) for h in seconds.split(",") if h.strip()]
    except ValueError:
        raise InvalidInputError(f"--horizons-s must be a comma list of seconds, got {seconds!r}") from None
    attrs = SalusDataset(data).attrs
    hz = float(attrs.get("control_hz") or (attrs.get("env") or {}).get("control_hz") or 20.0)
    out = []
    for sec in values:
        n = sec * hz
        if not (n > 0 and abs(n - round(n)) < 1e-6):
            raise InvalidInputError(
                f"--horizons-s: {sec:g} s is {n:g} control steps at {hz:g} Hz (the dataset's rate); "
                "give positive seconds that are whole steps"
            )
        out.append(int(round(n)))
    return tuple(out)


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from a checkpoint's JSON (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


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
        ctx: typer.Context,
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

        torch.set_num_threads(threads)
        from salus.predictor.checkpoint import TrainedPredictor, is_checkpoint_dir

        names = _model_names(model)
        seeds = _seeds(split_seeds, seed)
        from salus.predictor.selection import selection_rule

        selection_rule(select, 0)  # an unknown --select fails now, naming the rules
        alphas = tuple(sorted({*DEFAULT_ALPHAS, float(alpha)}))
        if horizons_s is not None:
            horizon_steps = _steps_from_seconds(horizons_s, horizons, data)
        else:
            horizons = "6,10,13,16" if horizons is None else horizons
            try:
                horizon_steps = tuple(int(h) for h in horizons.split(",") if h.strip())
            except ValueError:
                from salus.errors import InvalidInputError

                raise InvalidInputError(
                    f"--horizons must be a comma list of step counts, got {horizons!r}"
                ) from None
        groups = tuple(g.strip() for g in feature_groups.split(",") if g.strip()) if feature_groups else ()

        def train_config(s: int, holdout: tuple[str, ...] = ()) -> Any:
            return TrainConfig(
                seed=s,
                horizons=horizon_steps,
                score_horizon=score_horizon,
                max_epochs=epochs,
                patience=patience,
                batch_episodes=batch_episodes,
                lr=lr,
                score_ramp_s=score_ramp,
                split=SplitConfig(
                    val_fraction=val_fraction,
                    calib_fraction=calib_fraction,
                    test_fraction=test_fraction,
                    holdout_tasks=holdout,
                    seed=s,
                    max_train=max_train,
                ),
                conformal=ConformalConfig(alphas=alphas, alpha=float(alpha)),
            )

        train_config(seeds[0])  # a bad combination (--score-horizon, fractions) fails before the data is read

        def config_for(n: str) -> Any:
            features = ModelConfig(name=n).input_kind == "features"
            return ModelConfig(
                name=n,
                feature_groups=groups if features else (),
                objective=(objective or "") if features else "",
            )

        configs = {n: config_for(n) for n in names}
        dataset = SalusDataset(data)
        readers = [n for n, c in configs.items() if c.input_kind in ("embedding", "features")]
        needs_embedding = bool(readers)
        # the embedding also refits ood_distance's statistics on each split's training episodes
        episodes = episodes_from_dataset(
            dataset, embeddings=needs_embedding or "obs_embedding" in dataset.keys
        )
        from salus.predictor.config import holdout_for_seed

        holdouts = [
            holdout_for_seed(tuple(holdout_tasks or ()), episodes.tasks, j) for j in range(len(seeds))
        ]
        if needs_embedding and not episodes.has_embedding:
            from salus.errors import DatasetError

            raise DatasetError(
                f"{data} has no obs_embedding; {', '.join(readers)} need it (models that read signals or "
                "recorded baselines only: salus-mlp, salus-tcn, stac, ...)"
            )
        if model == "all" and any(ep.privileged is None for ep in episodes.episodes):
            configs.pop("oracle-risk", None)  # the oracle needs the simulator's privileged state
        if model == "all" and any(ep.hidden is None for ep in episodes.episodes):
            for n, c in list(configs.items()):
                if "hidden" in c.groups:
                    configs[n] = ModelConfig(
                        name=n, feature_groups=tuple(g for g in c.groups if g != "hidden")
                    )
        command = invoked_command(ctx)  # also when salus demo / benchmark run this stage
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
        multi = len(seeds) > 1 or split_seeds is not None
        selections: dict[str, Any] = {}
        with Progress(*columns, console=stderr_console) as bar:
            for s, holdout in zip(seeds, holdouts, strict=True):
                tcfg = train_config(s, holdout)
                split = split_episodes(episodes, tcfg.split)
                base = out / f"seed{s}" if multi else out
                for name, cfg in configs.items():
                    shown = label if (label and len(configs) == 1) else name
                    target = base if (len(configs) == 1 and not multi) else base / shown
                    if resume and is_checkpoint_dir(target):
                        done = TrainedPredictor.load(target)
                        if (
                            done.meta.get("dataset", {}).get("fingerprint") == episodes.fingerprint()
                            and done.meta.get("split") == split.to_dict()  # e.g. another held-out task
                            # and trained as asked now (e.g. not with another --score-ramp or --epochs)
                            and _as_json(done.meta.get("train_config")) == _as_json(tcfg.to_dict())
                            and _as_json(done.meta["model"].get("config")) == _as_json(cfg.to_dict())
                        ):
                            results.append(
                                {
                                    "name": shown,
                                    "seed": s,
                                    "holdout_tasks": list(holdout),
                                    "path": str(target),
                                    "resumed": True,
                                    "bands": done.band_status(),
                                    **{
                                        k: done.meta["training"][k]
                                        for k in ("best_epoch", "epochs_run", "best_val_loss")
                                    },
                                }
                            )
                            continue
                    job = bar.add_task(f"{shown} (seed {s})", total=epochs, info="")

                    def on_epoch(log: Any, job: Any = job) -> None:
                        bar.update(
                            job,
                            completed=log.epoch,
                            info=f"train {log.train_loss:.4f} val {log.val_loss:.4f}{' *' if log.best else ''}",
                        )

                    trained = train_model(episodes, cfg, tcfg, split=split, on_epoch=on_epoch)
                    ran = int(trained.meta["training"]["epochs_run"])  # < epochs after early stopping
                    bar.update(job, total=ran, completed=ran)
                    if ran == 0:
                        bar.update(job, total=1, completed=1, info="fitted (training-free)")
                    elif ran < epochs:
                        bar.update(job, info=f"stopped early at epoch {ran} of {epochs}")
                    trained.meta["command"] = command
                    if shown != name:
                        trained.meta["label"] = shown
                    trained.save(target)
                    info = trained.meta["training"]
                    results.append(
                        {
                            "name": shown,
                            "seed": s,
                            "holdout_tasks": list(holdout),
                            "path": str(target),
                            "best_epoch": info["best_epoch"],
                            "epochs_run": info["epochs_run"],
                            "best_val_loss": info["best_val_loss"],
                            "seconds": info.get("seconds"),
                            "bands": trained.band_status(),  # per alpha: can it fire, what it needs
                        }
                    )
                if len(configs) > 1:
                    selections[str(s)] = _write_selection(base, episodes, split, base, select)
        summary: dict[str, Any] = {"data": str(data), "seeds": seeds, "models": results}
        if len(selections) and as_json:
            summary["selection"] = selections
        if as_json:
            typer.echo(json.dumps(summary))
            return
        for r in results:
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
