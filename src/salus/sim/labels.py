"""Physics failure labels: per-step contact facts and the episode's event tracker.

Rules (control step ``t`` is the index of the ``step`` call, from 0; facts are measured after its
physics):

- ``drop``: an object that was *carried* after step ``t-1`` (touching both fingers, touching
  nothing else, neither the table nor another object, and its centre at least ``CARRY_LIFT_M``
  above its resting height on the table) touches neither both fingers nor any support after step
  ``t``. Event at ``t``. Placing (the object touches a support before the fingers let
  go) is not a drop.
- ``miss``: the gripper command switches to close while the grip point is within
  ``MISS_NEAR_XY_M`` (horizontally) of a task object and below ``MISS_LOW_Z_M``, and the fingers
  then reach an opening below ``MISS_OPENING_M`` with no object between them, before the command
  opens again. Event at the step where the fingers shut. Not used by ``push`` (no grasp).
- ``collision``: the robot presses on the table with a total normal force above
  ``COLLISION_FORCE_N`` (summed over its contacts with the table), or a task object leaves the table (its centre outside the table top or
  below ``OFF_TABLE_Z_M``). Event at that step; an object off the table also ends the episode.
- ``timeout``: no success and no event by the step limit: ``failure_step`` is the last step,
  ``max_steps - 1``.

An episode that succeeds is a success whatever happened before (an event followed by recovery).
A failed episode's label is its first event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from salus.sim._mujoco import mujoco
from salus.sim.spec import CUBE_HALF, FAILURE_TYPES

if TYPE_CHECKING:
    from salus.sim.env import PandaEnv

__all__ = [
    "FAILURE_TYPES",
    "Facts",
    "EventTracker",
    "CARRY_LIFT_M",
    "COLLISION_FORCE_N",
    "MISS_OPENING_M",
    "MISS_NEAR_XY_M",
    "MISS_LOW_Z_M",
    "OFF_TABLE_Z_M",
    "SUCCESS_XY_M",
]

CARRY_LIFT_M = 0.01
COLLISION_FORCE_N = 60.0
MISS_OPENING_M = 0.01
MISS_NEAR_XY_M = 0.06
MISS_LOW_Z_M = 0.08
OFF_TABLE_Z_M = -0.03
SUCCESS_XY_M = 0.03  # pick_place and push: cube centre within this of the target centre
STACK_XY_M = 0.02
LIFT_HEIGHT_M = 0.06  # pick_color: cube bottom this far above the table, held


@dataclass
class Facts:
    """What the physics says after one control step (per task object ``i``)."""

    obj_pos: np.ndarray  # (n, 3)
    grasped: np.ndarray  # (n,) bool, touching both fingers
    finger_touch: np.ndarray  # (n,) bool, touching a finger
    supported: np.ndarray  # (n,) bool, touching the table, another object or the distractor
    robot_table_force: float  # N, total normal force between robot geoms and the table
    opening: float  # m, between the fingers
    grip_pos: np.ndarray  # (3,)

    @staticmethod
    def measure(env: PandaEnv) -> Facts:
        m, d = env.model, env.data
        n = len(env.object_geoms)
        left = np.zeros(n, bool)
        right = np.zeros(n, bool)
        supported = np.zeros(n, bool)
        force = 0.0
        ncon = d.ncon
        if ncon:
            geoms = d.contact.geom[:ncon]
            obj_index = {g: i for i, g in enumerate(env.object_geoms)}
            supports = {env.table_geom, env.distractor_geom, *env.object_geoms}
            f6 = np.zeros(6)
            for k in range(ncon):
                g1, g2 = int(geoms[k, 0]), int(geoms[k, 1])
                for a, b in ((g1, g2), (g2, g1)):
                    i = obj_index.get(a)
                    if i is not None:
                        if env.left_finger_mask[b]:
                            left[i] = True
                        elif env.right_finger_mask[b]:
                            right[i] = True
                        elif b in supports:
                            supported[i] = True
                if (g1 == env.table_geom and env.robot_geom_mask[g2]) or (
                    g2 == env.table_geom and env.robot_geom_mask[g1]
                ):
                    mujoco.mj_contactForce(m, d, k, f6)
                    force += abs(float(f6[0]))
        return Facts(
            obj_pos=np.stack([d.xpos[b] for b in env.object_bodies]),
            grasped=left & right,
            finger_touch=left | right,
            supported=supported,
            robot_table_force=force,
            opening=env.gripper_opening,
            grip_pos=env.grip_pos(),
        )


class EventTracker:
    """Follows one episode: failure events (first one labels the episode) and success."""

    def __init__(self, env: PandaEnv) -> None:
        self.env = env
        self.task = env.task
        n = len(env.object_geoms)
        self.carried = np.zeros(n, bool)
        self.events: list[tuple[int, str]] = []
        self.success = False
        self.irrecoverable = False
        self._prev_closing = False
        self._close_watch = False  # a close attempt that may still become a miss
        self.last_facts: Facts | None = None

    def _event(self, step: int, kind: str) -> None:
        self.events.append((step, kind))

    def update(self, step: int, facts: Facts, closing: bool) -> None:
        env = self.env
        # drop
        for i in range(len(self.carried)):
            if self.carried[i] and not facts.grasped[i] and not facts.supported[i]:
                self._event(step, "drop")
            lifted = facts.obj_pos[i, 2] > CUBE_HALF + CARRY_LIFT_M
            self.carried[i] = bool(facts.grasped[i] and not facts.supported[i] and lifted)
        # miss
        if self.task != "push":
            if closing and not self._prev_closing:
                dxy = np.linalg.norm(facts.obj_pos[:, :2] - facts.grip_pos[:2], axis=1)
                self._close_watch = bool(dxy.min() < MISS_NEAR_XY_M and facts.grip_pos[2] < MISS_LOW_Z_M)
            if not closing:
                self._close_watch = False
            if self._close_watch:
                if facts.grasped.any():
                    self._close_watch = False
                elif facts.opening < MISS_OPENING_M:
                    self._event(step, "miss")
                    self._close_watch = False
        self._prev_closing = closing
        # collision
        if facts.robot_table_force > COLLISION_FORCE_N:
            self._event(step, "collision")
        off = [not env.on_table(p[:2]) or p[2] < OFF_TABLE_Z_M for p in facts.obj_pos]
        if any(off):
            self._event(step, "collision")
            self.irrecoverable = True
        self.success = self._success(facts)
        self.last_facts = facts

    def _success(self, f: Facts) -> bool:
        task = self.task
        pos = f.obj_pos
        resting = abs(pos[0, 2] - CUBE_HALF) < 0.006
        if task == "push":
            return bool(resting and np.linalg.norm(pos[0, :2] - self.env.goal_xy) < SUCCESS_XY_M)
        if task == "pick_place":
            return bool(
                resting
                and not f.finger_touch[0]
                and np.linalg.norm(pos[0, :2] - self.env.goal_xy) < SUCCESS_XY_M
            )
        if task == "stack":
            dz = pos[0, 2] - pos[1, 2]
            return bool(
                not f.finger_touch[0]
                and abs(pos[1, 2] - CUBE_HALF) < 0.006
                and abs(dz - 2 * CUBE_HALF) < 0.008
                and np.linalg.norm(pos[0, :2] - pos[1, :2]) < STACK_XY_M
            )
        if task == "pick_color":
            i = self.env.task_variant
            return bool(f.grasped[i] and pos[i, 2] - CUBE_HALF > LIFT_HEIGHT_M and not f.grasped[1 - i])
        raise AssertionError(task)

    def label(self, last_step: int) -> dict[str, Any]:
        """The episode label: success, or the first failure event, or timeout at ``last_step``."""
        if self.success:
            return {"success": True, "failure_step": -1, "failure_type": "none"}
        if self.events:
            step, kind = self.events[0]
            return {"success": False, "failure_step": int(step), "failure_type": kind}
        return {"success": False, "failure_step": int(last_step), "failure_type": "timeout"}
