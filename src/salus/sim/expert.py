"""Scripted experts: waypoint state machines on privileged simulator state.

Each task's expert reads true object and target positions from the simulator (not from the
observation) and steers the end effector towards waypoints with a proportional law
``action = clip(gain * (waypoint - ee) / POSITION_ACTION_SCALE_M, -1, 1)``. It re-plans when the
object is lost (e.g. dropped), so it recovers from mild perturbations and fails under strong ones.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from salus.sim import spec
from salus.sim.env import PandaEnv
from salus.sim.spec import CUBE_HALF

__all__ = ["ScriptedExpert"]

GAIN = 0.8
HOVER_M = 0.09  # above the object before descending
CARRY_Z_M = 0.13
CLOSE_STEPS = 6
RELEASE_STEPS = 4


class ScriptedExpert:
    """Waypoint expert for every task; ``act(obs) -> (4,)`` float32 in [-1, 1]."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        base = env.unwrapped
        if not isinstance(base, PandaEnv):
            raise TypeError(f"ScriptedExpert needs a salus PandaEnv, got {type(base).__name__}")
        self.env = base
        self.reset()

    def reset(self) -> None:
        """Forget the current plan (call at each episode start)."""
        self.phase = "approach"
        self.timer = 0

    # ------------------------------------------------------------------ helpers
    def _move(self, waypoint: np.ndarray, grip: float, ee: np.ndarray) -> np.ndarray:
        delta = GAIN * (np.asarray(waypoint) - ee) / spec.POSITION_ACTION_SCALE_M
        action = np.empty(4, dtype=np.float32)
        action[:3] = np.clip(delta, -1.0, 1.0)
        action[3] = grip
        return action

    def _held(self, i: int) -> bool:
        facts = self.env.last_facts
        return bool(facts is not None and facts.grasped[i])

    def act(self, observation: dict[str, Any] | None = None) -> np.ndarray:
        """One action for the current simulator state (``observation`` is not needed)."""
        task = self.env.task
        if task == "push":
            return self._push()
        if task == "pick_place":
            goal = np.array([*self.env.goal_xy, CUBE_HALF])
            return self._pick_and(0, goal)
        if task == "stack":
            base = self.env.object_pos(1)
            return self._pick_and(0, np.array([base[0], base[1], base[2] + 2 * CUBE_HALF]))
        if task == "pick_color":
            return self._pick_and(self.env.task_variant, None)
        raise AssertionError(task)

    def _pick_and(self, i: int, place: np.ndarray | None) -> np.ndarray:
        """Pick object ``i``; then place its centre at ``place`` (or hold it up when None)."""
        env = self.env
        ee = env.grip_pos()
        obj = env.object_pos(i)
        opening = env.gripper_opening
        self.timer += 1
        phase = self.phase
        if phase in ("lift", "carry", "lower") and not self._held(i):
            phase = "approach"  # lost it: start again
        if phase == "approach":
            way = np.array([obj[0], obj[1], obj[2] + HOVER_M])
            if np.linalg.norm(way[:2] - ee[:2]) < 0.008 and abs(way[2] - ee[2]) < 0.03 and opening > 0.07:
                phase = "descend"
            self._set(phase)
            return self._move(way, -1.0, ee)
        if phase == "descend":
            way = np.array([obj[0], obj[1], max(obj[2], CUBE_HALF) + 0.002])
            if np.linalg.norm(obj[:2] - ee[:2]) > 0.02:
                self._set("approach")
                return self._move(way, -1.0, ee)
            if abs(way[2] - ee[2]) < 0.006:
                self._set("close")
            return self._move(way, -1.0, ee)
        if phase == "close":
            way = np.array([obj[0], obj[1], max(obj[2], CUBE_HALF) + 0.002])
            if self.timer >= CLOSE_STEPS:
                self._set("lift" if self._held(i) else "reopen")
            return self._move(way, 1.0, ee)
        if phase == "reopen":
            if self.timer >= RELEASE_STEPS:
                self._set("approach")
            return self._move(ee + np.array([0, 0, 0.02]), -1.0, ee)
        if phase == "lift":
            way = np.array([ee[0], ee[1], CARRY_Z_M])
            if place is None:
                return self._move(way, 1.0, ee)
            if ee[2] > CARRY_Z_M - 0.03:
                self._set("carry")
            return self._move(way, 1.0, ee)
        assert place is not None
        offset = ee - obj  # keep the object's centre, not the grip point, on the waypoint
        if phase == "carry":
            way = np.array([place[0], place[1], CARRY_Z_M]) + np.array([offset[0], offset[1], 0.0])
            if np.linalg.norm(way[:2] - ee[:2]) < 0.006:
                self._set("lower")
            return self._move(way, 1.0, ee)
        if phase == "lower":
            way = place + offset + np.array([0.0, 0.0, 0.003])
            if np.linalg.norm(place[:2] - obj[:2]) > 0.02:
                self._set("carry")
            elif abs(obj[2] - place[2]) < 0.005:
                self._set("release")
            return self._move(way, 1.0, ee)
        if phase == "release":
            if self.timer >= RELEASE_STEPS:
                self._set("retreat")
            return self._move(ee, -1.0, ee)
        if phase == "retreat":
            if np.linalg.norm(place[:2] - obj[:2]) > 0.025 and self.timer > 6:
                self._set("approach")  # it slid off: try again
            return self._move(np.array([ee[0], ee[1], CARRY_Z_M]), -1.0, ee)
        raise AssertionError(phase)

    def _set(self, phase: str) -> None:
        if phase != self.phase:
            self.phase = phase
            self.timer = 0

    def _push(self) -> np.ndarray:
        """Close the gripper, go behind the cube (opposite the target) and push it along the line."""
        env = self.env
        ee = env.grip_pos()
        obj = env.object_pos(0)
        goal = env.goal_xy
        to_goal = goal - obj[:2]
        dist = float(np.linalg.norm(to_goal))
        direction = to_goal / max(dist, 1e-6)
        behind = obj[:2] - direction * (CUBE_HALF + 0.035)
        push_z = CUBE_HALF
        rel = ee[:2] - obj[:2]
        along = float(rel @ direction)  # negative when behind the cube
        across = float(rel @ np.array([-direction[1], direction[0]]))
        phase = self.phase
        if phase == "approach":
            way = np.array([behind[0], behind[1], max(ee[2], push_z + 0.07)])
            if np.linalg.norm(behind - ee[:2]) < 0.01:
                phase = "descend"
            self._set(phase)
            return self._move(way, 1.0, ee)
        if phase == "descend":
            way = np.array([behind[0], behind[1], push_z])
            if abs(ee[2] - push_z) < 0.01:
                self._set("push")
            return self._move(way, 1.0, ee)
        # push: aim through the cube towards the goal, correcting sideways drift
        if along > -0.01 or abs(across) > 0.025:
            self._set("retreat")
        if phase == "retreat":
            way = np.array([ee[0], ee[1], push_z + 0.08])
            if ee[2] > push_z + 0.06:
                self._set("approach")
            return self._move(way, 1.0, ee)
        lead = obj[:2] + direction * min(dist, 0.03) - direction * (CUBE_HALF + 0.012)
        way = np.array([lead[0], lead[1], push_z])
        action = self._move(way, 1.0, ee)
        action[:3] = np.clip(action[:3], -0.5, 0.5)
        return action
