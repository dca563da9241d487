"""Acting on an alarm: stop the robot, or hand over to a fallback (a person, a safe controller).

``Intervention("stop")`` ends the episode at the first alarm: the alarm step's action is not
executed and the episode ends as *stopped* (not as failed: a person can then reset the scene).
``Intervention("handover", fallback=...)`` gives control to ``fallback(observation) -> action`` from
the alarm step to the end of the episode (in our simulator the scripted expert plays the person:
:func:`expert_fallback`; on a real robot, the user's teleoperation or recovery callback). Either way
``on_alarm(AlarmEvent)`` is called once, with the step, the score against its threshold, the most
likely failure type and the signals that drove the score, before anything acts.

:func:`run_assisted_episode` runs one episode of a policy with the monitor in the loop through the
one control loop (:func:`salus.sim.rollout.run_loop`)::

    monitor = Monitor.load("runs/model", policy=load_policy("builtin"), alpha=0.1)
    result = run_assisted_episode(env, monitor, Intervention("handover", expert_fallback(env)), seed=7)
    result.outcome, result.alarm_step, result.alarm.describe
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from salus.errors import InvalidInputError, InvalidNameError

__all__ = [
    "INTERVENTIONS",
    "AlarmEvent",
    "Intervention",
    "AssistedEpisode",
    "run_assisted_episode",
    "expert_fallback",
]

INTERVENTIONS = ("stop", "handover")


@dataclass(frozen=True)
class AlarmEvent:
    """The first alarm of an episode, as the intervention's callback receives it."""

    step: int
    score: float
    threshold: float
    alpha: float
    failsafe: bool
    failure_type: str | None  # the most likely type (salus models), else None
    type_probability: dict[str, float]
    top_signals: tuple[str, ...]  # "name: contribution" lines of the attribution
    describe: str  # Risk.describe(): one line a person can act on

    @classmethod
    def from_risk(cls, risk: Any, env_index: int = 0) -> AlarmEvent:
        i = env_index
        types: dict[str, float] = {}
        likely = None
        if risk.type_probability is not None and risk.failure_types:
            row = np.asarray(risk.type_probability[i], dtype=float)
            types = {t: float(p) for t, p in zip(risk.failure_types, row, strict=False)}
            if np.isfinite(row).any():
                likely = str(risk.failure_types[int(np.nanargmax(row))])
        return cls(
            step=int(risk.step[i]),
            score=float(risk.score[i]),
            threshold=float(risk.threshold[i]),
            alpha=float(risk.alpha),
            failsafe=bool(risk.failsafe[i]),
            failure_type=likely,
            type_probability=types,
            top_signals=tuple(str(c) for c in risk.top_signals[i]),
            describe=risk.describe(i),
        )


@dataclass
class Intervention:
    """What the loop does at the first alarm (see the module docstring).

    ``mode``: ``"stop"`` or ``"handover"``; ``fallback(observation) -> action`` (needed by handover;
    its ``reset()``, when it has one, is called at the handover); ``on_alarm(AlarmEvent)``: called
    once per episode at the alarm (logging, paging a person).
    """

    mode: str
    fallback: Callable[[Any], Any] | None = None
    on_alarm: Callable[[AlarmEvent], None] | None = None

    def __post_init__(self) -> None:
        if self.mode not in INTERVENTIONS:
            raise InvalidNameError("intervention", self.mode, INTERVENTIONS)
        if self.mode == "handover" and not callable(self.fallback):
            raise InvalidInputError(
                "a handover intervention needs a fallback(observation) -> action callable"
            )
        if self.on_alarm is not None and not callable(self.on_alarm):
            raise InvalidInputError("on_alarm must be callable (it receives an AlarmEvent)")


@dataclass
class AssistedEpisode:
    """One episode with the monitor in the loop. ``outcome``: ``"success"``, ``"failure"`` or
    ``"stopped"``; ``alarm_step`` -1 when the monitor never alarmed; ``actions`` (T, A) executed
    (policy then fallback); ``label`` the simulator's (or environment's) final ``info["label"]``."""

    outcome: str
    steps: int
    alarm_step: int
    alarm: AlarmEvent | None
    actions: np.ndarray
    label: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return self.outcome == "success"


def expert_fallback(env: Any) -> Callable[[Any], np.ndarray]:
    """Our simulator's person: the scripted expert (privileged state; replans from any state), as a
    fallback whose ``reset()`` forgets its plan at the handover."""
    from salus.sim.expert import ScriptedExpert

    expert = ScriptedExpert(env)

    def act(observation: Any) -> np.ndarray:
        return expert.act(observation)

    act.reset = expert.reset  # type: ignore[attr-defined]
    return act


def run_assisted_episode(
    env: Any,
    monitor: Any,
    intervention: Intervention,
    *,
    seed: int,
    max_steps: int | None = None,
) -> AssistedEpisode:
    """One episode of ``monitor.policy`` in ``env`` (reset with ``seed``; the policy's noise is
    re-seeded with ``seed`` too, as collection does) with ``intervention`` at the first alarm.

    Until the alarm the loop is exactly the policy alone (the monitor only watches), so the same
    seed without the monitor gives the counterfactual outcome (``salus assist`` relies on this; tested).
    """
    if getattr(monitor, "policy", None) is None:
        raise InvalidInputError("run_assisted_episode needs Monitor.load(..., policy=adapter)")
    state: dict[str, Any] = {"alarm": None, "handed": False, "stop": False}
    actions: list[np.ndarray] = []

    def on_reset(_obs: Any) -> None:
        from salus.collect.recorder import reset_policy

        monitor.reset(reset_policy=False)
        reset_policy(monitor.policy, seed)

    def act(obs: Any) -> np.ndarray:
        if state["handed"]:
            a = np.asarray(intervention.fallback(obs), dtype=np.float32)  # type: ignore[misc]
            actions.append(a)
            return a
        a, risk = monitor.step(obs)
        if bool(risk.alarm[0]):
            event = AlarmEvent.from_risk(risk)
            state["alarm"] = event
            if intervention.on_alarm is not None:
                intervention.on_alarm(event)
            if intervention.mode == "stop":
                state["stop"] = True
                return np.asarray(a, dtype=np.float32)
            state["handed"] = True
            reset = getattr(intervention.fallback, "reset", None)
            if callable(reset):
                reset()
            a = np.asarray(intervention.fallback(obs), dtype=np.float32)  # type: ignore[misc]
        a = np.asarray(a, dtype=np.float32).reshape(-1)
        actions.append(a)
        return a

    from salus.sim.rollout import run_loop

    end = run_loop(
        env, act, seed=int(seed), max_steps=max_steps, on_reset=on_reset, should_end=lambda: state["stop"]
    )
    label = dict(end.info.get("label") or {})
    if end.stopped:
        outcome = "stopped"
    elif label:
        outcome = "success" if label.get("success") else "failure"
    else:
        outcome = "failure"  # cut at max_steps with no label: not a success
    alarm: AlarmEvent | None = state["alarm"]
    dim = actions[0].shape[-1] if actions else 0
    return AssistedEpisode(
        outcome=outcome,
        steps=end.steps,
        alarm_step=-1 if alarm is None else alarm.step,
        alarm=alarm,
        actions=np.asarray(actions, dtype=np.float32).reshape(len(actions), dim),
        label=label,
    )
