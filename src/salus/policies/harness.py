"""The episode harness: N planned episodes of a policy in our simulator, B environments at a time.

Above the one control loop (:func:`salus.sim.rollout.run_lockstep`): B environments act through one
batched policy call per step; a finished environment keeps feeding its last observation and its
actions are ignored. Each row's policy noise is seeded with its own plan's seed (as collection
seeds its slots), so an episode's result does not depend on B's grouping beyond the policy's
batched arithmetic. Taps see every step (the batched
observation, the actions, the policy's internals) and every episode's end: the signal extractor,
the embeddings for fitting, anything a caller records. ``actor="expert"`` executes the scripted
expert's actions while the policy still runs on every observation (its internals on the training
distribution's states).

Policy evaluation (:mod:`salus.policies.evaluation`) and the signal rollouts
(:func:`salus.signals.analysis.run_policy_rollouts`) run through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from salus.errors import InvalidInputError, InvalidNameError
from salus.policies.base import PolicyAdapter

__all__ = [
    "ACTORS",
    "EpisodePlan",
    "EpisodeOutcome",
    "EpisodeTap",
    "run_policy_episodes",
    "stack_observations",
    "policy_env_kwargs",
]

ACTORS = ("policy", "expert")


@dataclass(frozen=True)
class EpisodePlan:
    """One episode: the task, the environment seed, the perturbations ((name, strength) pairs) and
    the step limit (None: the task's); the seed also seeds the policy's noise for the episode."""

    task: str
    seed: int
    perturbations: tuple[tuple[str, float], ...] = ()
    max_steps: int | None = None


@dataclass(frozen=True)
class EpisodeOutcome:
    """How a planned episode ended: its position in the plans, success, steps taken and the
    simulator's label (``success``, ``failure_step``, ``failure_type``)."""

    index: int
    plan: EpisodePlan
    success: bool
    steps: int
    label: dict[str, Any]


class EpisodeTap:
    """Sees a group's episodes run: ``start`` once per group of B plans, ``step`` once per
    control step (``obs`` the batched observation, ``actions`` (B, A) the policy's, ``internals``
    its :class:`~salus.policies.base.StepInternals` or None, ``live[b]`` whether row b's episode is
    still running), ``end`` when row b's episode ended. The base class does nothing."""

    def start(self, plans: Sequence[EpisodePlan]) -> None:
        pass

    def step(self, obs: dict[str, Any], actions: np.ndarray, internals: Any, live: Sequence[bool]) -> None:
        pass

    def end(self, row: int, outcome: EpisodeOutcome) -> None:
        pass


def stack_observations(obs: list[dict[str, Any]]) -> dict[str, Any]:
    """B single observations -> one batched observation (``task`` a list of B strings)."""
    batched: dict[str, Any] = {k: np.stack([o[k] for o in obs]) for k in obs[0] if k != "task"}
    batched["task"] = [o["task"] for o in obs]
    return batched


def policy_env_kwargs(policy: Any) -> dict[str, Any]:
    """``make_env`` options the policy's configuration asks for (image size, cameras)."""
    config = getattr(policy, "config", None)
    kwargs: dict[str, Any] = {}
    if getattr(config, "image_size", None):
        kwargs["image_size"] = int(config.image_size)  # type: ignore[union-attr]
    if getattr(config, "cameras", None):
        kwargs["cameras"] = tuple(config.cameras)  # type: ignore[union-attr]
    return kwargs


def run_policy_episodes(
    policy: PolicyAdapter,
    plans: Sequence[EpisodePlan],
    *,
    batch_size: int = 1,
    env_kwargs: dict[str, Any] | None = None,
    taps: Sequence[EpisodeTap] = (),
    actor: str = "policy",
    progress: Callable[[EpisodeOutcome], None] | None = None,
    seed_policy: bool = True,
) -> list[EpisodeOutcome]:
    """Run ``plans`` in groups of ``batch_size`` lockstep environments; outcomes in plan order.

    ``env_kwargs``: ``make_env`` options for every environment (default: :func:`policy_env_kwargs`).
    ``progress(outcome)`` after each episode. ``seed_policy``: seed each row's policy noise with its
    plan's seed (``reset(env_index=b, seed=...)``, as collection does); False resets the policy
    without a seed (its noise continues from where it is).
    """
    if actor not in ACTORS:
        raise InvalidNameError("actor", actor, ACTORS)
    if not plans:
        raise InvalidInputError("run_policy_episodes needs at least one episode plan")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be an int >= 1, got {batch_size!r}")
    kwargs = policy_env_kwargs(policy) if env_kwargs is None else dict(env_kwargs)
    outcomes: list[EpisodeOutcome] = []
    for start in range(0, len(plans), batch_size):
        group = list(plans[start : start + batch_size])
        outcomes += _run_group(policy, start, group, kwargs, taps, actor, progress, seed_policy)
    return outcomes


def _run_group(
    policy: PolicyAdapter,
    start: int,
    group: list[EpisodePlan],
    env_kwargs: dict[str, Any],
    taps: Sequence[EpisodeTap],
    actor: str,
    progress: Callable[[EpisodeOutcome], None] | None,
    seed_policy: bool,
) -> list[EpisodeOutcome]:
    from salus.sim import ScriptedExpert, make_env
    from salus.sim.rollout import LoopEnd, run_lockstep

    envs = [
        make_env(p.task, perturbations=list(p.perturbations) or None, max_steps=p.max_steps, **env_kwargs)
        for p in group
    ]
    experts = [ScriptedExpert(env) for env in envs] if actor == "expert" else []
    live = [True] * len(group)
    for tap in taps:
        tap.start(group)

    def on_reset(_obs: list[Any]) -> None:
        policy.reset()
        if seed_policy:  # row b's policy noise: its own plan's seed
            for b, plan in enumerate(group):
                policy.reset(env_index=b, seed=plan.seed)
        for expert in experts:
            expert.reset()

    def act(obs: list[dict[str, Any]]) -> np.ndarray:
        batch = stack_observations(obs)
        actions = np.asarray(policy.act(batch))
        internals = policy.last_internals
        for tap in taps:
            tap.step(batch, actions, internals, live)
        if experts:  # rows that finished keep the policy's (ignored) action
            return np.stack(
                [
                    e.act(o) if live[b] else actions[b]
                    for b, (e, o) in enumerate(zip(experts, obs, strict=True))
                ]
            )
        return actions

    outcomes: dict[int, EpisodeOutcome] = {}

    def on_done(b: int, end: LoopEnd) -> None:
        live[b] = False
        label = dict(end.info.get("label") or {})
        success = bool(label.get("success", end.info.get("success", False)))
        outcomes[b] = EpisodeOutcome(start + b, group[b], success, end.steps, label)
        for tap in taps:
            tap.end(b, outcomes[b])
        if progress is not None:
            progress(outcomes[b])

    try:
        run_lockstep(envs, act, [p.seed for p in group], on_reset=on_reset, on_done=on_done)
    finally:
        for env in envs:
            env.close()
    return [outcomes[b] for b in range(len(group))]
