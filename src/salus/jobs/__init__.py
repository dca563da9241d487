"""salus.jobs: the long-running jobs as typed specs and results, above every part and below the CLI.

A job takes a validated dataclass spec and returns a result object; the CLI commands are thin
wrappers that build the spec from their options, and ``salus demo`` / ``salus benchmark`` and the
tests call the jobs directly. First resident: :mod:`salus.jobs.evaluate` (``salus evaluate``,
``salus report`` and the benchmark's evaluate stage).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from salus._lazy import load_lazy

if TYPE_CHECKING:  # the lazy names below, for type checkers and editors (no import at run time)
    from salus.jobs.evaluate import EvaluateJob as EvaluateJob
    from salus.jobs.evaluate import EvaluateResult as EvaluateResult
    from salus.jobs.evaluate import run_evaluate as run_evaluate

_LAZY: dict[str, str] = {
    "EvaluateJob": "salus.jobs.evaluate",
    "EvaluateResult": "salus.jobs.evaluate",
    "run_evaluate": "salus.jobs.evaluate",
}

__all__ = [*_LAZY]


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, name)
