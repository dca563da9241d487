"""The assist job: what the monitor's alarm buys in closed loop (``salus assist``).

Handover to a person (the scripted expert) or a stop at the first alarm, on fresh episodes, at the
calibrated alphas and at equal cost (:mod:`salus.monitor.assist`). ``salus benchmark`` runs the same
job as a stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from salus._checks import SEED_MAX, check_range
from salus.errors import InvalidInputError
from salus.jobs.options import REQUIRED, argument, check_options, option, option_words
from salus.jobs.stages import coerce_fields

if TYPE_CHECKING:
    from salus.jobs.stages import Reporter

__all__ = ["AssistJob", "CLOSED_LOOP_MD"]

CLOSED_LOOP_MD = "closed_loop.md"


def _numbers(text: str, option: str, allowed: str, hi_open: bool) -> tuple[float, ...] | None:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise InvalidInputError(
            f"{option} must be comma-separated numbers in {allowed}, got {text!r}"
        ) from exc
    for v in values:
        check_range(v, f"every {option} value", 0, 1, lo_open=True, hi_open=hi_open)
    return values or None


@dataclass(frozen=True)
class AssistJob:
    """What ``salus assist`` simulates (each field is the option of the same name; see ``salus
    assist --help``): ``alphas`` and ``sweep_rates`` are comma lists, empty for the defaults."""

    data: Path = argument("The benchmark dataset the models were trained on.")
    models: Path = option(
        REQUIRED, "--models", "A directory of checkpoints of one split (`salus train --model all`)."
    )
    fresh: Path = option(
        REQUIRED,
        "--fresh",
        "Fresh episodes of the same policy and perturbation mix, collected with another --seed.",
    )
    out: Path = option(Path("runs/assist"), "--out", "Results folder (resumes).", out_dir=True)
    alphas: str = option(
        "", "--alphas", "Comma-separated alphas (default: salus.predictor.closed_loop.CLOSED_LOOP_ALPHAS)."
    )
    sweep_rates: str = option(
        "",
        "--sweep-rates",
        "Comma-separated help rates in (0, 1] whose thresholds the equal-cost curves simulate per group "
        "(default: salus.predictor.closed_loop.SWEEP_RATES).",
    )
    workers: int = option(
        1, "--workers", "Worker processes for the counterfactual episodes.", lo=1, aliases=("-w",)
    )
    seed: int = option(0, "--seed", "Seeds the random help requests and the bootstrap.", lo=0, hi=SEED_MAX)

    def __post_init__(self) -> None:
        coerce_fields(self)
        check_options(self)
        self.alpha_values()
        self.rate_values()

    def alpha_values(self) -> tuple[float, ...] | None:
        return _numbers(self.alphas, "--alphas", "(0, 1)", hi_open=True)

    def rate_values(self) -> tuple[float, ...] | None:
        return _numbers(self.sweep_rates, "--sweep-rates", "(0, 1]", hi_open=False)

    def argv(self) -> list[str]:
        """The ``salus assist`` arguments that run this job."""
        return ["assist", str(self.data), *option_words(self)]

    def run(self, reporter: Reporter) -> dict[str, Any]:
        """Run the closed loop (resumes); writes ``closed_loop.json`` and ``closed_loop.md``."""
        from salus.monitor.assist import run_assist
        from salus.predictor.tables import closed_loop_lines

        result = run_assist(
            self.data,
            self.models,
            self.fresh,
            self.out,
            alphas=self.alpha_values(),
            sweep_rates=self.rate_values(),
            workers=self.workers,
            seed=self.seed,
            say=reporter.say,
            progress=lambda k, n: reporter.progress("counterfactual episodes", k, n),
        )
        (self.out / CLOSED_LOOP_MD).write_text("\n".join(closed_loop_lines(result)) + "\n")
        return result
