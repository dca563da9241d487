"""What one report draws: an evaluation, the method it follows and the alarm level it shows.

The report computes no metric: every number comes from ``salus.predictor.evaluate`` (the protocol
module). :class:`ReportView` only looks things up in an :class:`~salus.predictor.Evaluation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from salus.errors import InvalidInputError, InvalidNameError

if TYPE_CHECKING:
    from salus.predictor.conformal import FunctionalBand
    from salus.predictor.evaluate import Evaluation, MethodScores

__all__ = ["ReportView", "TRAINED_FAMILIES", "GROUPS", "default_primary", "default_alpha"]

TRAINED_FAMILIES = ("salus", "safe", "oracle", "ablation")  # families of trained predictors
GROUPS = ("seen", "unseen")  # test groups of the protocol: training tasks, held-out tasks


def default_primary(ev: Evaluation) -> str:
    """The method the selection rule chose (``report["selection"]``), else the first trained predictor,
    else the first method."""
    picked = (ev.report.get("selection") or {}).get("selected")
    if picked:
        return str(picked)
    trained = [m.name for m in ev.methods if m.family in TRAINED_FAMILIES]
    if not ev.methods:
        raise InvalidInputError("the evaluation holds no method to report on")
    return trained[0] if trained else ev.methods[0].name


def default_alpha(alphas: list[float]) -> float:
    """0.1 when the protocol measured it, else the middle of the measured alphas."""
    for a in alphas:
        if math.isclose(a, 0.1):
            return a
    return sorted(alphas)[len(alphas) // 2]


@dataclass(frozen=True)
class ReportView:
    """One evaluation seen through one method (``primary``) at one alarm level (``alpha``, one of
    the protocol's alphas)."""

    evaluation: Evaluation
    primary: str
    alpha: float

    def __post_init__(self) -> None:
        names = [m.name for m in self.evaluation.methods]
        if self.primary not in names:
            raise InvalidNameError("method", self.primary, names)
        alphas = self.alphas
        match = [a for a in alphas if math.isclose(a, float(self.alpha))]
        if not match:
            raise InvalidInputError(
                f"alpha {self.alpha:g} was not evaluated; the evaluation has alphas {alphas}"
            )
        object.__setattr__(self, "alpha", match[0])

    @classmethod
    def of(cls, ev: Evaluation, primary: str | None = None, alpha: float | None = None) -> ReportView:
        """A view with the default method (:func:`default_primary`) and alpha (:func:`default_alpha`)."""
        alphas = [float(a) for a in ev.report["protocol"]["alphas"]]
        return cls(ev, primary or default_primary(ev), default_alpha(alphas) if alpha is None else alpha)

    @property
    def report(self) -> dict[str, Any]:
        return self.evaluation.report

    @property
    def alphas(self) -> list[float]:
        return [float(a) for a in self.report["protocol"]["alphas"]]

    @property
    def kinds(self) -> list[str]:
        """Threshold kinds the protocol calibrated (``band``, ``constant``)."""
        return [str(k) for k in self.report["protocol"]["thresholds"]]

    @property
    def control_hz(self) -> float:
        return float(self.report["protocol"]["control_hz"])

    @property
    def times(self) -> dict[str, int]:
        """T per task of the SAFE-comparable metric (the protocol's)."""
        return {str(k): int(v) for k, v in self.report["protocol"]["T"].items()}

    @property
    def groups(self) -> list[tuple[str, list[int]]]:
        """``[(group, episode indices)]`` of the non-empty test groups (seen, unseen)."""
        split = self.evaluation.split
        parts = {"seen": list(split.test_seen), "unseen": list(split.test_unseen)}
        return [(g, parts[g]) for g in GROUPS if parts[g]]

    def entry(self, method: str) -> dict[str, Any]:
        """The evaluation's result entry of one method (``report["methods"][k]``)."""
        for m in self.report["methods"]:
            if m["name"] == method:
                return dict(m)
        raise InvalidNameError("method", method, [m["name"] for m in self.report["methods"]])

    def method(self, name: str) -> MethodScores:
        for m in self.evaluation.methods:
            if m.name == name:
                return m
        raise InvalidNameError("method", name, [m.name for m in self.evaluation.methods])

    def alarms(self, method: str, group: str, kind: str, alpha: float | None = None) -> dict[str, Any]:
        """The protocol's alarm metrics of one method, group, threshold kind and alpha."""
        a = self.alpha if alpha is None else alpha
        return dict(self.entry(method)[group]["alarms"][kind][str(float(a))])

    def band(self, kind: str, method: str | None = None, alpha: float | None = None) -> FunctionalBand:
        """The threshold the evaluation calibrated (never refitted here)."""
        a = self.alpha if alpha is None else alpha
        return self.evaluation.bands[method or self.primary][kind][float(a)]

    def trained(self) -> list[str]:
        """Names of the trained predictors (families in :data:`TRAINED_FAMILIES`), primary first."""
        names = [m.name for m in self.evaluation.methods if m.family in TRAINED_FAMILIES]
        return [self.primary, *[n for n in names if n != self.primary]]
