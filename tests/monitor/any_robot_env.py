"""A third-party-style Gymnasium arm for the any-robot tests (loaded as FILE.py:NAME by --env).

:class:`ReachArm`: six joints, a 24-value state (joint positions, joint velocities, commanded joint
targets, end-effector position, goal), 4-D actions (end-effector delta dx, dy, dz and a gripper
command in [-1, 1]), 10 Hz (``metadata["render_fps"]``). Each action commands joint targets through
a fixed linear kinematic map; the joints follow with a lag. Success (``info["is_success"]``, the
episode terminates) when the end effector comes within 4 cm of the goal; else it times out.
:func:`make_policy`: a scripted reacher run as a small flow-matching chunk policy whose sampling
noise makes it fail sometimes, in salus's ``TorchPolicyAdapter``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

STATE_DIM, ACTION_DIM, CONTROL_HZ = 24, 4, 10
STEP_M = 0.05  # end-effector metres per unit of action
_KIN = np.array(  # end effector = _KIN @ joint positions (a fixed linear "kinematics")
    [
        [0.5, 0.3, 0.1, 0.0, 0.05, 0.0],
        [0.0, 0.2, 0.4, 0.3, 0.0, 0.05],
        [0.1, 0.0, 0.0, 0.2, 0.4, 0.3],
    ]
)
_PINV = np.linalg.pinv(_KIN)
JOINT_LIMIT = 3.0


class ReachArm(gym.Env):
    metadata = {"render_modes": [], "render_fps": CONTROL_HZ}

    def __init__(self, max_episode_steps: int = 40):
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (STATE_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self.max_episode_steps = max_episode_steps
        self._q = np.zeros(6)
        self._qd = np.zeros(6)
        self._target = np.zeros(6)
        self._goal = np.zeros(3)
        self._t = 0

    def _obs(self) -> np.ndarray:
        ee = _KIN @ self._q
        return np.concatenate([self._q, self._qd, self._target, ee, self._goal]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        self._q = rng.uniform(-0.5, 0.5, 6)
        self._qd = np.zeros(6)
        self._target = self._q.copy()
        direction = rng.normal(size=3)
        self._goal = _KIN @ self._q + direction / np.linalg.norm(direction) * rng.uniform(0.4, 0.9)
        self._t = 0
        return self._obs(), {"is_success": False}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(ACTION_DIM), -1.0, 1.0)
        self._target = np.clip(self._q + _PINV @ (STEP_M * a[:3]), -JOINT_LIMIT, JOINT_LIMIT)
        q_new = self._q + 0.8 * (self._target - self._q)
        self._qd = (q_new - self._q) * CONTROL_HZ
        self._q = q_new
        self._t += 1
        dist = float(np.linalg.norm(_KIN @ self._q - self._goal))
        success = dist < 0.04
        truncated = not success and self._t >= self.max_episode_steps
        return self._obs(), -dist, success, truncated, {"is_success": success, "distance": dist}


def make_env(max_episode_steps: int = 40) -> gym.Env:
    return ReachArm(max_episode_steps)


def failure(info: dict[str, Any], obs: Any, steps: int) -> tuple[int, str]:
    return steps - 1, "timeout"


class ScriptedReacher(nn.Module):
    """The scripted reacher as a flow-matching chunk policy: the delta towards the goal, repeated
    over the chunk, is the flow's target; Euler steps of ``action_out_proj([target, x, t])`` move
    the noise towards it and leave part of the noise (times ``noise_scale``) in the action."""

    def __init__(self, chunk_size: int = 4, num_steps: int = 4, noise_scale: float = 1.0):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.chunk_size, self.num_steps, self.noise_scale = chunk_size, num_steps, noise_scale
        self.trunk = nn.Linear(STATE_DIM, 16)  # the observation embedding
        with torch.no_grad():
            # an embedding of a real policy's scale (PushT's reaches 18): float16 storage rounds it
            # by up to 0.01, so live features must see the recorded (rounded) values
            self.trunk.weight.copy_(torch.randn(16, STATE_DIM, generator=gen) * 4.0)
            self.trunk.bias.zero_()
        a = ACTION_DIM
        self.action_out_proj = nn.Linear(2 * a + 1, a, bias=False)
        with torch.no_grad():
            self.action_out_proj.weight.copy_(
                torch.cat([torch.eye(a), -torch.eye(a), torch.zeros(a, 1)], dim=1)
            )

    def sample_actions(self, batch: dict[str, Any], noise: torch.Tensor) -> torch.Tensor:
        state = batch["state"].float()
        torch.tanh(self.trunk(state))
        delta = torch.clamp((state[:, 21:24] - state[:, 18:21]) / STEP_M, -1.0, 1.0)
        target = torch.zeros(noise.shape[0], ACTION_DIM)
        target[:, :3] = delta
        target = target[:, None].expand(-1, noise.shape[1], -1)
        x = noise.float() * self.noise_scale
        for s in range(self.num_steps):
            t = torch.full((*x.shape[:2], 1), s / self.num_steps)
            x = x + self.action_out_proj(torch.cat([target, x, t], dim=-1)) / self.num_steps
        return x


def make_policy(num_samples: int = 1, seed: int = 0, noise_scale: float = 3.5) -> Any:
    from salus.policies import TorchPolicyAdapter

    model = ScriptedReacher(noise_scale=noise_scale)
    return TorchPolicyAdapter(
        model,
        output_layer="action_out_proj",
        embedding_layer="trunk",
        chunk_size=model.chunk_size,
        n_action_steps=2,
        action_dim=ACTION_DIM,
        num_samples=num_samples,
        seed=seed,
        state_dim=STATE_DIM,
    )
