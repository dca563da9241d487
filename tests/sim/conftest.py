"""Helpers for the simulator tests: short episodes with the scripted expert."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import salus.sim  # noqa: F401  (chooses the GL backend before anything imports mujoco)


def run_episode(env: Any, seed: int, expert: Any = None, actions: Any = None) -> dict[str, Any]:
    """Run one episode; returns the label, the info of the last step, states and steps."""
    obs, _ = env.reset(seed=seed)
    if expert is not None:
        expert.reset()
    states = [obs["state"].copy()]
    k = 0
    while True:
        action = expert.act(obs) if expert is not None else actions(k, obs)
        obs, _, terminated, truncated, info = env.step(action)
        states.append(obs["state"].copy())
        k += 1
        if terminated or truncated:
            return {
                "label": info["label"],
                "info": info,
                "states": np.stack(states),
                "steps": k,
                "terminated": terminated,
                "truncated": truncated,
            }


@pytest.fixture(name="run_episode")
def run_episode_fixture() -> Any:
    return run_episode
