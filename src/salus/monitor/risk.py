"""What the monitor reports for one control step: :class:`Risk` and the signals that drove it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Risk", "SignalContribution"]


@dataclass(frozen=True)
class SignalContribution:
    """One signal's share of an environment's failure score at this step.

    ``contribution``: how much the score drops if this signal is set to its typical (training-mean)
    value, all else equal (leave-one-out on the normalised features). ``value``: the raw signal;
    ``z``: how many training standard deviations it is from the mean.
    """

    name: str
    contribution: float
    value: float
    z: float

    def __str__(self) -> str:
        return f"{self.name} {self.contribution:+.3f} (value {self.value:.3g}, {self.z:+.1f} sd)"


@dataclass
class Risk:
    """The monitor's verdict for one control step of B environments.

    ``probability`` (B, P): failure probability within each horizon (``horizons_s`` seconds; SAFE
    models: P = 1, their trajectory score). ``score`` (B,): the running maximum of the monitored
    score over the episode; ``threshold`` (B,): the band's upper edge at this step (inf: the band
    never alarms). ``exceeded`` (B,): score > threshold. ``alarm`` (B,): exceeded, or fail-safe when
    ``failsafe_alarm``. ``failsafe`` (B,) and ``reason`` (B strings or None). ``top_signals``: per
    environment, the signals that drove the score (empty unless attribution ran). ``step`` (B,):
    the step index inside each environment's episode. ``type_probability`` (B, K): probability of
    each of ``failure_types`` within the monitored horizon (salus models; None for SAFE models).
    NaN marks values a fail-safe step lacks.
    """

    probability: np.ndarray
    horizons_s: tuple[float, ...]
    score: np.ndarray
    threshold: np.ndarray
    exceeded: np.ndarray
    alarm: np.ndarray
    failsafe: np.ndarray
    reason: list[str | None]
    top_signals: list[list[SignalContribution]]
    step: np.ndarray
    alpha: float
    failure_types: tuple[str, ...] = ()
    type_probability: np.ndarray | None = None

    @property
    def batch_size(self) -> int:
        return int(self.alarm.shape[0])

    @property
    def any_alarm(self) -> bool:
        return bool(self.alarm.any())

    def describe(self, env_index: int = 0) -> str:
        """One line a person can act on, for one environment."""
        i = env_index
        if self.failsafe[i]:
            return f"env {i} step {int(self.step[i])}: FAIL-SAFE ({self.reason[i]})"
        probs = ", ".join(
            f"{'episode' if math.isinf(h) else f'{h:.2f}s'} {p:.2f}"
            for h, p in zip(self.horizons_s, self.probability[i], strict=False)
        )
        state = "ALARM" if self.alarm[i] else "ok"
        line = (
            f"env {i} step {int(self.step[i])}: {state} score {self.score[i]:.3f} / threshold "
            f"{self.threshold[i]:.3f} (alpha {self.alpha:g}); P(fail within) {probs}"
        )
        if self.type_probability is not None and self.failure_types:
            k = int(np.nanargmax(self.type_probability[i]))
            line += f"; most likely {self.failure_types[k]} ({self.type_probability[i, k]:.2f})"
        if self.top_signals[i]:
            line += "; driven by " + "; ".join(str(c) for c in self.top_signals[i])
        return line
