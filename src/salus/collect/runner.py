"""Run one episode of a policy in an environment and record per-step signals, baselines and internals.

The loop is :func:`salus.sim.rollout.run_loop` and the per-step record
:class:`salus.collect.recorder.StepCapture`, the same two pieces the user-loop ``Recorder`` uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from salus.collect.envs import ObservationMap, OutcomeRule
from salus.collect.recorder import StepCapture, map_observation, reset_policy
from salus.data.record import EpisodeRecord
from salus.errors import InvalidInputError

if TYPE_CHECKING:
    import gymnasium as gym

    from salus.policies.base import PolicyAdapter
    from salus.signals import OnlineBaselines, SignalExtractor

__all__ = ["EpisodeJob", "run_episode", "run_episodes", "reset_policy"]


def _action_dim(env: Any) -> int | None:
    """The action width of a 1-D ``Box`` action space (checked on every step), else None."""
    shape = getattr(getattr(env, "action_space", None), "shape", None)
    return int(shape[0]) if shape is not None and len(shape) == 1 else None


@dataclass
class EpisodeJob:
    """One episode for :func:`run_episodes`: the environment, its reset seed and step limit, the
    task name and requested perturbations stored with it, and ``tag`` (handed back with the record)."""

    env: Any
    seed: int
    max_steps: int
    task: str | None = None
    perturbations: Sequence[Any] | None = None
    tag: Any = None


def run_episode(
    env: gym.Env[Any, Any],
    policy: PolicyAdapter,
    extractor: SignalExtractor | None,
    baselines: OnlineBaselines | None,
    seed: int,
    max_steps: int,
    *,
    save_images: bool = False,
    save_hidden: bool = False,
    cameras: Sequence[str] = ("front", "wrist"),
    perturbations: Sequence[Any] | None = None,
    task: str | None = None,
    observation: ObservationMap | None = None,
    outcome: OutcomeRule | None = None,
) -> EpisodeRecord:
    """Roll ``policy`` out in ``env`` (reset with ``seed``) for at most ``max_steps`` control steps.

    Records per step: ``state`` (T, D) the state the policy acted on, ``action`` (T, A), the
    simulator's ``privileged`` (T, P) state when it has one, and when ``extractor`` is given
    ``signals`` (T, 12) / ``signal_valid`` (T, 12), when ``baselines`` is given ``baselines``
    (T, nb) / ``baseline_valid`` (T, nb), ``obs_embedding`` (T, E) f16 when the policy exposes
    internals, ``hidden`` (T, H) f16 with ``save_hidden``, ``image_<camera>`` (T, H, W, 3) with
    ``save_images``. ``extractor=None`` and ``baselines=None`` give a plain rollout. ``task`` is the
    task name stored with the episode (default: the environment's).

    ``observation`` None: the environment is ours (its observation is the policy's input, its
    ``info["label"]`` the outcome; an episode cut at ``max_steps`` before the simulator ended it is
    labelled a ``timeout`` failure at its last step). Otherwise the map turns each observation into
    the policy's input and ``outcome`` (default :class:`OutcomeRule`) labels the episode.
    """
    if max_steps < 1:
        raise InvalidInputError(f"max_steps must be >= 1, got {max_steps}")
    job = EpisodeJob(env, int(seed), int(max_steps), task, perturbations)
    out: list[EpisodeRecord] = []
    run_episodes(
        _one_job(job),
        policy,
        extractor,
        baselines,
        lambda _job, record: out.append(record),
        batch_size=1,
        save_images=save_images,
        save_hidden=save_hidden,
        cameras=cameras,
        observation=observation,
        outcome=outcome,
    )
    return out[0]


def _one_job(job: EpisodeJob) -> Callable[[int], EpisodeJob]:
    jobs = iter([job])
    return lambda _slot: next(jobs)


def run_episodes(
    next_job: Callable[[int], EpisodeJob],
    policy: Any,
    extractor: Any | None,
    baselines: Any | None,
    on_record: Callable[[EpisodeJob, EpisodeRecord], None],
    *,
    batch_size: int,
    save_images: bool = False,
    save_hidden: bool = False,
    cameras: Sequence[str] = ("front", "wrist"),
    observation: ObservationMap | None = None,
    outcome: OutcomeRule | None = None,
    robot: Any = None,
) -> None:
    """:func:`run_episode` for a stream of episodes through ``batch_size`` environments in
    lockstep (one batched policy call per control step; a slot that finishes takes the next job at
    the next chunk boundary). ``next_job(slot)`` raises ``StopIteration`` when there is no more work;
    ``on_record(job, record)`` receives each finished episode. ``extractor`` and ``baselines``
    have ``batch_size`` rows. Each episode's record is the one :func:`run_episode` makes when the
    policy's forward passes are batch-invariant (``set_compute_batch``).

    ``robot`` (:class:`~salus.data.RobotSpec`, with ``observation``): the robot description the
    extractor was built with (``set_robot(robot.extractor_robot())``); the robot state its signals
    read is :func:`~salus.collect.recorder.map_observation`'s.
    """
    from salus.sim.rollout import LoopEnd, Refill, run_lockstep

    jobs: list[EpisodeJob] = []
    for slot in range(batch_size):
        try:
            jobs.append(next_job(slot))
        except StopIteration:
            break
    if not jobs:
        return
    b_count = len(jobs)
    capture = StepCapture(
        policy,
        extractor,
        baselines,
        save_hidden=save_hidden,
        cameras=tuple(cameras) if save_images else (),
        action_dim=_action_dim(jobs[0].env),
        batch_size=b_count,
    )
    privileged: list[Callable[[], Any] | None] = [None] * b_count
    first: list[Any] = [None] * b_count
    live: set[int] = set()

    def start(b: int, obs: Any) -> None:
        job = jobs[b]
        capture.begin_slot(b, job.seed)
        privileged[b] = getattr(getattr(job.env, "unwrapped", job.env), "privileged_state", None)
        first[b] = obs
        live.add(b)

    def on_reset(obs: list[Any]) -> None:
        policy.reset()
        if extractor is not None:
            extractor.reset()
        if baselines is not None:
            baselines.reset()
        for b, o in enumerate(obs):
            start(b, o)

    def act(obs: list[Any]) -> np.ndarray:
        policy_obs: list[Any] = []
        states: list[np.ndarray] = []
        robots: list[np.ndarray] = []
        extras: list[Callable[[], Mapping[str, Any]] | None] = []
        for b, o in enumerate(obs):
            if observation is None:
                state = np.asarray(o["state"], dtype=np.float32)
                policy_obs.append(o)
                robots.append(state)
            else:
                mapped, robot_state = map_observation(observation, o, robot)
                policy_obs.append(mapped)
                state = mapped["state"]
                robots.append(robot_state)
            states.append(state)
            priv = privileged[b]
            extras.append(None if priv is None else _privileged_extra(priv))
        return capture.step_batch(policy_obs, states, np.stack(robots), extras, sorted(live))

    def on_done(b: int, end: LoopEnd) -> None:
        live.discard(b)
        job = jobs[b]
        on_record(job, _episode_record(job, end, capture.steps(b), first[b], observation, outcome))

    def refill(b: int) -> Refill | None:
        try:
            job = jobs[b] = next_job(b)
        except StopIteration:
            return None
        return Refill(job.env, job.seed, job.max_steps, on_reset=lambda o: start(b, o))

    run_lockstep(
        [j.env for j in jobs],
        act,
        [j.seed for j in jobs],
        max_steps=[j.max_steps for j in jobs],
        on_reset=on_reset,
        on_done=on_done,
        refill=refill,
        align=max(1, int(getattr(policy, "n_action_steps", 1) or 1)),
    )


def _privileged_extra(privileged: Callable[[], Any]) -> Callable[[], Mapping[str, Any]]:
    return lambda: {"privileged": privileged()}


def _episode_record(
    job: EpisodeJob,
    end: Any,
    steps: dict[str, np.ndarray],
    first_obs: Any,
    observation: ObservationMap | None,
    outcome: OutcomeRule | None,
) -> EpisodeRecord:
    """The finished episode with its label: the simulator's, or the outcome rule's."""
    env, seed, task = job.env, job.seed, job.task
    base_env = getattr(env, "unwrapped", env)
    T = steps["action"].shape[0]
    if observation is None:
        if task is None:
            task = str(getattr(base_env, "task", None) or first_obs.get("task", ""))
        label = end.info.get("label") if end.done else None
        records = end.info.get("perturbations")
        if label is None:
            # Cut by max_steps before the simulator's own limit: ask the simulator, else a timeout.
            label = _label_now(env, T)
    else:
        label = (outcome or OutcomeRule()).label(end.info, end.obs, T, where=f"episode with seed {seed}")
        records = None
        if task is None:
            task = str(getattr(getattr(env, "spec", None), "id", None) or type(base_env).__name__)
    if records is None:
        records = _perturbation_records(env, job.perturbations)
    success = bool(label["success"])
    failure_step = int(label.get("failure_step", -1))
    if not success:
        failure_step = min(max(failure_step, 0), T - 1)
    return EpisodeRecord(
        steps=steps,
        success=success,
        failure_step=-1 if success else failure_step,
        failure_type="none" if success else str(label.get("failure_type", "timeout")),
        task=task,
        seed=int(seed),
        perturbations=records,
    )


def _label_now(env: Any, steps: int) -> dict[str, Any]:
    base = getattr(env, "unwrapped", env)
    tracker = getattr(base, "tracker", None)
    if tracker is not None and hasattr(tracker, "label"):
        try:
            return dict(tracker.label(last_step=steps - 1))
        except Exception:  # pragma: no cover - fall back to a timeout label
            pass
    return {"success": False, "failure_step": steps - 1, "failure_type": "timeout"}


def _perturbation_records(env: Any, requested: Sequence[Any] | None) -> list[dict[str, Any]]:
    base = getattr(env, "unwrapped", env)
    if hasattr(base, "perturbation_records"):
        return list(base.perturbation_records())
    return [{"name": n, "strength": float(s), "params": {}} for n, s in (requested or [])]
