"""Bring your own environment: salus on gym-pusht's PushT (a third-party Gymnasium environment).

Used by docs/byo-robot.md (``salus collect --env examples/byo_pusht.py:make_env ...``) and its test.

- :func:`make_env`: ``gym_pusht/PushT-v0`` (state observations: agent x, y, block x, y, angle) behind
  a small action wrapper: the policy's action (3,) in [-1, 1] is a planar move of the pusher
  (dx, dy, and a third, unused axis: salus's signals read actions as position deltas, dx, dy, dz),
  ``DELTA_PX`` pixels per unit; PushT itself takes the pusher's absolute target.
- :class:`ScriptedPushT`: a scripted pusher (choose the contact point whose push best moves the T
  toward its goal pose, go around the block to it, push) run as a small flow-matching policy: its
  action chunk is denoised from Gaussian noise by an output layer ``action_out_proj`` in
  ``num_steps`` Euler steps that do not quite reach the scripted action, so the executed actions
  carry the sampling noise (``noise_scale``) and it sometimes fails. :func:`make_policy` wraps it in
  salus's generic :class:`~salus.policies.TorchPolicyAdapter`, so its internals (per-step hidden
  input and velocity of the output layer, observation embedding, K sampled chunks) feed the signals.
- :func:`failure`: a failed episode's step and type from the physics (PushT's goal coverage).

The live loop (your loop with ``salus.Recorder`` and ``Monitor.observe``) is
``examples/byo_pusht_live.py``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

DELTA_PX = 100.0  # pusher move per unit of action
GOAL = np.array([256.0, 256.0, np.pi / 4])  # PushT's fixed goal pose (x, y, angle)
_COG = np.array([0.0, 45.0])  # centre of mass of the T in its body frame
_T = np.array([(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30), (-60, 30)], float)


def _boundary() -> tuple[np.ndarray, np.ndarray]:
    """Points every 10 px along the T's outline and their outward normals (body frame)."""
    pts, normals = [], []
    for i in range(len(_T)):
        a, b = _T[i], _T[(i + 1) % len(_T)]
        edge = b - a
        length = float(np.linalg.norm(edge))
        t = edge / length
        n = np.array([t[1], -t[0]])  # outward: the outline runs counter-clockwise
        for s in np.arange(5.0, length - 4.0, 10.0):
            pts.append(a + t * s)
            normals.append(n)
    return np.array(pts), np.array(normals)


_PTS, _NRM = _boundary()


def _inside(local: np.ndarray, margin: float) -> np.ndarray:
    """(..., 2) body-frame points inside the T grown by ``margin``."""
    x, y = local[..., 0], local[..., 1]
    bar = (np.abs(x) <= 60 + margin) & (y >= -margin) & (y <= 30 + margin)
    stem = (np.abs(x) <= 15 + margin) & (y >= 30 - margin) & (y <= 120 + margin)
    return bar | stem


