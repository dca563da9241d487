"""Counterfactual episodes for closed-loop evaluation: replay a recorded episode's actions up to a
step, then let the scripted expert (the person) finish it.

Our simulator is deterministic given the reset seed and the actions (perturbations draw from the
environment's own generator, seeded at reset), and a monitor only watches until it alarms, so the
episode "the monitor asked for help at step t" is exactly: the recorded policy-alone episode's
first t actions, then the expert. :func:`replay_handovers` computes it for several t of one episode
on one simulator (``reset(seed)`` restores the whole state), plus the full replay without any
handover, which must reproduce the recorded outcome (the ground truth; checked by the caller).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from salus.errors import InvalidInputError

__all__ = ["HandoverJob", "HandoverOutcome", "replay_handovers", "episode_outcome", "NO_HANDOVER"]

NO_HANDOVER = -1  # the step value of the plain replay (the policy alone)


@dataclass(frozen=True)
class HandoverJob:
    """One recorded episode and the handover steps to try (``NO_HANDOVER``: plain replay)."""

    key: str  # the episode's identity in the results (e.g. "fresh:17")
    task: str
    seed: int
    perturbations: tuple[tuple[str, float], ...]
    actions: np.ndarray  # (T, A) the policy's recorded actions
    steps: tuple[int, ...]
    max_steps: int | None = None


@dataclass(frozen=True)
class HandoverOutcome:
    """The outcome of handing over at ``step`` (``NO_HANDOVER``: the replay of the policy alone)."""

    key: str
    step: int
    success: bool
    failure_step: int
    failure_type: str
    length: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def episode_outcome(end: Any) -> dict[str, Any]:
    """The physics label of a finished :class:`~salus.sim.rollout.LoopEnd`: ``success``,
    ``failure_step`` (-1 for a success), ``failure_type`` (``"none"`` for a success; an episode the
    simulator did not label is a ``timeout`` at its last step) and ``length`` (steps taken)."""
    label = end.info.get("label") or {}
    success = bool(label.get("success", False))
    return {
        "success": success,
        "failure_step": -1 if success else int(label.get("failure_step", end.steps - 1)),
        "failure_type": "none" if success else str(label.get("failure_type", "timeout")),
        "length": int(end.steps),
    }


def replay_handovers(job: HandoverJob, *, render: bool = False) -> list[HandoverOutcome]:
    """Each handover step of ``job``: the first ``step`` recorded actions, then the scripted expert
    until the episode ends (success, an irrecoverable event, or the step limit).

    A handover step at or after the recorded episode's length is refused (the policy had already
    finished there). ``render=False`` skips the cameras, which neither the actions nor the expert read.
    """
    from salus.sim.expert import ScriptedExpert
    from salus.sim.make import make_env
    from salus.sim.rollout import run_loop

    actions = np.asarray(job.actions, dtype=np.float32)
    if actions.ndim != 2 or actions.shape[0] < 1:
        raise InvalidInputError(f"{job.key}: actions must be (T>=1, A), got {actions.shape}")
    bad = [s for s in job.steps if not (s == NO_HANDOVER or 0 <= s < len(actions))]
    if bad:
        raise InvalidInputError(
            f"{job.key}: handover steps must be in [0, {len(actions)}) or {NO_HANDOVER}, got {bad}"
        )
    env = make_env(
        job.task, render=render, max_steps=job.max_steps, perturbations=list(job.perturbations) or None
    )
    try:
        expert = ScriptedExpert(env)
        out = []
        for step in job.steps:
            count = [0]

            def act(obs: Any, step: int = step, count: list[int] = count) -> np.ndarray:
                t = count[0]
                count[0] += 1
                if step == NO_HANDOVER or t < step:
                    if t >= len(actions):  # the replay outlived the recording: not deterministic
                        raise InvalidInputError(
                            f"{job.key}: the replay is still running after the {len(actions)} recorded "
                            "actions; the episode does not replay deterministically"
                        )
                    return actions[t]
                if t == step:
                    expert.reset()
                return expert.act(obs)

            end = run_loop(env, act, seed=int(job.seed))
            out.append(HandoverOutcome(key=job.key, step=int(step), **episode_outcome(end)))
        return out
    finally:
        env.close()
