"""The demo job: the main job, end to end on the embedded default policy (``salus demo``).

collect (the packaged SmolVLA under the perturbation mix) -> train every predictor with one task held
out -> calibrate and evaluate seen and unseen -> HTML report. Each stage is the job of the command a
user would run by hand, into one output folder, so rerunning resumes collection and every number
comes from the seeded jobs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from salus._checks import SEED_MAX
from salus.collect.config import DEFAULT_BATCH_SIZE
from salus.jobs.collect import CollectJob
from salus.jobs.evaluate import EvaluateJob
from salus.jobs.options import check_options, option, option_words
from salus.jobs.report import ReportJob
from salus.jobs.stages import Stage, coerce_fields, run_stages
from salus.jobs.train import TrainJob
from salus.policies.spec import DEFAULT_POLICY

if TYPE_CHECKING:
    from salus.jobs.stages import Reporter

__all__ = ["DemoJob", "DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoJob:
    """What ``salus demo`` runs (each field is the option of the same name; see ``salus demo --help``)."""

    out: Path = option(Path("runs/demo"), "--out", "Folder for the dataset, models and report.", out_dir=True)
    episodes: int = option(
        400, "--episodes", "Episodes to collect (resumed if present; >= 8).", lo=8, aliases=("-n",)
    )
    workers: int = option(2, "--workers", "Local collection worker processes.", lo=1, aliases=("-w",))
    seed: int = option(0, "--seed", "Seeds collection, splits and training.", lo=0, hi=SEED_MAX)
    holdout_task: str = option(
        "pick_color", "--holdout-task", "Task never used in training or calibration (unseen)."
    )
    models: str = option("all", "--models", "Predictors to train: 'all' or a comma-separated list.")
    epochs: int = option(30, "--epochs", "Maximum training epochs (early stopping applies).", lo=1)
    alpha: float = option(
        0.1, "--alpha", "Conformal alarm level for the report.", lo=0, hi=1, lo_open=True, hi_open=True
    )
    max_steps: int | None = option(
        None, "--max-steps", "Control steps per episode; default: the simulator's limit per task.", lo=1
    )
    policy: str = option(
        DEFAULT_POLICY,
        "--policy",
        "Policy spec: smolvla (the packaged SmolVLA, the default), builtin (the light, LeRobot-free "
        "option), or any spec `salus collect` takes.",
    )
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self) -> None:
        coerce_fields(self)
        check_options(self)
        self.stages()  # every stage's options are checked now, before the collection

    def argv(self) -> list[str]:
        """The ``salus demo`` arguments that run this job (the batch size is not an option)."""
        return ["demo", *option_words(self)]

    def stages(self) -> list[Stage]:
        data, models = self.out / "data.zarr", self.out / "models"
        collect = CollectJob(
            out=data, policy=self.policy, episodes=self.episodes, seed=self.seed, workers=self.workers,
            batch_size=self.batch_size, save_hidden=True, max_steps=self.max_steps,
        )  # fmt: skip
        # A larger calibration share than the default: the policy's successes are what the
        # conformal band is calibrated on, and alpha = 0.05 needs about 20 of them in the scoring half.
        train = TrainJob(
            data, models, models=self.models, holdout_tasks=(self.holdout_task,), seed=self.seed,
            epochs=self.epochs, alpha=self.alpha, calib_fraction=0.3,
        )  # fmt: skip
        evaluate = EvaluateJob(models, data, out=self.out / "evaluation")
        report = ReportJob(models, data, self.out / "report", alpha=self.alpha)
        return [
            Stage("collect", collect),
            Stage("train", train),
            Stage("evaluate", evaluate),
            Stage("report", report),
        ]

    def run(self, reporter: Reporter) -> DemoResult:
        return run_demo(self, reporter)


@dataclass
class DemoResult:
    """Where the demo's results went, and the time of this run."""

    results: Path
    report: Path
    seconds: float


def run_demo(job: DemoJob, reporter: Reporter) -> DemoResult:
    """Run the demo's stages (collection resumes), each on one torch thread (the commands' default)."""
    import torch

    torch.set_num_threads(1)
    job.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    run_stages(job.stages(), reporter)
    return DemoResult(
        job.out / "evaluation" / "results.md",
        job.out / "report" / "index.html",
        time.perf_counter() - started,
    )
