"""Run one episode of a policy in an environment and record per-step signals, baselines and internals.

The loop is :func:`salus.sim.rollout.run_loop` and the per-step record
:class:`salus.collect.recorder.StepCapture`, the same two pieces the user-loop ``Recorder`` uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from salus.collect.envs import ObservationMap, OutcomeRule
from salus.collect.recorder import NO_ROBOT_STATE, StepCapture, reset_policy
from salus.data.record import EpisodeRecord
from salus.errors import InvalidInputError

__all__ = ["run_episode", "reset_policy"]


def _action_dim(env: Any) -> int | None:
    """The action width of a 1-D ``Box`` action space (checked on every step), else None."""
    shape = getattr(getattr(env, "action_space", None), "shape", None)
    return int(shape[0]) if shape is not None and len(shape) == 1 else None


def run_episode(
    env: Any,
    policy: Any,
    extractor: Any | None,
    baselines: Any | None,
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
    base_env = getattr(env, "unwrapped", env)
    privileged: Callable[[], Any] | None = getattr(base_env, "privileged_state", None)
    extras = None if privileged is None else (lambda: {"privileged": privileged()})
    capture = StepCapture(
        policy,
        extractor,
        baselines,
        save_hidden=save_hidden,
        cameras=tuple(cameras) if save_images else (),
        action_dim=_action_dim(env),
    )
    first: list[Any] = []

    def on_reset(obs: Any) -> None:
        capture.begin(seed)
        first.append(obs)

    if observation is None:

        def act(obs: Any) -> np.ndarray:
            state = np.asarray(obs["state"], dtype=np.float32)
            return capture.step(obs, state, state, extras)

    else:
        obs_map = observation

        def act(obs: Any) -> np.ndarray:
            policy_obs, robot = obs_map.apply(obs)
            return capture.step(
                policy_obs, policy_obs["state"], NO_ROBOT_STATE if robot is None else robot, extras
            )

    from salus.sim.rollout import run_loop

    end = run_loop(env, act, seed=int(seed), max_steps=max_steps, on_reset=on_reset)
    steps = capture.steps()
    T = steps["action"].shape[0]
    if observation is None:
        if task is None:
            task = str(getattr(base_env, "task", None) or first[0].get("task", ""))
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
        records = _perturbation_records(env, perturbations)
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
