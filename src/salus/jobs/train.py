"""The train job: failure predictors trained on a collected dataset, once per split seed.

``salus train`` builds a :class:`TrainJob` from its options and runs :func:`run_train`; ``salus
demo`` and ``salus benchmark`` run the same job. Every model gets an episode-level split (one task
or more held out, or one per split seed with ``rotate``), early stopping on validation and conformal
calibration; with several models, ``selection.json`` records which one validation (or
cross-validation on small data) chose. ``resume`` keeps a checkpoint trained on this dataset, this
split and this configuration.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from salus._checks import SEED_MAX, check_range
from salus.errors import DatasetError, InvalidInputError
from salus.jobs.options import REQUIRED, argument, check_options, option, option_words
from salus.jobs.stages import coerce_fields
from salus.predictor.config import SCORE_RAMP_S

if TYPE_CHECKING:
    from salus.jobs.stages import Reporter

__all__ = ["TrainJob", "TrainResult", "run_train", "parse_split_seeds", "DEFAULT_HORIZONS_TEXT"]

DEFAULT_HORIZONS_TEXT = "6,10,13,16"
#: ``progress(key, epochs done, epochs total, info)`` per model and split seed (key "name (seed s)");
#: ``info`` None: keep the last text
Progress = Callable[[str, int, int, str | None], None]


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


def parse_split_seeds(spec: str | None, default: int) -> list[int]:
    """``--split-seeds`` ("0,1,2") as distinct seeds in [0, 2**32 - 1]; ``[default]`` when empty."""
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


@dataclass(frozen=True)
class TrainJob:
    """What ``salus train`` trains (each field is the option of the same name; see ``salus train --help``).

    ``models``: a registered name, a comma list or ``all``; ``horizons`` / ``horizons_s``: comma lists
    in control steps / seconds (not both); ``split_seeds``: a comma list (one training per seed, into
    ``out/seed<S>/``); ``command``: the command line recorded in every checkpoint (default: the
    ``salus train`` line of :meth:`argv`).
    """

    data: Path = argument("A salus zarr dataset (from `salus collect`).")
    out: Path = option(REQUIRED, "--out", "Checkpoint directory.", out_dir=True)
    models: str = option("salus-tcn", "--model", lambda: _model_help())
    holdout_tasks: tuple[str, ...] = option(
        (),
        "--holdout-task",
        "Task never used for training/calibration ('unseen' test); repeatable. 'rotate': leave one task "
        "out per split seed, the j-th seed given holding out the j-th of the dataset's sorted tasks "
        "(modulo their number), so seeds as many as tasks hold out each once.",
    )
    epochs: int = option(60, "--epochs", "Maximum epochs (early stopping on validation loss).", lo=1)
    patience: int = option(8, "--patience", "Epochs without validation improvement before stopping.", lo=1)
    batch_episodes: int = option(32, "--batch-episodes", "Episodes per gradient step.", lo=1)
    lr: float = option(1e-3, "--lr", "AdamW learning rate.", lo=0, lo_open=True)
    seed: int = option(0, "--seed", "Seeds the split, initialisation and shuffling.", lo=0, hi=SEED_MAX)
    alpha: float = option(
        0.1,
        "--alpha",
        "Default alarm alpha stored in the checkpoint.",
        lo=0,
        hi=1,
        lo_open=True,
        hi_open=True,
    )
    max_train: int = option(
        0,
        "--max-train-episodes",
        "Keep at most this many training episodes (0: all); validation, calibration and test are "
        "unchanged (the data-efficiency curve of `salus benchmark`).",
        lo=0,
    )
    val_fraction: float = option(
        0.1, "--val-fraction", "Seen episodes for early stopping.", lo=0, hi=1, lo_open=True, hi_open=True
    )
    calib_fraction: float = option(
        0.2,
        "--calib-fraction",
        "Seen episodes whose successes calibrate the conformal bands.",
        lo=0,
        hi=1,
        lo_open=True,
        hi_open=True,
    )
    test_fraction: float = option(
        0.25,
        "--test-fraction",
        "Seen episodes kept for the 'seen' test.",
        lo=0,
        hi=1,
        lo_open=True,
        hi_open=True,
    )
    horizons: str | None = option(
        None,
        "--horizons",
        "Prediction horizons in control steps of the dataset's control rate, comma list, increasing "
        f"(default {DEFAULT_HORIZONS_TEXT}: 0.3-0.8 s at our Panda's 20 Hz, 0.6-1.6 s at 10 Hz).",
    )
    horizons_s: str | None = option(
        None,
        "--horizons-s",
        "Prediction horizons in seconds, comma list, increasing: converted to control steps with the "
        "dataset's control rate (each must be a whole number of steps). Not with --horizons.",
    )
    score_horizon: int = option(
        -1, "--score-horizon", "Index of the horizon whose probability is the alarm score (-1: longest)."
    )
    split_seeds: str | None = option(
        None,
        "--split-seeds",
        "Comma list of split seeds: every model is trained once per seed into OUT/seed<S>/<model> "
        "(`salus evaluate OUT DATA` then reports mean and spread over seeds).",
    )
    feature_groups: str | None = option(
        None,
        "--feature-groups",
        "For salus-risk / oracle-risk: comma list of feature groups (ablations); default: the model's own.",
    )
    objective: str | None = option(
        None,
        "--objective",
        "For salus-risk / oracle-risk: 'horizons' trains the seed's horizon target instead of the "
        "model's own (an ablation).",
    )
    score_ramp: float = option(
        SCORE_RAMP_S,
        "--score-ramp",
        "What our models add to their per-step score per second elapsed, so that the running max "
        "follows the current estimate (docs/predictor.md); 0: none. Published baselines keep their own score.",
        lo=0.0,
    )
    label: str | None = option(
        None, "--label", "Name of the trained model in results (default: the model name)."
    )
    resume: bool = option(
        False, "--resume", "Keep checkpoints that already exist under --out instead of retraining."
    )
    select: str = option(
        "auto",
        "--select",
        "How our model is chosen among the salus models: auto (validation with >= 60 validation "
        "episodes, else 5-fold cross-validation over training + validation), validation or cross-validation.",
    )
    command: str = ""

    def __post_init__(self) -> None:
        from salus.predictor.selection import selection_rule

        coerce_fields(self)
        check_options(self)
        self.model_names()  # an unknown model fails now, naming the registered ones
        seeds = self.seeds()
        selection_rule(self.select, 0)  # an unknown rule fails now, naming the rules
        if self.horizons is not None and self.horizons_s is not None:
            raise InvalidInputError("give --horizons (control steps) or --horizons-s (seconds), not both")
        self.model_configs()  # unknown feature groups or objectives fail before the data is read
        if self.horizons_s is None:  # (seconds need the dataset's control rate: checked in run_train)
            _train_config(self, _horizon_steps(self), seeds[0])  # fractions, score horizon, ...

    def argv(self) -> list[str]:
        """The ``salus train`` arguments that run this job."""
        return ["train", str(self.data), *option_words(self)]

    def run(self, reporter: Reporter) -> TrainResult:
        return run_train(self, progress=reporter.progress)

    def model_names(self) -> list[str]:
        from salus.predictor.config import MODEL_NAMES, check_model_name

        if self.models == "all":
            return list(MODEL_NAMES)
        return [check_model_name(s.strip()) for s in self.models.split(",") if s.strip()]

    def seeds(self) -> list[int]:
        return parse_split_seeds(self.split_seeds, self.seed)

    def groups(self) -> tuple[str, ...]:
        return tuple(g.strip() for g in (self.feature_groups or "").split(",") if g.strip())

    def model_configs(self) -> dict[str, Any]:
        """Every model's ``ModelConfig`` as asked (``run_train`` then drops what the data cannot feed)."""
        from salus.predictor import ModelConfig

        groups, objective = self.groups(), self.objective or ""

        def config_for(n: str) -> Any:
            features = ModelConfig(name=n).input_kind == "features"
            return ModelConfig(
                name=n, feature_groups=groups if features else (), objective=objective if features else ""
            )

        return {n: config_for(n) for n in self.model_names()}


