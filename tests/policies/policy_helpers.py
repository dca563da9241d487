"""Test helpers: small random built-in policies and synthetic observations of the simulator's shapes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from salus.policies.builtin import BuiltinConfig, BuiltinFlowPolicy, NormalizationStats
from salus.sim.spec import ACTION_DIM, STATE_DIM

TASK = "pick up the red cube and place it on the green target"


def small_config(**overrides: Any) -> BuiltinConfig:
    """A fast configuration (32x32 images) with the contract's state and action sizes."""
    base: dict[str, Any] = dict(
        image_size=32,
        chunk_size=6,
        n_action_steps=4,
        num_steps=3,
        conv_channels=(8, 8),
        num_keypoints=8,
        image_feature_dim=16,
        state_feature_dim=16,
        text_dim=8,
        embed_dim=24,
        expert_hidden=32,
        expert_layers=1,
        expert_heads=2,
    )
    base.update(overrides)
    return BuiltinConfig(**base).with_task_words([TASK])


def random_stats(seed: int = 0) -> NormalizationStats:
    rng = np.random.default_rng(seed)
    return NormalizationStats(
        state_mean=rng.normal(size=STATE_DIM),
        state_std=rng.uniform(0.5, 2.0, STATE_DIM),
        action_mean=rng.normal(0, 0.1, ACTION_DIM),
        action_std=rng.uniform(0.2, 0.5, ACTION_DIM),
    )


def make_model(seed: int = 0, **overrides: Any) -> BuiltinFlowPolicy:
    torch.manual_seed(seed)
    return BuiltinFlowPolicy(small_config(**overrides)).eval()


def make_obs(batch: int | None = None, seed: int = 0, size: int = 32, task: str = TASK) -> dict[str, Any]:
    """One observation (batch None) or a batched one with B = batch."""
    rng = np.random.default_rng(seed)
    shape = () if batch is None else (batch,)
    return {
        "image_front": rng.integers(0, 256, (*shape, size, size, 3), dtype=np.uint8),
        "image_wrist": rng.integers(0, 256, (*shape, size, size, 3), dtype=np.uint8),
        "state": rng.normal(size=(*shape, STATE_DIM)).astype(np.float32),
        "task": task if batch is None else [task] * batch,
    }
