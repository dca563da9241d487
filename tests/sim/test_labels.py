"""Each failure type is produced by a constructed episode and labelled at the step it happened."""

from __future__ import annotations

from typing import Any

import numpy as np

from salus.sim import ScriptedExpert, make_env, spec
from salus.sim.labels import COLLISION_FORCE_N, MISS_OPENING_M
from salus.sim.scene import CUBE_HALF, TABLE_CENTER, TABLE_HALF

OPEN = -1.0
CLOSE = 1.0


def _act(delta: np.ndarray, grip: float) -> np.ndarray:
    a = np.zeros(4, np.float32)
    a[:3] = np.clip(np.asarray(delta) / spec.POSITION_ACTION_SCALE_M, -1, 1)
    a[3] = grip
    return a


def _carry(env: Any, expert: ScriptedExpert, seed: int) -> tuple[dict[str, Any], int]:
    """Run the expert until the cube has been carried (held in the air) for three steps."""
    obs, _ = env.reset(seed=seed)
    expert.reset()
    held = 0
    while held < 3:
        obs, _, term, trunc, _ = env.step(expert.act(obs))
        assert not (term or trunc)
        up = env.unwrapped.object_pos(0)[2] > CUBE_HALF + 0.03
        held = held + 1 if env.unwrapped.carried(0) and up else 0
    return obs, env.unwrapped.step_count


def test_drop_when_gripper_opens_mid_carry() -> None:
    env = make_env("pick_place", render=False, max_steps=80)
    base = env.unwrapped
    obs, t_open = _carry(env, ScriptedExpert(env), seed=5)
    assert base.object_pos(0)[2] > CUBE_HALF + 0.03  # it is up in the air
    heights = {}
    while True:  # open and hold still until the step limit
        step = base.step_count
        obs, _, term, trunc, info = env.step(_act(np.zeros(3), OPEN))
        heights[step] = base.object_pos(0)[2]
        if term or trunc:
            break
    label = info["label"]
    assert label["failure_type"] == "drop" and not label["success"]
    assert t_open <= label["failure_step"] <= t_open + 2  # the fingers let go within 100 ms
    assert heights[label["failure_step"]] > CUBE_HALF + 0.01  # in the air when it left the gripper
    assert base.events[0] == (label["failure_step"], "drop")


def test_drop_then_recovery_is_a_success() -> None:
    env = make_env("pick_place", render=False, max_steps=150)
    expert = ScriptedExpert(env)
    obs, _ = _carry(env, expert, seed=2)
    for _ in range(3):
        obs, *_ = env.step(_act(np.zeros(3), OPEN))
    while True:
        obs, _, term, trunc, info = env.step(expert.act(obs))
        if term or trunc:
            break
    assert "drop" in [kind for _, kind in env.unwrapped.events]
    assert info["label"] == {"success": True, "failure_step": -1, "failure_type": "none"}


def test_miss_when_closing_beside_the_cube() -> None:
    env = make_env("pick_place", render=False, max_steps=60)
    base = env.unwrapped
    obs, _ = env.reset(seed=1)
    cube = base.object_pos(0)
    goal = np.array([cube[0] + 0.045, cube[1], CUBE_HALF + 0.003])  # fingers close along y, beside it
    close_step, states = None, {}
    while True:
        step = base.step_count
        ee = base.grip_pos()
        arrived = np.linalg.norm(goal - ee) < 0.006
        if arrived and close_step is None:
            close_step = step
        obs, _, term, trunc, info = env.step(_act(goal - ee, CLOSE if close_step is not None else OPEN))
        states[step] = obs["state"]
        if term or trunc:
            break
    label = info["label"]
    assert label["failure_type"] == "miss", label
    t = label["failure_step"]
    opening = spec.STATE_SLICES["gripper_opening"]
    assert close_step < t <= close_step + 15
    assert states[t][opening][0] < MISS_OPENING_M <= states[t - 1][opening][0]  # the step the fingers shut


def test_collision_when_driving_into_the_table() -> None:
    env = make_env("push", render=False, max_steps=60)
    base = env.unwrapped
    env.reset(seed=0)
    forces = {}
    while True:
        step = base.step_count
        obs, _, term, trunc, info = env.step(_act(np.array([0.0, 0.0, -0.02]), CLOSE))
        forces[step] = base.last_facts.robot_table_force
        if term or trunc:
            break
    label = info["label"]
    assert label["failure_type"] == "collision", label
    t = label["failure_step"]
    assert forces[t] > COLLISION_FORCE_N and all(forces[s] <= COLLISION_FORCE_N for s in range(t))


def test_object_knocked_off_table_is_collision_and_ends_episode() -> None:
    env = make_env("pick_place", render=False, max_steps=60)
    base = env.unwrapped
    env.reset(seed=0)
    edge_x = TABLE_CENTER[0] + TABLE_HALF[0]
    base.set_object_pose(0, np.array([edge_x - 0.05, 0.0]), 0.0)
    base.data.qvel[base._obj_dadr[0]] = 2.0  # sliding towards the edge
    xs = {}
    while True:
        step = base.step_count
        obs, _, term, trunc, info = env.step(_act(np.zeros(3), OPEN))
        xs[step] = base.object_pos(0)[0]
        if term or trunc:
            break
    assert term and not trunc
    label = info["label"]
    assert label["failure_type"] == "collision"
    t = label["failure_step"]
    assert xs[t] > edge_x and all(xs[s] <= edge_x for s in range(t))


def test_timeout_when_nothing_happens() -> None:
    env = make_env("stack", render=False, max_steps=25)
    env.reset(seed=0)
    for k in range(25):
        _, _, term, trunc, info = env.step(np.zeros(4, np.float32))
        assert not term and (trunc == (k == 24))
    assert info["label"] == {"success": False, "failure_step": 24, "failure_type": "timeout"}


def test_push_knocks_cube_out_of_grasp_and_drop_is_at_push_step() -> None:
    env = make_env("pick_place", render=False, max_steps=70, perturbations=[("push", 1.0)])
    expert = ScriptedExpert(env)
    drops = 0
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        expert.reset()
        while True:
            obs, _, term, trunc, info = env.step(expert.act(obs))
            if term or trunc:
                break
        push_step = info["perturbations"][0]["params"]["step"]
        first_step, first_kind = env.unwrapped.events[0] if env.unwrapped.events else (None, None)
        if first_kind == "drop":
            drops += 1
            assert push_step <= first_step <= push_step + 1
            if not info["label"]["success"]:
                assert info["label"] == {"success": False, "failure_step": first_step, "failure_type": "drop"}
    assert drops >= 2
