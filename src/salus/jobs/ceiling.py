"""The ceiling job: the Monte-Carlo ceiling of at-risk failure prediction (``salus ceiling``).

For a seeded sample of episodes at risk at each time, the recorded actions are replayed to that step
and the same policy continues K times; the share of failed continuations estimates P(fail)
(:mod:`salus.predictor.ceiling_replay`). ``salus benchmark`` runs the same job as a stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from salus._checks import check_range
from salus.errors import InvalidInputError
from salus.jobs.stages import coerce_fields

if TYPE_CHECKING:
    from salus.jobs.stages import Reporter
    from salus.predictor.ceiling_replay import CeilingConfig, CeilingResult

__all__ = ["MonteCarloCeilingJob", "parse_times"]

_FLAGS = {
    "policy": "--policy",
    "times": "--times",
    "k": "--k",
    "sample": "--sample",
    "seed": "--seed",
    "workers": "--workers",
    "out": "--out",
    "split_seed": "--split-seed",
    "holdout_tasks": "--holdout-task",
    "n_boot": "--n-boot",
}


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

    data: Path
    out: Path = Path("runs/ceiling")
    policy: str | None = None
    times: str = "1,2,3"
    k: int = 8
    sample: int = 200
    seed: int = 0
    workers: int = 1
    split_seed: int | None = None
    holdout_tasks: tuple[str, ...] = ()
    n_boot: int = 1000

    def __post_init__(self) -> None:
        coerce_fields(self)
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
        from salus.jobs.stages import option_words

        return ["ceiling", str(self.data), *option_words(self, _FLAGS)]

    def run(self, reporter: Reporter) -> CeilingResult:
        from salus.predictor.ceiling_replay import run_ceiling

        return run_ceiling(
            self.data,
            self.out,
            self.config(),
            say=reporter.say,
            progress=lambda n, total: reporter.progress("episodes continued", n, total),
        )
