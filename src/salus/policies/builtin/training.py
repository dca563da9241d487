"""Behaviour cloning of the built-in policy on scripted-expert demonstrations (flow-matching loss).

``train_policy`` fits a :class:`BuiltinFlowPolicy` with a fixed, seeded recipe on the
demonstrations that :func:`salus.policies.demonstrations.record_demonstrations` records.
``salus policy train`` chains both and writes a policy folder.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from salus.errors import InvalidInputError
from salus.policies.builtin.configuration_builtin import BuiltinConfig
from salus.policies.builtin.modeling_builtin import BuiltinFlowPolicy, BuiltinProcessor, NormalizationStats
from salus.policies.demonstrations import Demonstrations, chunk_indices, random_shift

__all__ = ["TrainConfig", "train_policy"]


@dataclass
class TrainConfig:
    """The fixed behaviour-cloning recipe (every field is saved with the weights)."""

    steps: int = 4000
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    image_shift: int = 2  # random-shift augmentation, pixels
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        numbers = (self.lr, self.weight_decay, self.grad_clip)
        if (
            not all(math.isfinite(v) for v in numbers)  # NaN / inf would train a policy of NaN weights
            or not (self.lr > 0 and self.grad_clip > 0)
            or self.weight_decay < 0
            or self.image_shift < 0
            or self.warmup_steps < 0
        ):
            raise InvalidInputError(
                "TrainConfig needs finite lr > 0, grad_clip > 0, weight_decay >= 0, image_shift >= 0, "
                f"warmup_steps >= 0; got lr={self.lr}, grad_clip={self.grad_clip}, "
                f"weight_decay={self.weight_decay}, image_shift={self.image_shift}, warmup_steps={self.warmup_steps}"
            )


def train_policy(
    demos: Demonstrations,
    model_config: BuiltinConfig,
    train_config: TrainConfig,
    *,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[BuiltinFlowPolicy, NormalizationStats, dict[str, Any]]:
    """Fit the policy by flow-matching behaviour cloning; returns (model, stats, log)."""
    torch.manual_seed(train_config.seed)
    gen = torch.Generator().manual_seed(train_config.seed)
    config = model_config.with_task_words(sorted(set(demos.task)))
    stats = NormalizationStats.fit(demos.state, demos.action)
    processor = BuiltinProcessor(config, stats)
    model = BuiltinFlowPolicy(config).train()

    chunk_idx, chunk_pad = chunk_indices(demos.episode_ends, config.chunk_size)
    actions_n = processor.normalize_actions(demos.action)  # (N, A)
    states_n = (torch.from_numpy(demos.state) - torch.from_numpy(stats.state_mean)) / torch.from_numpy(
        stats.state_std
    )
    starts = np.concatenate([[0], demos.episode_ends[:-1]])
    frame_tokens = processor.tokens(
        [t for t, s, e in zip(demos.task, starts, demos.episode_ends, strict=True) for _ in range(e - s)]
    )
    images = {c: torch.from_numpy(demos.images[c]) for c in config.cameras}
    chunk_idx_t = torch.from_numpy(chunk_idx)
    chunk_pad_t = torch.from_numpy(chunk_pad)

    opt = torch.optim.AdamW(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    steps, warm = train_config.steps, train_config.warmup_steps

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm))) * 0.95 + 0.05

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    n = demos.num_frames
    losses: list[float] = []
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, n, (train_config.batch_size,), generator=gen)
        batch: dict[str, torch.Tensor] = {}
        for c in config.cameras:
            img = images[c][idx].permute(0, 3, 1, 2).float().div_(255.0)
            batch[f"image_{c}"] = random_shift(img, train_config.image_shift, gen)
        batch["state"] = states_n[idx]
        batch["tokens"] = frame_tokens[idx]
        target = actions_n[chunk_idx_t[idx]]  # (B, C, A)
        loss = model.compute_loss(batch, target, chunk_pad_t[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, steps, float(np.mean(losses[-50:])))
    model.eval()
    window = max(1, min(100, steps // 10))
    log = {
        "train_config": asdict(train_config),
        "frames": n,
        "episodes": demos.num_episodes,
        "episodes_per_task": {t: demos.task_name.count(t) for t in sorted(set(demos.task_name))},
        "expert_attempts_per_task": demos.attempts,
        "loss_first": float(np.mean(losses[:window])),
        "loss_last": float(np.mean(losses[-window:])),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    return model, stats, log
