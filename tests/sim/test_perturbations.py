"""Perturbation wrappers: argument checks, seeded randomness, reset clears state, recorded params."""

from __future__ import annotations

import json
import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from salus.errors import InvalidInputError, InvalidNameError
from salus.sim import PERTURBATION_NAMES, PERTURBATIONS, apply_perturbations, make_env, parse_perturbation


def _zero(k: int, obs: Any) -> np.ndarray:
    return np.array([0.3, -0.2, -0.3, 1.0 if k > 8 else -1.0], np.float32)


def test_registry_has_one_wrapper_per_kind() -> None:
    assert tuple(PERTURBATIONS) == PERTURBATION_NAMES
    for name, cls in PERTURBATIONS.items():
        assert issubclass(cls, gym.Wrapper) and cls.name == name and cls.description


def test_parse_and_bad_arguments() -> None:
    assert parse_perturbation("push=0.5") == ("push", 0.5)
    assert parse_perturbation(" mass = 1 ") == ("mass", 1.0)
    with pytest.raises(InvalidNameError, match="valid perturbations: action_noise, camera_shift"):
        parse_perturbation("shove=0.5")
    for bad in ("push", "push=", "push=abc", "push=0.5=1"):
        with pytest.raises(InvalidInputError, match="NAME=STRENGTH|number"):
            parse_perturbation(bad)
    for strength in (-0.1, 1.5, math.nan, "0.5", True):
        with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
            PERTURBATIONS["push"](make_env("push", render=False), strength)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        parse_perturbation("push=1.01")
    with pytest.raises(InvalidNameError, match="valid perturbations"):
        make_env("push", render=False, perturbations=[("wind", 0.2)])
    with pytest.raises(InvalidInputError, match="once"):
        make_env("push", render=False, perturbations=["push=0.2", "push=0.3"])
    with pytest.raises(InvalidInputError, match="PandaEnv"):
        PERTURBATIONS["mass"](gym.make("CartPole-v1"), 0.5)


@pytest.mark.parametrize("name", PERTURBATION_NAMES)
def test_each_perturbation_seeded_recorded_and_cleared(name: str, run_episode: Any) -> None:
    env = make_env("pick_place", render=False, max_steps=45, perturbations=[(name, 0.8)])
    first = run_episode(env, 7, actions=_zero)
    again = run_episode(env, 7, actions=_zero)
    other = run_episode(env, 8, actions=_zero)
    records = first["info"]["perturbations"]
    assert len(records) == 1 and records[0]["name"] == name and records[0]["strength"] == 0.8
    assert records[0]["params"]  # parameters are recorded
    json.dumps(records)  # and JSON-serialisable
    assert records == again["info"]["perturbations"]  # same seed, same draw
    np.testing.assert_array_equal(first["states"], again["states"])  # same trajectory
    assert records != other["info"]["perturbations"]  # another seed, another draw


def test_strength_zero_changes_nothing(run_episode: Any) -> None:
    plain = run_episode(make_env("push", render=False, max_steps=30), 3, actions=_zero)
    env = make_env("push", render=False, max_steps=30, perturbations=[(n, 0.0) for n in PERTURBATION_NAMES])
    zero = run_episode(env, 3, actions=_zero)
    np.testing.assert_array_equal(plain["states"], zero["states"])
    assert [r["name"] for r in zero["info"]["perturbations"]] == list(PERTURBATION_NAMES)


def test_model_changes_do_not_compound_across_episodes() -> None:
    env = make_env("pick_place", render=False, perturbations=[("mass", 1.0), ("friction", 1.0)])
    base = env.unwrapped
    body, geom = base.object_bodies[0], base.object_geoms[0]
    nominal_mass, nominal_friction = base._nominal["body_mass"][body], base._nominal["geom_friction"][geom, 0]
    for seed in (0, 1, 0):
        env.reset(seed=seed)
        mass_rec, fric_rec = (r["params"]["factor"] for r in base.perturbation_records())
        assert base.model.body_mass[body] == pytest.approx(nominal_mass * mass_rec, rel=1e-5)
        assert base.model.geom_friction[geom, 0] == pytest.approx(nominal_friction * fric_rec, rel=1e-5)
        assert mass_rec > 15 and fric_rec < 0.05


def test_visual_perturbations_change_images_only() -> None:
    def first_obs(perturbations: list[tuple[str, float]]) -> dict[str, Any]:
        env = make_env("stack", image_size=32, perturbations=perturbations)
        obs, _ = env.reset(seed=4)
        env.close()
        return obs

    plain = first_obs([])
    for name in ("camera_shift", "lighting", "distractor", "obs_noise"):
        obs = first_obs([(name, 1.0)])
        assert not np.array_equal(obs["image_front"], plain["image_front"]), name
        if name != "obs_noise":
            np.testing.assert_array_equal(obs["state"], plain["state"])
    assert not np.array_equal(first_obs([("obs_noise", 1.0)])["state"], plain["state"])


def test_distractor_and_object_pose_move_things_on_the_table() -> None:
    env = make_env("pick_place", render=False, perturbations=[("distractor", 1.0)])
    base = env.unwrapped
    env.reset(seed=0)
    rec = base.perturbation_records()[0]["params"]
    d_xy = base.data.xpos[base.distractor_body][:2]
    assert rec["placed"] and base.on_table(d_xy)
    assert np.linalg.norm(d_xy - base.object_pos(0)[:2]) < 0.07  # right next to the cube at strength 1
    plain = make_env("pick_place", render=False)
    plain.reset(seed=0)
    moved = make_env("pick_place", render=False, perturbations=[("object_pose", 1.0)])
    moved.reset(seed=0)
    assert np.linalg.norm(moved.unwrapped.object_pos(0)[:2] - plain.unwrapped.object_pos(0)[:2]) > 1e-3


def test_push_shoves_the_object(run_episode: Any) -> None:
    env = make_env("push", render=False, max_steps=40, perturbations=[("push", 1.0)])
    pushed = run_episode(env, 2, actions=lambda k, o: np.zeros(4, np.float32))
    step = pushed["info"]["perturbations"][0]["params"]["step"]
    assert 8 <= step < 40
    assert pushed["label"]["failure_type"] == "timeout"
    base = env.unwrapped
    plain = make_env("push", render=False)
    plain.reset(seed=2)
    assert np.linalg.norm(base.object_pos(0)[:2] - plain.unwrapped.object_pos(0)[:2]) > 0.02


def test_apply_perturbations_composes_in_order() -> None:
    env = apply_perturbations(make_env("push", render=False), ["lighting=0.3", ("action_noise", 0.2)])
    assert isinstance(env, PERTURBATIONS["action_noise"])
    assert isinstance(env.env, PERTURBATIONS["lighting"])


def test_perturbed_env_passes_check_env() -> None:
    from gymnasium.utils.env_checker import check_env

    env = make_env("stack", image_size=24, max_steps=10, perturbations=[(n, 1.0) for n in PERTURBATION_NAMES])
    check_env(env, skip_render_check=True)
    env.close()
