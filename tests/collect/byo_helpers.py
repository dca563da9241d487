"""Factories with deliberate faults for the --env collection tests (loaded as FILE.py:NAME)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import gymnasium as gym

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import byo_pusht  # noqa: E402


class _NoSuccess(gym.Wrapper):
    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = {k: v for k, v in info.items() if k != "is_success"}
        return obs, reward, terminated, truncated, info


def make_env_without_success(max_episode_steps: int = 300) -> gym.Env:
    """PushT whose info never says whether the episode succeeded."""
    return _NoSuccess(byo_pusht.make_env(max_episode_steps))


def make_env_without_id(max_episode_steps: int = 300) -> gym.Env:
    """PushT as a factory that registers nothing: ``env.spec`` is None (no Gymnasium id)."""
    env = byo_pusht.make_env(max_episode_steps)
    env.unwrapped.spec = None
    return env


def make_2d_policy(num_samples: int = 1, seed: int = 0) -> Any:
    """The example policy cut to 2-D actions, which the (3-D) example environment refuses."""
    from salus.policies import TorchPolicyAdapter

    model = byo_pusht.ScriptedPushT()
    return TorchPolicyAdapter(
        model,
        output_layer="action_out_proj",
        embedding_layer="trunk",
        chunk_size=model.chunk_size,
        n_action_steps=2,
        action_dim=2,
        num_samples=num_samples,
        seed=seed,
    )


def covered(info: dict[str, Any], obs: Any) -> bool:
    """A success rule given as a callable: the T covers at least 90 % of the goal."""
    return float(info["coverage"]) >= 0.9
