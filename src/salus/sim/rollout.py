"""The one control loop of salus (:func:`run_loop`, :func:`run_lockstep`: the only places that call
``env.step``), and scripted-expert episodes with their summary (``salus sim rollout``, the demo).

The loop works with any Gymnasium environment; collection, the recorder's sibling ``run_episode``,
policy evaluation, demonstration recording and signal analysis all drive their environments
through it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salus.errors import InvalidInputError, InvalidNameError
from salus.sim.spec import FAILURE_TYPES
from salus.sim.tasks import get_task

__all__ = [
    "LoopEnd",
    "run_loop",
    "run_lockstep",
    "Refill",
    "EpisodeSummary",
    "RolloutResult",
    "run_rollouts",
    "POLICIES",
]

POLICIES = ("scripted",)


@dataclass
class LoopEnd:
    """How one environment's episode ended: ``steps`` taken, the last observation and ``info``
    (those of the reset when no step was taken), and whether the environment ended it."""

    steps: int
    obs: Any
    info: dict[str, Any]
    terminated: bool = False
    truncated: bool = False
    stopped: bool = False  # the loop ended it before the step (``should_end``: an intervention)

    @property
    def done(self) -> bool:
        """The environment ended the episode (not only the step limit)."""
        return self.terminated or self.truncated


def run_lockstep(
    envs: Sequence[Any],
    act: Callable[[list[Any]], Any],
    seeds: Sequence[int | None],
    *,
    max_steps: int | Sequence[int | None] | None = None,
    on_reset: Callable[[list[Any]], None] | None = None,
    on_done: Callable[[int, LoopEnd], None] | None = None,
    should_end: Callable[[int], bool] | None = None,
    refill: Callable[[int], Refill | None] | None = None,
    align: int = 1,
) -> list[LoopEnd]:
    """Run B environments in lockstep until each is terminated, truncated or at ``max_steps``.

    Each env is reset with its seed, then ``on_reset(observations)`` is called (e.g. to reset the
    policy). Every control step calls ``act(observations)`` once with the B current observations
    (an environment that has finished keeps its last one) and steps every unfinished environment
    with its row of the returned (B, A) actions. ``on_done(b, end)`` is called when env b finishes.
    ``should_end(b)``, asked after ``act`` and before env b is stepped, ends env b there without
    executing its action (``end.stopped``: e.g. a monitor's stop intervention). ``max_steps`` is
    one limit for all or one per environment.

    ``refill(b)`` (streaming: many episodes through B slots) is asked for slot b's next episode
    after it finished, at the first loop step that is a multiple of ``align`` (a policy serving
    chunks of ``align`` actions then starts every chunk of every slot at the same step); it returns
    a :class:`Refill` (the env is reset with its seed and ``refill.on_reset(obs)`` called) or None
    (the slot stays finished). Returns each slot's last episode.
    """
    if not envs or len(seeds) != len(envs):
        raise InvalidInputError(f"need one seed per environment, got {len(seeds)} for {len(envs)}")
    limits = list(max_steps) if isinstance(max_steps, Sequence) else [max_steps] * len(envs)
    if len(limits) != len(envs) or any(m is not None and m < 1 for m in limits):
        raise InvalidInputError(f"max_steps must be None or >= 1 (one value or one per env), got {max_steps}")
    if not isinstance(align, int) or align < 1:
        raise InvalidInputError(f"align must be an int >= 1, got {align!r}")
    envs = list(envs)
    obs: list[Any] = []
    ends: list[LoopEnd] = []
    for env, seed in zip(envs, seeds, strict=True):
        o, info = env.reset(seed=None if seed is None else int(seed))
        obs.append(o)
        ends.append(LoopEnd(0, o, dict(info)))
    if on_reset is not None:
        on_reset(obs)
    active = list(range(len(envs)))
    waiting: list[int] = []
    step = 0
    while active or waiting:
        if waiting and refill is not None:
            if not active:  # nothing runs: jump to the next aligned step
                step = -(-step // align) * align
            if step % align == 0:
                for b in waiting:
                    nxt = refill(b)
                    if nxt is None:
                        continue
                    envs[b], limits[b] = nxt.env, nxt.max_steps
                    o, info = nxt.env.reset(seed=None if nxt.seed is None else int(nxt.seed))
                    obs[b], ends[b] = o, LoopEnd(0, o, dict(info))
                    if nxt.on_reset is not None:
                        nxt.on_reset(o)
                    active.append(b)
                waiting = []
                active.sort()
            if not active:
                break
        actions = act(obs)
        step += 1
        still = []
        for b in active:
            if should_end is not None and should_end(b):
                ends[b].stopped = True
                if on_done is not None:
                    on_done(b, ends[b])
                waiting.append(b)
                continue
            o, _reward, terminated, truncated, info = envs[b].step(actions[b])
            obs[b] = o
            end = ends[b]
            end.steps += 1
            end.obs, end.info = o, info
            end.terminated, end.truncated = bool(terminated), bool(truncated)
            limit = limits[b]
            if end.done or (limit is not None and end.steps >= limit):
                if on_done is not None:
                    on_done(b, end)
                waiting.append(b)
            else:
                still.append(b)
        active = still
        if refill is None:
            waiting = []
    return ends


@dataclass
class Refill:
    """The next episode of a :func:`run_lockstep` slot: its environment, reset seed, step limit and
    what to call with its first observation (e.g. reset that slot of the policy)."""

    env: Any
    seed: int | None
    max_steps: int | None = None
    on_reset: Callable[[Any], None] | None = None


def run_loop(
    env: Any,
    act: Callable[[Any], Any],
    *,
    seed: int | None = None,
    max_steps: int | None = None,
    on_reset: Callable[[Any], None] | None = None,
    should_end: Callable[[], bool] | None = None,
) -> LoopEnd:
    """One environment: reset with ``seed``, ``on_reset(obs)``, then ``env.step(act(obs))`` until the
    environment ends the episode, ``max_steps`` steps were taken or ``should_end()`` (asked after
    ``act``) is True (:func:`run_lockstep` with B = 1)."""
    return run_lockstep(
        [env],
        lambda obs: [act(obs[0])],
        [seed],
        max_steps=max_steps,
        on_reset=None if on_reset is None else (lambda obs: on_reset(obs[0])),
        should_end=None if should_end is None else (lambda _b: should_end()),
    )[0]


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
        return {k: counts.get(k, 0) for k in FAILURE_TYPES}

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
    from salus.sim.expert import ScriptedExpert
    from salus.sim.make import make_env
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
            frames: list[np.ndarray] = []
            count = [0]

            def act(obs: dict[str, Any], frames: list[np.ndarray] = frames, count: list[int] = count) -> Any:
                if frames_dir is not None and count[0] % frame_every == 0:
                    frames.append(np.concatenate([obs[k] for k in obs if k.startswith("image_")], axis=1))
                count[0] += 1
                return expert.act(obs)

            end = run_loop(env, act, seed=ep_seed, on_reset=lambda _obs: expert.reset())
            obs, info, steps = end.obs, end.info, end.steps
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
