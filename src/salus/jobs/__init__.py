"""salus.jobs: the long-running jobs as typed specs and results, above every part and below the CLI.

A job is a validated frozen dataclass (each field an option of its command) that runs itself with a
reporter and returns a result object; the CLI commands are thin wrappers that build the job from
their options, and the tests call the jobs directly. ``salus demo`` and ``salus benchmark`` are
lists of stages (:mod:`salus.jobs.stages`: a name and a job, whose ``argv`` is the command line the
results header prints). :mod:`salus.jobs.collect`, :mod:`salus.jobs.train`,
:mod:`salus.jobs.evaluate`, :mod:`salus.jobs.report`, :mod:`salus.jobs.ceiling`,
:mod:`salus.jobs.assist`, :mod:`salus.jobs.demo`, :mod:`salus.jobs.benchmark` and
:mod:`salus.jobs.policy_train` (``salus policy train``, by architecture).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from salus._lazy import load_lazy

if TYPE_CHECKING:  # the lazy names below, for type checkers and editors (no import at run time)
    from salus.jobs.assist import AssistJob as AssistJob
    from salus.jobs.benchmark import BenchmarkJob as BenchmarkJob
    from salus.jobs.benchmark import run_benchmark as run_benchmark
    from salus.jobs.ceiling import MonteCarloCeilingJob as MonteCarloCeilingJob
    from salus.jobs.collect import CollectJob as CollectJob
    from salus.jobs.collect import run_collect as run_collect
    from salus.jobs.demo import DemoJob as DemoJob
    from salus.jobs.demo import run_demo as run_demo
    from salus.jobs.evaluate import EvaluateJob as EvaluateJob
    from salus.jobs.evaluate import EvaluateResult as EvaluateResult
    from salus.jobs.evaluate import run_evaluate as run_evaluate
    from salus.jobs.policy_train import POLICY_TRAINERS as POLICY_TRAINERS
    from salus.jobs.policy_train import PolicyTrainJob as PolicyTrainJob
    from salus.jobs.policy_train import run_policy_train as run_policy_train
    from salus.jobs.report import ReportJob as ReportJob
    from salus.jobs.stages import Reporter as Reporter
    from salus.jobs.stages import SilentReporter as SilentReporter
    from salus.jobs.stages import Stage as Stage
    from salus.jobs.stages import run_stages as run_stages
    from salus.jobs.train import TrainJob as TrainJob
    from salus.jobs.train import TrainResult as TrainResult
    from salus.jobs.train import run_train as run_train

_LAZY: dict[str, str] = {
    "AssistJob": "salus.jobs.assist",
    "BenchmarkJob": "salus.jobs.benchmark",
    "run_benchmark": "salus.jobs.benchmark",
    "MonteCarloCeilingJob": "salus.jobs.ceiling",
    "CollectJob": "salus.jobs.collect",
    "run_collect": "salus.jobs.collect",
    "DemoJob": "salus.jobs.demo",
    "run_demo": "salus.jobs.demo",
    "ReportJob": "salus.jobs.report",
    "Reporter": "salus.jobs.stages",
    "SilentReporter": "salus.jobs.stages",
    "Stage": "salus.jobs.stages",
    "run_stages": "salus.jobs.stages",
    "EvaluateJob": "salus.jobs.evaluate",
    "EvaluateResult": "salus.jobs.evaluate",
    "run_evaluate": "salus.jobs.evaluate",
    "TrainJob": "salus.jobs.train",
    "PolicyTrainJob": "salus.jobs.policy_train",
    "POLICY_TRAINERS": "salus.jobs.policy_train",
    "run_policy_train": "salus.jobs.policy_train",
    "TrainResult": "salus.jobs.train",
    "run_train": "salus.jobs.train",
}

__all__ = [*_LAZY]


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, name)
