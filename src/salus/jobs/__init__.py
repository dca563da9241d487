"""salus.jobs: the long-running jobs as typed specs and results, above every part and below the CLI.

A job takes a validated dataclass spec and returns a result object; the CLI commands are thin
wrappers that build the spec from their options, and the tests call the jobs directly (``salus
benchmark`` runs its evaluate stage as a job; ``salus demo`` and its other stages still chain the
commands). :mod:`salus.jobs.train` (``salus train``), :mod:`salus.jobs.evaluate`
(``salus evaluate``, ``salus report`` and the benchmark's evaluate stage) and
:mod:`salus.jobs.policy_train` (``salus policy train``, by architecture).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from salus._lazy import load_lazy

if TYPE_CHECKING:  # the lazy names below, for type checkers and editors (no import at run time)
    from salus.jobs.evaluate import EvaluateJob as EvaluateJob
    from salus.jobs.evaluate import EvaluateResult as EvaluateResult
    from salus.jobs.evaluate import run_evaluate as run_evaluate
    from salus.jobs.policy_train import POLICY_TRAINERS as POLICY_TRAINERS
    from salus.jobs.policy_train import PolicyTrainJob as PolicyTrainJob
    from salus.jobs.policy_train import run_policy_train as run_policy_train
    from salus.jobs.train import TrainJob as TrainJob
    from salus.jobs.train import TrainResult as TrainResult
    from salus.jobs.train import run_train as run_train

_LAZY: dict[str, str] = {
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
