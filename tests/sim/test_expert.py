"""The scripted experts succeed on unperturbed episodes and fail more under strong perturbations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from salus.sim import TASKS, ScriptedExpert, make_env

SEEDS = range(1000, 1020)  # fixed seed set, distinct from the ones used while tuning


@pytest.mark.parametrize("task", TASKS)
def test_expert_success_unperturbed(task: str, run_episode: Any) -> None:
    env = make_env(task, render=False)
    expert = ScriptedExpert(env)
    results = [run_episode(env, seed, expert) for seed in SEEDS]
    rate = np.mean([r["label"]["success"] for r in results])
    assert rate >= 0.95, [r["label"] for r in results]
    max_steps = env.unwrapped.max_steps
    assert max(r["steps"] for r in results) < max_steps  # finishes well inside the limit
    for r in results:
        if r["label"]["success"]:
            assert r["terminated"] and r["label"] == {
                "success": True,
                "failure_step": -1,
                "failure_type": "none",
            }


@pytest.mark.parametrize(
    "perturbation", [("action_noise", 1.0), ("mass", 1.0), ("push", 1.0), ("friction", 1.0)]
)
def test_expert_success_falls_under_strong_perturbation(
    perturbation: tuple[str, float], run_episode: Any
) -> None:
    seeds = range(1000, 1010)
    env = make_env("pick_place", render=False, max_steps=90)
    expert = ScriptedExpert(env)
    clean = np.mean([run_episode(env, s, expert)["label"]["success"] for s in seeds])
    penv = make_env("pick_place", render=False, max_steps=90, perturbations=[perturbation])
    pexpert = ScriptedExpert(penv)
    results = [run_episode(penv, s, pexpert) for s in seeds]
    perturbed = np.mean([r["label"]["success"] for r in results])
    assert perturbed < clean - 0.2, (clean, perturbed)
    for r in results:
        assert r["info"]["perturbations"][0]["name"] == perturbation[0]


def test_expert_rejects_foreign_env() -> None:
    import gymnasium as gym

    with pytest.raises(TypeError, match="PandaEnv"):
        ScriptedExpert(gym.make("CartPole-v1"))
