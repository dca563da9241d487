"""The policy-training job: scripted-expert demonstrations and behaviour cloning, per architecture.

``salus policy train`` builds a :class:`PolicyTrainJob` and runs :func:`run_policy_train`, which looks
the architecture up in ``POLICY_TRAINERS`` (name -> trainer function), so a new policy architecture
is one function and one entry. ``builtin``: demonstrations recorded in memory, then the built-in
flow-matching policy; ``smolvla``: demonstrations exported as a LeRobotDataset (or a given one),
then LeRobot's SmolVLAPolicy, checkpointed and resumable.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from salus._checks import SEED_MAX
from salus.errors import InvalidInputError, InvalidNameError
from salus.jobs.options import REQUIRED, check_options, option
from salus.jobs.stages import coerce_fields

__all__ = ["PolicyTrainJob", "run_policy_train", "POLICY_TRAINERS", "ProgressBar", "plain_log"]

#: Options that only the SmolVLA trainer reads, in the order the refusal lists them: job fields
#: (``dataset``, ``state_features``, ``init_from``) and recipe fields (the rest).
SMOLVLA_ONLY = ("dataset", "state_features", "checkpoint_every", "init_from", "hidden_size", "text_layers",
                "vision_layers", "image_size", "patch_size", "chunk_size", "n_action_steps", "num_steps")  # fmt: skip
SMOLVLA_RECIPE = tuple(k for k in SMOLVLA_ONLY if k not in ("dataset", "state_features", "init_from"))
RECIPE = ("steps", "batch_size", "lr")


class ProgressBar(Protocol):
    """What the jobs report progress to (``rich.progress.Progress`` is one)."""

    def add_task(self, description: str, total: float | None = ..., **fields: Any) -> Any: ...

    def update(self, task_id: Any, **kwargs: Any) -> None: ...


class _NoBar:
    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        return 0

    def update(self, task_id: Any, **kwargs: Any) -> None:
        return None


def plain_log(message: str) -> None:
    """A plain progress line on stderr when it is not a terminal (background runs logging to a file)."""
    if not sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)


#: Help texts ``salus policy demos`` shares with ``salus policy train``.
TASK_DEMOS_HELP = (
    "Per-task counts replacing --demos for the named tasks: TASK=N (repeat or comma-separate), "
    "e.g. push=300,pick_color=400."
)
STATE_FEATURES_HELP = (
    "Salus state groups in observation.state (comma-separated: joint_pos, joint_vel, gripper_opening, "
    "ee_pos, ee_quat, or all); default: all but joint_vel, as the built-in policy."
)
_SIZE = "smolvla only (default: the SmolVLATrainConfig field)."


@dataclass(frozen=True)
class PolicyTrainJob:
    """A policy to train into ``out``; each field is the ``salus policy train`` option of its name.

    ``tasks``: empty for every task; ``demos``: one count per task or ``{task: count}``, overridden per
    task by ``task_demos`` (``TASK=N`` items); the recipe (``steps``, ``batch_size``, ``lr`` and, for
    ``smolvla``, the model size and ``checkpoint_every``; :meth:`recipe`) None: the trainer's
    default. Checked in the order of the command's options: architecture, SmolVLA-only options,
    noise, tasks, counts.
    """

    out: Path = option(
        REQUIRED,
        "--out",
        "Folder to write the policy to (builtin: config.json, model.safetensors, stats.safetensors; "
        "smolvla: a LeRobot checkpoint folder).",
        out_dir=True,
    )
    arch: str = option("builtin", "--arch", "builtin (LeRobot-free) or smolvla (LeRobot's SmolVLAPolicy).")
    tasks: tuple[str, ...] = option(
        (), "--tasks", "Training tasks (repeat or comma-separate); default all.", aliases=("--task",)
    )
    demos: int | Mapping[str, int] = option(
        100, "--demos", "Successful expert demonstrations per task.", lo=1, cli_type=int
    )
    task_demos: tuple[str, ...] = option((), "--task-demos", TASK_DEMOS_HELP)
    seed: int = option(0, "--seed", "Seeds the demonstrations and the training.", lo=0, hi=SEED_MAX)
    demo_noise: float = option(
        0.0,
        "--demo-noise",
        "DART noise: every demonstration executes the expert action plus Gaussian noise of this std "
        "(normalised units, xyz only; labels stay clean). 0 keeps the original recipe. In [0, 1].",
        lo=0,
        hi=1,
    )
    image_shift: int = option(2, "--image-shift", "Random-shift augmentation in pixels.", lo=0)
    steps: int | None = option(None, "--steps", "Gradient steps (default: builtin 4000, smolvla 7000).", lo=1)
    batch_size: int | None = option(None, "--batch-size", "Default: builtin 64, smolvla 32.", lo=1)
    lr: float | None = option(
        None,
        "--lr",
        "Peak AdamW learning rate, > 0 (default: builtin 5e-4, smolvla 3e-4).",
        lo=0,
        lo_open=True,
    )
    dataset: Path | None = option(
        None,
        "--dataset",
        "smolvla: train on this LeRobot dataset (salus policy demos) instead of recording into OUT/demos "
        "(then --tasks, --demos, --task-demos, --demo-noise are not used).",
    )
    state_features: tuple[str, ...] | None = option(
        None, "--state-features", "smolvla: " + STATE_FEATURES_HELP
    )
    init_from: Path | None = option(
        None,
        "--init-from",
        "smolvla: start from this finished smolvla folder's weights (same size, tasks and dataset), with a "
        "fresh optimiser and schedule: train longer without starting over.",
    )
    checkpoint_every: int | None = option(
        None, "--checkpoint-every", "smolvla: steps between checkpoints (500).", lo=1
    )
    hidden_size: int | None = option(None, "--hidden-size", _SIZE + " VLM width (128).", lo=1)
    text_layers: int | None = option(None, "--text-layers", _SIZE + " (4).", lo=1)
    vision_layers: int | None = option(None, "--vision-layers", _SIZE + " (2).", lo=1)
    image_size: int | None = option(None, "--image-size", _SIZE + " Pixels (96).", lo=1)
    patch_size: int | None = option(None, "--patch-size", _SIZE + " Pixels (12).", lo=1)
    chunk_size: int | None = option(None, "--chunk-size", _SIZE + " (16).", lo=1)
    n_action_steps: int | None = option(None, "--n-action-steps", _SIZE + " (4).", lo=1)
    num_steps: int | None = option(None, "--num-steps", _SIZE + " Denoising steps (10).", lo=1)

    def __post_init__(self) -> None:
        from salus.policies.demonstrations import check_demo_noise, resolve_demo_counts, task_demo_counts
        from salus.sim import TASKS
        from salus.sim.tasks import check_tasks

        if self.arch not in POLICY_TRAINERS:
            raise InvalidNameError("policy architecture", self.arch, tuple(POLICY_TRAINERS))
        if self.arch != "smolvla":
            given = [k for k in SMOLVLA_ONLY if getattr(self, k) is not None]
            if given:
                flags = ["--" + k.replace("_", "-") for k in given]
                raise InvalidInputError(f"{flags} apply to --arch smolvla only")
        coerce_fields(self)
        object.__setattr__(self, "demo_noise", check_demo_noise(self.demo_noise))
        check_options(
            self, skip=() if isinstance(self.demos, int) else ("demos",)
        )  # a mapping: checked below
        object.__setattr__(self, "tasks", tuple(check_tasks(list(self.tasks) or list(TASKS))))
        if self.task_demos:
            if not isinstance(self.demos, int):
                raise InvalidInputError("task_demos overrides one count for every task: give demos as an int")
            object.__setattr__(self, "demos", task_demo_counts(self.tasks, self.demos, self.task_demos))
            object.__setattr__(self, "task_demos", ())
        resolve_demo_counts(self.tasks, self.demos)

    def recipe(self) -> dict[str, Any]:
        """The recipe fields given (the trainer's config takes its defaults for the rest)."""
        names = (*RECIPE, *SMOLVLA_RECIPE) if self.arch == "smolvla" else RECIPE
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    def recording(self) -> dict[str, Any]:
        """What the demonstrations were recorded with (stored with a LeRobot export)."""
        demos = dict(self.demos) if isinstance(self.demos, Mapping) else self.demos
        return {"recording": {"tasks": list(self.tasks), "demos_per_task": demos, "seed": self.seed,
                              "demo_noise": self.demo_noise}}  # fmt: skip


def record(
    bar: ProgressBar,
    job: PolicyTrainJob,
    image_size: int,
    cameras: tuple[str, ...] = ("front", "wrist"),
    log: Callable[[str], None] = plain_log,
) -> tuple[Any, float]:
    """Record the job's scripted-expert demonstrations; returns (Demonstrations, seconds)."""
    from salus.policies.demonstrations import record_demonstrations, resolve_demo_counts

    t0 = time.perf_counter()
    rec = bar.add_task(
        "demonstrations", total=sum(resolve_demo_counts(job.tasks, job.demos).values()), info=""
    )

    def on_demo(task: str, kept: int, total: int) -> None:
        bar.update(rec, advance=1, info=f"{task} {kept}/{total}")
        if kept == total:
            log(f"recorded {total} demonstrations of {task} ({time.perf_counter() - t0:.0f} s)")

    data = record_demonstrations(
        list(job.tasks), job.demos, seed=job.seed, image_size=image_size, cameras=cameras,
        demo_noise=job.demo_noise, progress=on_demo,
    )  # fmt: skip
    return data, time.perf_counter() - t0


def export(
    bar: ProgressBar, data: Any, out: Path, state_features: list[str], extra: dict[str, Any], overwrite: bool
) -> float:
    """Write demonstrations as a LeRobot dataset; returns the seconds it took."""
    from salus.policies.smolvla.lerobot_dataset import export_lerobot_dataset

    t0 = time.perf_counter()
    task = bar.add_task("LeRobot dataset", total=data.num_episodes, info=str(out))
    export_lerobot_dataset(
        data, out, state_features=state_features, overwrite=overwrite, extra=extra,
        progress=lambda k, n: bar.update(task, completed=k),
    )  # fmt: skip
    return time.perf_counter() - t0


def _step_reporter(
    bar: ProgressBar, total: int, log: Callable[[str], None], t0: float
) -> Callable[[int, int, float], None]:
    """Training progress: the bar, and a plain log line every 100 steps timed from ``t0`` (the job's start)."""
    fit = bar.add_task("training", total=total, info="")

    def on_step(step: int, steps: int, loss: float) -> None:
        bar.update(fit, completed=step, info=f"loss {loss:.4f}")
        if step % 100 == 0:
            log(f"step {step}/{steps} loss {loss:.4f} ({time.perf_counter() - t0:.0f} s)")

    return on_step


def train_builtin(job: PolicyTrainJob, bar: ProgressBar, log: Callable[[str], None]) -> dict[str, Any]:
    """Demonstrations in memory, then the built-in flow-matching policy; writes ``job.out``."""
    from salus.policies.builtin.configuration_builtin import BuiltinConfig
    from salus.policies.builtin.modeling_builtin import save_pretrained
    from salus.policies.builtin.training import TrainConfig, train_policy

    t0 = time.perf_counter()
    train_cfg = TrainConfig(image_shift=job.image_shift, seed=job.seed, **job.recipe())
    model_cfg = BuiltinConfig()
    data, record_s = record(bar, job, model_cfg.image_size, tuple(model_cfg.cameras), log)
    model, stats, out_log = train_policy(
        data, model_cfg, train_cfg, progress=_step_reporter(bar, train_cfg.steps, log, t0)
    )
    demos = dict(job.demos) if isinstance(job.demos, Mapping) else job.demos
    out_log.update(record_seconds=round(record_s, 1), tasks=list(job.tasks), demos_per_task=demos,
                   demo_noise=job.demo_noise)  # fmt: skip
    model.config.extra = {"tasks": list(job.tasks), "training": out_log}
    save_pretrained(job.out, model, stats)
    (job.out / "train_log.json").write_text(json.dumps(out_log, indent=2) + "\n")
    return out_log


def train_smolvla_job(job: PolicyTrainJob, bar: ProgressBar, log: Callable[[str], None]) -> dict[str, Any]:
    """Demonstrations exported as a LeRobotDataset (``OUT/demos``, or ``job.dataset``), then LeRobot's
    SmolVLAPolicy; rerunning the same job after a kill resumes from the last checkpoint."""
    from salus.policies.smolvla.lerobot_dataset import (
        DEFAULT_STATE_FEATURES,
        read_lerobot_dataset,
        state_layout,
    )
    from salus.policies.smolvla.training import SmolVLATrainConfig, train_smolvla

    t0 = time.perf_counter()
    cfg = SmolVLATrainConfig(seed=job.seed, image_shift=job.image_shift, **job.recipe())
    features = list(job.state_features) if job.state_features else list(DEFAULT_STATE_FEATURES)
    state_layout(features)
    recording = job.recording()
    root = Path(job.dataset) if job.dataset is not None else job.out / "demos"
    record_s = export_s = 0.0
    if not root.exists():
        if job.dataset is not None:
            raise InvalidInputError(
                f"--dataset {job.dataset} does not exist; write it with `salus policy demos`"
            )
        data, record_s = record(bar, job, cfg.image_size, log=log)
        export_s = export(bar, data, root, features, recording, overwrite=False)
    demos = read_lerobot_dataset(root)
    if job.dataset is None and demos.salus.get("recording") != recording["recording"]:
        raise InvalidInputError(
            f"{root} was recorded with {demos.salus.get('recording')}, not {recording['recording']}; "
            f"rerun with the same options to resume, or delete {root}"
        )
    extra = {
        "dataset": str(root),
        "tasks": sorted(set(demos.salus.get("tasks", []))),
        "record_seconds": round(record_s, 1),
        "export_seconds": round(export_s, 1),
        **{k: v for k, v in demos.salus.items() if k in ("recording", "state_features")},
    }
    return train_smolvla(
        demos,
        job.out,
        cfg,
        init_from=job.init_from,
        extra_log=extra,
        progress=_step_reporter(bar, cfg.steps, log, t0),
    )


#: Policy architectures -> their trainer ``(job, bar, log) -> train log``: one function and one entry each.
POLICY_TRAINERS: dict[str, Callable[[PolicyTrainJob, ProgressBar, Callable[[str], None]], dict[str, Any]]] = {
    "builtin": train_builtin,
    "smolvla": train_smolvla_job,
}


def run_policy_train(
    job: PolicyTrainJob, *, bar: ProgressBar | None = None, log: Callable[[str], None] = plain_log
) -> dict[str, Any]:
    """Run ``job`` with its architecture's trainer; returns the training log."""
    return POLICY_TRAINERS[job.arch](job, bar or _NoBar(), log)
