"""Success rates of a policy adapter in the simulator, per task and per perturbation condition.

The environments of one task run in lockstep and the policy acts on all of them in one batched call;
an environment that has finished keeps feeding its last observation and its actions are ignored.
Episode i of every task and condition uses env seed ``seed + i`` (the same scenes across conditions),
and the policy's noise for it is seeded with ``seed + i`` too, so results do not depend on the order.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from salus.errors import InvalidInputError
from salus.policies.base import PolicyAdapter

__all__ = ["evaluate_policy", "evaluate_conditions", "stack_observations"]


def _reset(policy: PolicyAdapter, seed: int) -> None:
    """Reset with a seed (env b's policy noise then uses seed + b)."""
    policy.reset(seed=seed)


def stack_observations(obs: list[dict[str, Any]]) -> dict[str, Any]:
    """B single observations -> one batched observation (``task`` a list of B strings)."""
    batched: dict[str, Any] = {k: np.stack([o[k] for o in obs]) for k in obs[0] if k != "task"}
    batched["task"] = [o["task"] for o in obs]
    return batched


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
    from salus.sim import make_env
    from salus.sim.rollout import run_lockstep

    if episodes < 1:
        raise InvalidInputError(f"episodes must be >= 1, got {episodes}")
    results: list[dict[str, Any]] = []
    for start in range(0, episodes, batch_size):
        b = min(batch_size, episodes - start)
        envs = [
            make_env(
                task, image_size=image_size, max_steps=max_steps, perturbations=list(perturbations) or None
            )
            for _ in range(b)
        ]
        try:
            ends = run_lockstep(
                envs,
                lambda obs: policy.act(stack_observations(obs)),
                [seed + start + i for i in range(b)],
                on_reset=lambda _obs, s0=seed + start: _reset(policy, s0),  # type: ignore[misc]
                on_done=None if progress is None else (lambda _b, _end: progress(1)),
            )
            for i, end in enumerate(ends):
                results.append({"seed": seed + start + i, "steps": end.steps, **end.info["label"]})
        finally:
            for env in envs:
                env.close()
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
