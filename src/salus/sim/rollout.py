"""Run scripted-expert episodes and summarise them (used by ``salus sim rollout`` and the demo)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salus.errors import InvalidInputError, InvalidNameError
from salus.sim.tasks import get_task

__all__ = ["EpisodeSummary", "RolloutResult", "run_rollouts", "POLICIES"]

POLICIES = ("scripted",)


@dataclass
class EpisodeSummary:
    """One episode: its seed, label, length and recorded perturbations."""

    seed: int
    success: bool
    failure_step: int
    failure_type: str
    steps: int
    task_text: str
    perturbations: list[dict[str, Any]]


@dataclass
class RolloutResult:
    """Episodes of one task and their aggregate numbers."""

    task: str
    policy: str
    perturbations: list[tuple[str, float]]
    episodes: list[EpisodeSummary] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def steps(self) -> int:
        return sum(e.steps for e in self.episodes)

    @property
    def success_rate(self) -> float:
        return float(np.mean([e.success for e in self.episodes])) if self.episodes else float("nan")

    @property
    def failure_counts(self) -> dict[str, int]:
        counts = Counter(e.failure_type for e in self.episodes if not e.success)
        return {k: counts.get(k, 0) for k in ("drop", "miss", "collision", "timeout")}

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.wall_s if self.wall_s > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "policy": self.policy,
            "perturbations": [{"name": n, "strength": s} for n, s in self.perturbations],
            "episodes": len(self.episodes),
            "success_rate": self.success_rate,
            "failure_counts": self.failure_counts,
            "steps": self.steps,
            "wall_s": round(self.wall_s, 3),
            "control_steps_per_s": round(self.steps_per_second, 1),
            "per_episode": [e.__dict__ for e in self.episodes],
        }


def run_rollouts(
    task: str = "pick_place",
    *,
    policy: str = "scripted",
    episodes: int = 10,
    seed: int = 0,
    perturbations: Sequence[tuple[str, float] | str] = (),
    render: bool = False,
    image_size: int = 96,
    max_steps: int | None = None,
    save_frames: str | Path | None = None,
    frame_every: int = 5,
    on_episode: Callable[[EpisodeSummary], None] | None = None,
) -> RolloutResult:
    """Run ``episodes`` episodes with seeds ``seed, seed + 1, ...`` and return their labels.

    ``save_frames`` writes PNGs (front | wrist side by side, every ``frame_every`` steps) into
    ``DIR/<task>_seed<seed>/`` and implies rendering. Steps per second include rendering when on.
    """
    from salus.sim.env import make_env
    from salus.sim.expert import ScriptedExpert
    from salus.sim.perturbations import apply_perturbations

    get_task(task)
    if policy not in POLICIES:
        raise InvalidNameError("policy", policy, POLICIES)
    if not isinstance(episodes, int) or episodes < 1:
        raise InvalidInputError(f"episodes must be a positive int, got {episodes!r}")
    frames_dir = Path(save_frames) if save_frames is not None else None
    env = make_env(task, image_size=image_size, render=render or frames_dir is not None, max_steps=max_steps)
    env = apply_perturbations(env, perturbations)
    parsed = [(r["name"], r["strength"]) for r in env.unwrapped.perturbation_records()]  # type: ignore[attr-defined]
    expert = ScriptedExpert(env)
    result = RolloutResult(task=task, policy=policy, perturbations=parsed)
    start = time.perf_counter()
    try:
        for k in range(episodes):
            ep_seed = seed + k
            obs, _ = env.reset(seed=ep_seed)
            expert.reset()
            frames: list[np.ndarray] = []
            steps = 0
            while True:
                if frames_dir is not None and steps % frame_every == 0:
                    frames.append(np.concatenate([obs[k] for k in obs if k.startswith("image_")], axis=1))
                obs, _, terminated, truncated, info = env.step(expert.act(obs))
                steps += 1
                if terminated or truncated:
                    break
            if frames_dir is not None:
                import imageio.v3 as iio

                out = frames_dir / f"{task}_seed{ep_seed}"
                out.mkdir(parents=True, exist_ok=True)
                frames.append(np.concatenate([obs[k] for k in obs if k.startswith("image_")], axis=1))
                for i, frame in enumerate(frames):
                    iio.imwrite(out / f"frame_{i:03d}.png", frame)
            label = info["label"]
            summary = EpisodeSummary(
                seed=ep_seed,
                success=bool(label["success"]),
                failure_step=int(label["failure_step"]),
                failure_type=str(label["failure_type"]),
                steps=steps,
                task_text=str(obs["task"]),
                perturbations=info["perturbations"],
            )
            result.episodes.append(summary)
            if on_episode is not None:
                on_episode(summary)
    finally:
        result.wall_s = time.perf_counter() - start
        env.close()
    return result
