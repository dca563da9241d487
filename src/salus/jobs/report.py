"""The report job: an HTML page of the first split seed's evaluation (``salus report``).

The evaluation is the evaluate job's (:mod:`salus.jobs.evaluate`, first seed only); the page, its
figures and ``report.json`` are :func:`salus.monitor.report.render_report`'s. ``salus demo`` runs
the same job as its last stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from salus.jobs.options import REQUIRED, argument, option, option_words
from salus.jobs.stages import coerce_fields
from salus.predictor.config import DEFAULT_ALPHAS

if TYPE_CHECKING:
    from salus.jobs.evaluate import EvaluateJob
    from salus.jobs.stages import Reporter
    from salus.predictor.evaluate import Evaluation

__all__ = ["ReportJob", "ReportResult"]


@dataclass(frozen=True)
class ReportJob:
    """What ``salus report`` draws (each field is the option of the same name; see ``salus report
    --help``): ``alpha`` the alarm level the figures show (None: 0.1; the tables show every alpha),
    ``primary`` the method they follow (None: the validation pick)."""

    model_dir: Path = argument(
        "A checkpoint, a directory of checkpoints (`salus train --model all`), or of seed<S>/ directories "
        "(`salus train --split-seeds`; the first seed is drawn)."
    )
    data: Path = argument("The dataset the checkpoints were trained on.")
    out: Path = option(
        REQUIRED,
        "--out",
        "Directory for index.html, the PNG figures, results.json/.md and report.json.",
        out_dir=True,
    )
    alpha: float | None = option(
        None,
        "--alpha",
        "Alarm level the figures show (default 0.1; the tables show every alpha).",
        lo=0,
        hi=1,
        lo_open=True,
        hi_open=True,
    )
    primary: str | None = option(
        None, "--primary", "Method the figures follow (default: our predictor, as selection.json chose it)."
    )

    def __post_init__(self) -> None:
        coerce_fields(self)
        self.evaluate_job()  # a bad alpha fails now

    def evaluate_job(self) -> EvaluateJob:
        from salus.jobs.evaluate import EvaluateJob

        alphas = DEFAULT_ALPHAS if self.alpha is None else (*DEFAULT_ALPHAS, self.alpha)  # sorted, once each
        return EvaluateJob(self.model_dir, self.data, alphas, first_seed_only=True)

    def argv(self) -> list[str]:
        """The ``salus report`` arguments that run this job."""
        return ["report", str(self.model_dir), str(self.data), *option_words(self)]

    def run(self, reporter: Reporter) -> ReportResult:
        """Evaluate the first seed and draw the page."""
        from salus.jobs.evaluate import run_evaluate
        from salus.jobs.stages import command_line
        from salus.monitor.report import render_report

        result = run_evaluate(self.evaluate_job(), progress=lambda m: reporter.progress("report", 0, None, m))
        reporter.progress("report", 0, None, "drawing figures")
        evaluation = result.evaluations[0]
        index = render_report(
            evaluation,
            self.out,
            primary=self.primary,
            alpha=self.alpha,
            meta=result.meta,
            commands=[*result.commands, command_line(self)],
        )
        return ReportResult(index, evaluation)


@dataclass(frozen=True)
class ReportResult:
    """The page's ``index.html`` and the evaluation it draws."""

    index: Path
    evaluation: Evaluation
