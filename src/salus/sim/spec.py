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
    "FAILURE_TYPES",
    "STATE_LOW",
    "STATE_HIGH",
    "CUBE_HALF",
    "TABLE_CENTER",
    "TABLE_HALF",
    "OBJECT_REGION_LOW",
    "OBJECT_REGION_HIGH",
    "PRIVILEGED_DIM",
    "PRIVILEGED_NAMES",
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

# Bounds of the state vector (values are clipped to them; only extreme velocities ever are).
STATE_LOW = np.concatenate([JOINT_LOWER - 0.2, np.full(7, -50.0), [-0.01], [-2.0] * 3, [-1.0] * 4]).astype(
    np.float32
)
STATE_HIGH = np.concatenate([JOINT_UPPER + 0.2, np.full(7, 50.0), [0.1], [2.0] * 3, [1.0] * 4]).astype(
    np.float32
)

# Scene geometry read by the environment, the labels, the expert and the perturbations (metres).
CUBE_HALF = 0.02  # half the edge of every cube
TABLE_CENTER = np.array([0.35, 0.0])  # table top is z = 0
TABLE_HALF = np.array([0.55, 0.5])
OBJECT_REGION_LOW = np.array([0.38, -0.2])  # task objects are placed in this xy box
OBJECT_REGION_HIGH = np.array([0.62, 0.2])

# The physics failure labels (salus.sim.labels), in the order the predictor's per-type heads use.
FAILURE_TYPES = ("drop", "miss", "collision", "timeout")

# Privileged simulator state (``PandaEnv.privileged_state``), float32 (PRIVILEGED_DIM,): what a
# policy or a deployed monitor cannot see. Recorded by collection as the step key ``privileged`` for
# the predictor's oracle ceiling only (never an input of a deployable model). Per task object
# i in (0, 1) (zeros when the task has one object): position relative to the gripper (3), linear
# velocity (3), grasped, touching a finger, supported (flags); then the goal relative to object 0
# (xy), the distractor relative to object 0 (xy), and the robot-table contact force (N).
PRIVILEGED_NAMES: tuple[str, ...] = tuple(
    f"obj{i}_{f}"
    for i in (0, 1)
    for f in ("dx", "dy", "dz", "vx", "vy", "vz", "grasped", "touch", "supported")
) + ("goal_dx", "goal_dy", "distractor_dx", "distractor_dy", "table_force")
PRIVILEGED_DIM = len(PRIVILEGED_NAMES)