@dataclass
class TrainResult:
    """One entry per trained (or kept) model and seed, and the selection per seed (several models)."""

    data: Path
    seeds: list[int]
    models: list[dict[str, Any]]
    selection: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The JSON document of ``salus train --json``."""
        out: dict[str, Any] = {"data": str(self.data), "seeds": self.seeds, "models": self.models}
        if self.selection:
            out["selection"] = self.selection
        return out


def _steps_from_seconds(seconds: str, data: Path) -> tuple[int, ...]:
    """``--horizons-s`` (seconds, comma list) as control steps at the dataset's control rate."""
    from salus.data import SalusDataset

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


def _horizon_steps(job: TrainJob) -> tuple[int, ...]:
    if job.horizons_s is not None:
        return _steps_from_seconds(job.horizons_s, job.data)
    text = DEFAULT_HORIZONS_TEXT if job.horizons is None else job.horizons
    try:
        return tuple(int(h) for h in text.split(",") if h.strip())
    except ValueError:
        raise InvalidInputError(f"--horizons must be a comma list of step counts, got {text!r}") from None


def _train_config(job: TrainJob, horizons: tuple[int, ...], seed: int, holdout: tuple[str, ...] = ()) -> Any:
    from salus.predictor import DEFAULT_ALPHAS, ConformalConfig, SplitConfig, TrainConfig

    return TrainConfig(
        seed=seed,
        horizons=horizons,
        score_horizon=job.score_horizon,
        max_epochs=job.epochs,
        patience=job.patience,
        batch_episodes=job.batch_episodes,
        lr=job.lr,
        score_ramp_s=job.score_ramp,
        split=SplitConfig(
            val_fraction=job.val_fraction,
            calib_fraction=job.calib_fraction,
            test_fraction=job.test_fraction,
            holdout_tasks=holdout,
            seed=seed,
            max_train=job.max_train,
        ),
        conformal=ConformalConfig(
            alphas=tuple(sorted({*DEFAULT_ALPHAS, float(job.alpha)})), alpha=float(job.alpha)
        ),
    )


