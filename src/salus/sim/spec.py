"""Fixed layout of the simulator's observation and action vectors, shared by every part of salus.

Cheap to import (numpy only): policies, signals and the monitor read these constants instead of
importing MuJoCo.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CONTROL_HZ",
    "CONTROL_DT",
    "ACTION_DIM",
    "ACTION_NAMES",
    "POSITION_ACTION_SCALE_M",
    "STATE_DIM",
    "STATE_SLICES",
    "JOINT_LOWER",
    "JOINT_UPPER",
    "GRIPPER_MAX_OPENING_M",
    "WORKSPACE_LOW",
    "WORKSPACE_HIGH",
    "DEFAULT_IMAGE_SIZE",
    "CAMERA_NAMES",
]

CONTROL_HZ = 20
CONTROL_DT = 1.0 / CONTROL_HZ

# Action: end-effector position delta (normalised to [-1, 1], times POSITION_ACTION_SCALE_M metres
# per control step) and a gripper command (> 0 closes, <= 0 opens). Orientation is held top-down.
ACTION_NAMES = ("dx", "dy", "dz", "gripper")
ACTION_DIM = len(ACTION_NAMES)
POSITION_ACTION_SCALE_M = 0.02

# Proprioceptive state vector, float32 (STATE_DIM,).
STATE_SLICES: dict[str, slice] = {
    "joint_pos": slice(0, 7),
    "joint_vel": slice(7, 14),
    "gripper_opening": slice(14, 15),  # metres between the fingers, 0 .. GRIPPER_MAX_OPENING_M
    "ee_pos": slice(15, 18),  # metres, world frame
    "ee_quat": slice(18, 22),  # (w, x, y, z), world frame
}
STATE_DIM = 22

# Joint limits of the Panda model we load (radians), from its MJCF.
JOINT_LOWER = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -1.6573, -2.8973], dtype=np.float32)
JOINT_UPPER = np.array([2.8973, 1.7628, 2.8973, -0.4, 2.8973, 2.1127, 2.8973], dtype=np.float32)
GRIPPER_MAX_OPENING_M = 0.08

# Axis-aligned box the end effector is allowed to move in (metres, world frame).
WORKSPACE_LOW = np.array([0.25, -0.35, 0.0], dtype=np.float32)
WORKSPACE_HIGH = np.array([0.80, 0.35, 0.45], dtype=np.float32)

DEFAULT_IMAGE_SIZE = 96
CAMERA_NAMES = ("front", "wrist")
