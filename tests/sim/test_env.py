"""The environment: Gymnasium API, observation layout, determinism and clear errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from salus.errors import InvalidInputError, InvalidNameError
from salus.sim import TASKS, make_env, spec, task_text, task_texts


def test_check_env_with_images() -> None:
    env = make_env("pick_place", image_size=32, max_steps=20)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_check_env_physics_only_every_task() -> None:
    for task in TASKS:
        env = make_env(task, render=False, max_steps=10)
        check_env(env.unwrapped, skip_render_check=True)
        assert "image_front" not in env.observation_space.spaces


def test_observation_layout_and_images() -> None:
    env = make_env("stack", image_size=48)
    obs, info = env.reset(seed=3)
    assert set(obs) == {"image_front", "image_wrist", "state", "task"}
    for cam in ("front", "wrist"):
        img = obs[f"image_{cam}"]
        assert img.shape == (48, 48, 3) and img.dtype == np.uint8
        assert img.std() > 5  # a real rendered scene, not a blank frame
    state = obs["state"]
    assert state.shape == (spec.STATE_DIM,) and state.dtype == np.float32
    assert abs(state[spec.STATE_SLICES["gripper_opening"]][0] - spec.GRIPPER_MAX_OPENING_M) < 0.005
    quat = state[spec.STATE_SLICES["ee_quat"]]
    assert abs(abs(quat[1]) - 1.0) < 0.02  # gripper pointing straight down
    ee = state[spec.STATE_SLICES["ee_pos"]]
    assert np.all(ee >= spec.WORKSPACE_LOW) and np.all(ee <= spec.WORKSPACE_HIGH)
    assert np.all(state[:7] >= spec.JOINT_LOWER) and np.all(state[:7] <= spec.JOINT_UPPER)
    assert obs["task"] == task_text("stack")
    assert obs["task"] in env.observation_space["task"]
    # The wrist camera sees different things from the front camera.
    assert not np.array_equal(obs["image_front"], obs["image_wrist"])
    env.close()


def test_action_moves_end_effector_by_scale() -> None:
    env = make_env("pick_place", render=False)
    obs, _ = env.reset(seed=0)
    ee0 = obs["state"][spec.STATE_SLICES["ee_pos"]].copy()
    for _ in range(5):
        obs, *_ = env.step(np.array([1.0, 0.0, 0.0, -1.0], np.float32))
    moved = obs["state"][spec.STATE_SLICES["ee_pos"]] - ee0
    assert 5 * spec.POSITION_ACTION_SCALE_M * 0.6 < moved[0] < 5 * spec.POSITION_ACTION_SCALE_M * 1.1
    assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01
    for _ in range(12):  # close the gripper on nothing (high above the table)
        obs, *_ = env.step(np.array([0.0, 0.0, 0.0, 1.0], np.float32))
    assert obs["state"][spec.STATE_SLICES["gripper_opening"]][0] < 0.01


def test_same_seed_same_trajectory() -> None:
    from salus.sim import ScriptedExpert

    runs = []
    for _ in range(2):
        env = make_env("pick_place", image_size=24, max_steps=30)
        expert = ScriptedExpert(env)
        obs, _ = env.reset(seed=11)
        expert.reset()
        states, images = [obs["state"]], [obs["image_front"]]
        for _ in range(30):
            obs, _, term, trunc, _ = env.step(expert.act(obs))
            states.append(obs["state"])
            images.append(obs["image_front"])
            if term or trunc:
                break
        runs.append((np.stack(states), np.stack(images)))
        env.close()
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_seeds_randomise_scene_and_reset_is_repeatable() -> None:
    env = make_env("pick_color", render=False)
    base = env.unwrapped
    positions, texts = [], set()
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        positions.append(np.concatenate([base.object_pos(0), base.object_pos(1)]))
        texts.add(obs["task"])
    assert len({tuple(np.round(p, 4)) for p in positions}) == 6
    assert texts == set(task_texts("pick_color"))  # both colours are asked for
    env.reset(seed=2)
    np.testing.assert_allclose(np.concatenate([base.object_pos(0), base.object_pos(1)]), positions[2])


def test_bad_arguments_give_clear_errors() -> None:
    with pytest.raises(InvalidNameError, match="valid tasks: pick_color, pick_place, push, stack"):
        make_env("fold_laundry")
    with pytest.raises(InvalidNameError, match="valid cameras"):
        make_env("push", cameras=("top",))
    with pytest.raises(InvalidInputError, match="image_size"):
        make_env("push", image_size=3)
    with pytest.raises(InvalidInputError, match="max_steps"):
        make_env("push", max_steps=0)
    env = make_env("push", render=False, max_steps=2)
    with pytest.raises(InvalidInputError, match="reset"):
        env.step(np.zeros(4, np.float32))
    env.reset(seed=0)
    with pytest.raises(InvalidInputError, match="4 finite numbers"):
        env.step(np.zeros(3, np.float32))
    with pytest.raises(InvalidInputError, match="4 finite numbers"):
        env.step(np.array([np.nan, 0, 0, 0], np.float32))
    env.step(np.zeros(4, np.float32))
    _, _, _, truncated, info = env.step(np.zeros(4, np.float32))
    assert truncated and info["label"]["failure_type"] == "timeout"
    with pytest.raises(InvalidInputError, match="ended"):
        env.step(np.zeros(4, np.float32))


def test_episode_info_contract(run_episode: Any) -> None:
    env = make_env("push", render=False, max_steps=15)
    result = run_episode(env, seed=0, actions=lambda k, obs: np.zeros(4, np.float32))
    info = result["info"]
    assert result["truncated"] and not result["terminated"]
    assert info["label"] == {"success": False, "failure_step": 14, "failure_type": "timeout"}
    assert info["perturbations"] == [] and info["success"] is False