def _model_configs(job: TrainJob, episodes: Any) -> dict[str, Any]:
    """Every model's ``ModelConfig``; ``all`` drops what the data cannot feed (the oracle without
    privileged state, the hidden group without recorded hidden states)."""

    configs = job.model_configs()
    readers = [n for n, c in configs.items() if c.input_kind in ("embedding", "features")]
    if readers and not episodes.has_embedding:
        raise DatasetError(
            f"{job.data} has no obs_embedding; {', '.join(readers)} need it (models that read signals or "
            "recorded baselines only: salus-mlp, salus-tcn, stac, ...)"
        )
    if job.models == "all" and any(ep.privileged is None for ep in episodes.episodes):
        configs.pop("oracle-risk", None)  # the oracle needs the simulator's privileged state
    if job.models == "all" and any(ep.hidden is None for ep in episodes.episodes):
        for n, c in list(configs.items()):
            if "hidden" in c.groups:
                configs[n] = replace(c, feature_groups=tuple(g for g in c.groups if g != "hidden"))
    return configs


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from a checkpoint's JSON (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def _kept(target: Path, episodes: Any, split: Any, tcfg: Any, cfg: Any) -> Any:
    """The checkpoint at ``target`` when it was trained on this dataset, split and configuration."""
    from salus.predictor.checkpoint import TrainedPredictor, is_checkpoint_dir

    if not is_checkpoint_dir(target):
        return None
    done = TrainedPredictor.load(target)
    same = (
        done.meta.get("dataset", {}).get("fingerprint") == episodes.fingerprint()
        and done.meta.get("split") == split.to_dict()  # e.g. another held-out task
        # and trained as asked now (e.g. not with another --score-ramp or --epochs)
        and _as_json(done.meta.get("train_config")) == _as_json(tcfg.to_dict())
        and _as_json(done.config.to_dict()) == _as_json(cfg.to_dict())  # (an old checkpoint's too)
    )
    return done if same else None


