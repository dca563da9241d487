"""The ceiling job: the Monte-Carlo ceiling of at-risk failure prediction (``salus ceiling``).

For a seeded sample of episodes at risk at each time, the recorded actions are replayed to that step
and the same policy continues K times; the share of failed continuations estimates P(fail)
(:mod:`salus.predictor.ceiling_replay`). ``salus benchmark`` runs the same job as a stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from salus._checks import SEED_MAX, check_range
from salus.errors import InvalidInputError
from salus.jobs.options import argument, check_options, option, option_words
from salus.jobs.stages import coerce_fields

if TYPE_CHECKING:
    from salus.jobs.stages import Reporter
    from salus.predictor.ceiling_replay import CeilingConfig, CeilingResult

__all__ = ["MonteCarloCeilingJob", "parse_times"]


def parse_times(text: str) -> tuple[tuple[float, ...], bool]:
    """``--times`` ("1,2,3,T") as (seconds, whether T is asked)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    at_T = "T" in items
    try:
        values = tuple(float(t) for t in items if t != "T")
    except ValueError as exc:
        raise InvalidInputError(
            f"--times must be comma-separated seconds > 0 or T (e.g. 1,2,3,T), got {text!r}"
        ) from exc
    if not values:
        raise InvalidInputError(
            f"--times must list at least one time in seconds > 0 (e.g. 1,2,3 or 1,2,3,T), got {text!r}"
        )
    for t in values:
        check_range(t, "every --times value", 0, lo_open=True)
    return values, at_T


@dataclass(frozen=True)
class MonteCarloCeilingJob:
    """What ``salus ceiling`` measures (each field is the option of the same name; see ``salus
    ceiling --help``); ``policy`` None: the policy that collected ``data``."""

    data: Path = argument("A dataset collected by `salus collect` in our simulator.")
    out: Path = option(Path("runs/ceiling"), "--out", "Results folder (resumes).", out_dir=True)
    policy: str | None = option(
        None,
        "--policy",
        "Policy spec (builtin, builtin:DIR, smolvla:PATH, ...); default: the policy that collected DATA "
        "(the ceiling is that policy's).",
    )
    times: str = option(
        "1,2,3",
        "--times",
        "At-risk times in seconds, comma-separated; T adds the step of the protocol's SAFE-prediction "
        "view (T - 2, T the shortest rollout).",
    )
    k: int = option(8, "--k", "Continuations per episode and time.", lo=1)
    sample: int = option(200, "--sample", "At most this many at-risk episodes per time (seeded).", lo=1)
    seed: int = option(
        0, "--seed", "Seeds the sample, the continuations and the bootstrap.", lo=0, hi=SEED_MAX
    )
    workers: int = option(1, "--workers", "Worker processes.", lo=1, aliases=("-w",))
    split_seed: int | None = option(
        None,
        "--split-seed",
        "Sample from the test part of this split (salus train's defaults) instead of every episode.",
        lo=0,
        hi=SEED_MAX,
    )
    holdout_tasks: tuple[str, ...] = option(
        (),
        "--holdout-task",
        "With --split-seed: the unseen task(s) of the split (repeatable); 'rotate': the task `salus train "
        "--holdout-task rotate` holds out for its first split seed.",
    )
    n_boot: int = option(1000, "--n-boot", "Bootstrap resamples of the 95% intervals.", lo=0)

    def __post_init__(self) -> None:
        coerce_fields(self)
        check_options(self)
        self.config()

    def config(self) -> CeilingConfig:
        from salus.predictor.ceiling_replay import CeilingConfig

        seconds, at_T = parse_times(self.times)
        return CeilingConfig(
            times_s=seconds,
            at_T=at_T,
            k=self.k,
            sample=self.sample,
            seed=self.seed,
            workers=self.workers,
            policy=self.policy,
            split_seed=self.split_seed,
            holdout_tasks=self.holdout_tasks,
            n_boot=self.n_boot,
        )

    def argv(self) -> list[str]:
        """The ``salus ceiling`` arguments that run this job."""
        return ["ceiling", str(self.data), *option_words(self)]

    def run(self, reporter: Reporter) -> CeilingResult:
        from salus.predictor.ceiling_replay import run_ceiling

        return run_ceiling(
            self.data,
            self.out,
            self.config(),
            say=reporter.say,
            progress=lambda n, total: reporter.progress("episodes continued", n, total),
        )
