"""How the monitor turns scores into alarms, and the safe action it returns when the policy fails."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from salus.errors import InvalidInputError, InvalidNameError

__all__ = ["ATTRIBUTION_MODES", "MonitorConfig", "hold_action"]

ATTRIBUTION_MODES = ("alarm", "always", "never")


def hold_action(previous: np.ndarray | None, action_dim: int) -> np.ndarray:
    """The default safe action when the policy itself fails: no end-effector motion, gripper
    command unchanged (salus action layout ``dx, dy, dz, gripper``). (A,) or (B, A)."""
    if previous is None:
        return np.zeros(action_dim, dtype=np.float32)
    out = np.array(previous, dtype=np.float32, copy=True)
    out[..., :3] = 0.0
    return out


@dataclass(frozen=True)
class MonitorConfig:
    """How the monitor turns scores into alarms and explanations.

    ``alpha``: which calibrated band (None: the checkpoint's default). ``attribution``: when to
    compute the top signals ("alarm": only for environments in alarm, "always", "never").
    ``top_k``: how many signals to report. ``failsafe_alarm``: a fail-safe environment reports
    ``alarm`` True. ``safe_action``: what ``step`` returns for environments whose policy call failed
    ("hold": :func:`hold_action`; "raise": re-raise the policy's error). ``robot_state``: the
    observation key of the robot's state vector, which the robot-state signals read (its width is
    the checkpoint robot's ``state_dim``); ``"state"`` for salus's own layout, e.g.
    ``"observation.state"`` for a LeRobot-style observation.
    """

    alpha: float | None = None
    attribution: str = "alarm"
    top_k: int = 3
    failsafe_alarm: bool = True
    safe_action: str = "hold"
    robot_state: str = "state"

    def __post_init__(self) -> None:
        if not isinstance(self.robot_state, str) or not self.robot_state:
            raise InvalidInputError(
                f"robot_state must be the observation key of the robot's state vector (e.g. 'state'), "
                f"got {self.robot_state!r}"
            )
        if self.attribution not in ATTRIBUTION_MODES:
            raise InvalidNameError("attribution mode", self.attribution, ATTRIBUTION_MODES)
        if self.safe_action not in ("hold", "raise"):
            raise InvalidNameError("safe_action", self.safe_action, ("hold", "raise"))
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise InvalidInputError(f"top_k must be an int >= 0, got {self.top_k!r}")
        if self.alpha is not None and not 0.0 < float(self.alpha) < 1.0:
            raise InvalidInputError(f"alpha must be in (0, 1), got {self.alpha}")