def _write_selection(base: Path, episodes: Any, split: Any, rule: str) -> dict[str, Any]:
    """Pick our model by ``salus.predictor.selection``'s rule (validation, or cross-validation
    when validation is small) and record it in selection.json, which ``Monitor.load``,
    ``salus evaluate`` and ``salus report`` follow."""
    from salus.predictor import TrainedPredictor
    from salus.predictor.discovery import read_selection_record, write_selection
    from salus.predictor.selection import select_model

    preds = [TrainedPredictor.load(d) for d in sorted(base.iterdir()) if (d / "predictor.json").is_file()]
    trained = {p.name: p.meta["files"].get("model.safetensors", "") for p in preds if not p.meta.get("label")}
    old = read_selection_record(base)
    if old and old.get("requested_rule") == rule and old.get("checkpoints") == trained:
        return old  # the same checkpoints: a resumed run keeps its (possibly cross-validated) choice
    sel = {**select_model(episodes, split, preds, rule=rule), "requested_rule": rule, "checkpoints": trained}
    write_selection(base, sel)
    return sel


def run_train(job: TrainJob, *, progress: Progress | None = None) -> TrainResult:
    """Run ``job``: every model of ``job.models`` once per split seed; returns what was trained."""
    from salus.data import SalusDataset
    from salus.predictor import episodes_from_dataset, split_episodes, train_model
    from salus.predictor.config import holdout_for_seed

    if not job.command:
        from salus.jobs.stages import command_line

        job = replace(job, command=command_line(job))
    seeds = job.seeds()
    horizons = _horizon_steps(job)
    if job.horizons_s is not None:  # the job checked the rest; seconds needed the dataset's control rate
        _train_config(job, horizons, seeds[0])
    dataset = SalusDataset(job.data)
    # the embedding also refits ood_distance's statistics on each split's training episodes
    episodes = episodes_from_dataset(dataset, embeddings="obs_embedding" in dataset.keys)
    configs = _model_configs(job, episodes)
    holdouts = [holdout_for_seed(job.holdout_tasks, episodes.tasks, j) for j in range(len(seeds))]
    multi = len(seeds) > 1 or job.split_seeds is not None
    result = TrainResult(job.data, seeds, [])
    for s, holdout in zip(seeds, holdouts, strict=True):
        tcfg = _train_config(job, horizons, s, holdout)
        split = split_episodes(episodes, tcfg.split)
        base = job.out / f"seed{s}" if multi else job.out
        for name, cfg in configs.items():
            shown = job.label if (job.label and len(configs) == 1) else name
            target = base if (len(configs) == 1 and not multi) else base / shown
            entry: dict[str, Any] = {
                "name": shown,
                "seed": s,
                "holdout_tasks": list(holdout),
                "path": str(target),
            }
            done = _kept(target, episodes, split, tcfg, cfg) if job.resume else None
            if done is not None:
                info = done.meta["training"]
                result.models.append(
                    {**entry, "resumed": True, "bands": done.band_status(),
                     **{k: info[k] for k in ("best_epoch", "epochs_run", "best_val_loss")}}
                )  # fmt: skip
                continue
            key = f"{shown} (seed {s})"
            if progress is not None:
                progress(key, 0, job.epochs, "")

            def on_epoch(log: Any, key: str = key) -> None:
                if progress is not None:
                    mark = " *" if log.best else ""
                    progress(
                        key, log.epoch, job.epochs, f"train {log.train_loss:.4f} val {log.val_loss:.4f}{mark}"
                    )

            trained = train_model(episodes, cfg, tcfg, split=split, on_epoch=on_epoch)
            info = trained.meta["training"]
            ran = int(info["epochs_run"])  # < epochs after early stopping
            if progress is not None:
                done_text = (
                    "fitted (training-free)"
                    if ran == 0
                    else (f"stopped early at epoch {ran} of {job.epochs}" if ran < job.epochs else None)
                )
                progress(key, max(ran, 1), max(ran, 1), done_text)  # fmt: skip
            trained.meta["command"] = job.command
            if shown != name:
                trained.meta["label"] = shown
            trained.save(target)
            result.models.append(
                {**entry, "best_epoch": info["best_epoch"], "epochs_run": info["epochs_run"],
                 "best_val_loss": info["best_val_loss"], "seconds": info.get("seconds"),
                 "bands": trained.band_status()}  # per alpha: can it fire, what it needs
            )  # fmt: skip
        if len(configs) > 1:
            result.selection[str(s)] = _write_selection(base, episodes, split, job.select)
    return result