def _rot(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def scripted_target(obs: np.ndarray, *, kappa: float = 80.0, rho: float = 45.0) -> np.ndarray:
    """The scripted pusher's absolute target (2,) for a PushT state (5,): stateless, so episodes do
    not depend on what ran before."""
    agent, pos, angle = obs[:2], obs[2:4], float(obs[4])
    R = _rot(angle)
    cog = pos + R @ _COG
    goal_cog = GOAL[:2] + _rot(GOAL[2]) @ _COG
    d_angle = (GOAL[2] - angle + np.pi) % (2 * np.pi) - np.pi
    twist = np.r_[goal_cog - cog, kappa * d_angle]  # wanted motion: translation, rotation (px)
    P, N = _PTS @ R.T + pos, _NRM @ R.T
    r = P - cog
    torque = (r[:, 0] * -N[:, 1] - r[:, 1] * -N[:, 0]) / rho
    wrench = np.c_[-N, torque]
    score = wrench @ twist / np.linalg.norm(wrench, axis=1)
    pre = P + N * 22.0  # where the pusher stands before pushing at P
    reachable = ~_inside((pre - pos) @ R, 14.0) & np.all((pre > 15) & (pre < 497), axis=1)
    i = int(np.argmax(np.where(reachable, score, -np.inf)))
    if np.linalg.norm(agent - pre[i]) < 10 or np.linalg.norm(agent - P[i]) < 30:
        depth = float(np.clip(0.3 * np.linalg.norm(twist), 1.0, 20.0))
        return P[i] - N[i] * depth  # push
    path = agent + (pre[i] - agent) * np.linspace(0.05, 0.85, 12)[:, None]
    if _inside((path - pos) @ R, 16.0).any():  # the block is in the way: go around it
        a0 = np.arctan2(*(agent - cog)[::-1])
        a1 = np.arctan2(*(pre[i] - cog)[::-1])
        step = np.clip((a1 - a0 + np.pi) % (2 * np.pi) - np.pi, -0.6, 0.6)
        return np.clip(cog + 115.0 * np.array([np.cos(a0 + step), np.sin(a0 + step)]), 10, 502)
    return pre[i]


class DeltaAction(gym.ActionWrapper):
    """Policy action (3,) in [-1, 1] -> PushT's absolute pusher target: agent position + DELTA_PX * (dx, dy)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)

    def action(self, action: Any) -> np.ndarray:
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(3), -1.0, 1.0)
        agent = np.asarray(self.env.unwrapped.agent.position, dtype=np.float64)  # type: ignore[attr-defined]
        return np.clip(agent + DELTA_PX * a[:2], 0.0, 512.0)


def make_env(max_episode_steps: int = 300) -> gym.Env:
    """PushT with state observations (5,) and the planar delta action of :class:`DeltaAction`."""
    import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)

    return DeltaAction(gym.make("gym_pusht/PushT-v0", obs_type="state", max_episode_steps=max_episode_steps))


def failure(info: dict[str, Any], obs: Any, steps: int) -> tuple[int, str]:
    """A failed PushT episode ends at its last step: ``timeout`` when the T ended at least half on
    the goal (close, too slow), ``miss`` otherwise."""
    return steps - 1, "timeout" if float(info.get("coverage", 0.0)) >= 0.5 else "miss"


class ScriptedPushT(nn.Module):
    """The scripted pusher as a flow-matching chunk policy (see the module docstring).

    ``sample_actions(batch, noise (N, C, 3)) -> (N, C, 3)``: the scripted delta action for
    ``batch["state"]`` (N, 5), repeated over the chunk, is the flow's target; ``num_steps`` Euler
    steps of the velocity ``action_out_proj([target, x, t]) = target - x`` move the noise towards it
    and leave ``(1 - 1/num_steps) ** num_steps`` of the noise (times ``noise_scale``) in the action.
    """

    def __init__(self, chunk_size: int = 4, num_steps: int = 4, noise_scale: float = 0.3, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.chunk_size, self.num_steps, self.noise_scale = chunk_size, num_steps, noise_scale
        self.trunk = nn.Linear(5, 32)  # a fixed random projection of the state: the observation embedding
        with torch.no_grad():
            self.trunk.weight.copy_(torch.randn(32, 5, generator=gen) / 100.0)
            self.trunk.bias.zero_()
        self.action_out_proj = nn.Linear(7, 3, bias=False)  # [target (3), x (3), t] -> velocity (3)
        with torch.no_grad():
            self.action_out_proj.weight.copy_(
                torch.cat([torch.eye(3), -torch.eye(3), torch.zeros(3, 1)], dim=1)
            )

    def sample_actions(self, batch: dict[str, Any], noise: torch.Tensor) -> torch.Tensor:
        state = batch["state"].float()
        torch.tanh(self.trunk(state))
        targets = np.stack([scripted_target(s) for s in state.double().numpy()])  # (N, 2) absolute
        delta = np.clip((targets - state[:, :2].double().numpy()) / DELTA_PX, -1.0, 1.0)
        target = torch.zeros(noise.shape[0], 3)
        target[:, :2] = torch.from_numpy(delta).float()
        target = target[:, None].expand(-1, noise.shape[1], -1)
        x = noise.float() * self.noise_scale
        for s in range(self.num_steps):
            t = torch.full((*x.shape[:2], 1), s / self.num_steps)
            x = x + self.action_out_proj(torch.cat([target, x, t], dim=-1)) / self.num_steps
        return x


def make_policy(
    num_samples: int = 1, seed: int = 0, noise_scale: float = 0.8, n_action_steps: int = 2
) -> Any:
    """The ``python:examples/byo_pusht.py:make_policy`` policy: :class:`ScriptedPushT` in salus's
    generic TorchPolicyAdapter (chunks of 4 actions, 2 executed per chunk)."""
    from salus.policies import TorchPolicyAdapter

    model = ScriptedPushT(noise_scale=noise_scale, seed=0)
    return TorchPolicyAdapter(
        model,
        output_layer="action_out_proj",
        embedding_layer="trunk",
        chunk_size=model.chunk_size,
        n_action_steps=n_action_steps,
        action_dim=3,
        num_samples=num_samples,
        seed=seed,
    )


#: The instruction (``--task-text``): PushT's observation has none.
TASK_TEXT = "push the T onto the goal"
