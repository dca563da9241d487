"""Success rates of a policy adapter in the simulator, per task and per perturbation condition.

The episodes run through the episode harness (:mod:`salus.policies.harness`): B environments of
one task in lockstep, one batched policy call per step. Episode i of every task and condition uses
env seed ``seed + i`` (the same scenes across conditions), and the policy's noise for it is seeded
with ``seed + i`` too, so results do not depend on the order.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from salus.errors import InvalidInputError
from salus.policies.base import PolicyAdapter
from salus.policies.harness import EpisodePlan, run_policy_episodes

__all__ = ["evaluate_policy", "evaluate_conditions"]


def evaluate_policy(
    policy: PolicyAdapter,
    task: str,
    episodes: int,
    *,
    seed: int = 0,
    perturbations: Sequence[tuple[str, float]] = (),
    max_steps: int | None = None,
    batch_size: int = 8,
    image_size: int = 96,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run ``episodes`` episodes of ``task``; returns success rate, failure types and episode lengths."""
    if episodes < 1:
        raise InvalidInputError(f"episodes must be >= 1, got {episodes}")
    plans = [EpisodePlan(task, seed + i, tuple(perturbations), max_steps) for i in range(episodes)]
    outcomes = run_policy_episodes(
        policy,
        plans,
        batch_size=batch_size,
        env_kwargs={"image_size": image_size},
        progress=None if progress is None else (lambda _o: progress(1)),
    )
    results = [{"seed": o.plan.seed, "steps": o.steps, **o.label} for o in outcomes]
    successes = sum(bool(r["success"]) for r in results)
    return {
        "episodes": len(results),
        "successes": successes,
        "success_rate": successes / len(results),
        "failure_types": dict(Counter(r["failure_type"] for r in results if not r["success"])),
        "mean_steps": float(np.mean([r["steps"] for r in results])),
        "failed_seeds": [r["seed"] for r in results if not r["success"]],
    }


def evaluate_conditions(
    policy: PolicyAdapter,
    tasks: Sequence[str],
    episodes: int,
    conditions: dict[str, list[tuple[str, float]]],
    *,
    seed: int = 0,
    max_steps: int | None = None,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Every task under every named condition (a list of (perturbation, strength)); one JSON-able dict."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    for cond, perts in conditions.items():
        per_task = {
            task: evaluate_policy(
                policy,
                task,
                episodes,
                seed=seed,
                perturbations=perts,
                max_steps=max_steps,
                batch_size=batch_size,
                progress=progress,
            )
            for task in tasks
        }
        total = sum(r["episodes"] for r in per_task.values())
        wins = sum(r["successes"] for r in per_task.values())
        out[cond] = {
            "perturbations": [{"name": n, "strength": s} for n, s in perts],
            "success_rate": wins / total,
            "tasks": per_task,
        }
    return {"conditions": out, "wall_s": round(time.perf_counter() - t0, 1)}
