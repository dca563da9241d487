"""``make_env``: a task environment, optionally wrapped in perturbations (the one constructor users call)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from salus.sim import spec
from salus.sim.env import PandaEnv
from salus.sim.perturbations import apply_perturbations

__all__ = ["make_env"]


def make_env(
    task: str = "pick_place",
    *,
    image_size: int = spec.DEFAULT_IMAGE_SIZE,
    cameras: Sequence[str] = spec.CAMERA_NAMES,
    render: bool = True,
    max_steps: int | None = None,
    perturbations: Sequence[tuple[str, float] | str] | None = None,
    render_mode: str | None = None,
) -> gym.Env[dict[str, Any], np.ndarray]:
    """Build a task environment, optionally wrapped in perturbations ``[(name, strength)]``.

    ``render=False`` skips images (they are then absent from the observation space).
    """
    env: gym.Env[dict[str, Any], np.ndarray] = PandaEnv(
        task,
        image_size=image_size,
        cameras=cameras,
        render=render,
        max_steps=max_steps,
        render_mode=render_mode,
    )
    if perturbations:
        env = apply_perturbations(env, perturbations)
    return env
