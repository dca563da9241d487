"""Run one episode of a policy in the simulator and record per-step signals, baselines and internals."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from salus.data.record import EpisodeRecord
from salus.errors import InvalidInputError, SalusError

__all__ = ["run_episode", "reset_policy"]


def reset_policy(policy: Any, seed: int) -> None:
    """Start a new episode, seeding the policy's noise when its ``reset`` accepts a seed."""
    try:
        takes_seed = "seed" in inspect.signature(policy.reset).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        takes_seed = False
    if takes_seed:
        policy.reset(seed=int(seed))
    else:
        import torch

        torch.manual_seed(int(seed))
        policy.reset()


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
) -> EpisodeRecord:
    """Roll ``policy`` out in ``env`` (reset with ``seed``) for at most ``max_steps`` control steps.

    Records per step: ``state`` (T, 22) the state the policy acted on, ``action`` (T, 4), and when
    ``extractor`` is given ``signals`` (T, 12) / ``signal_valid`` (T, 12), when ``baselines`` is
    given ``baselines`` (T, nb) / ``baseline_valid`` (T, nb), ``obs_embedding`` (T, E) f16 when the
    policy exposes internals, ``hidden`` (T, H) f16 with ``save_hidden``, ``image_<camera>``
    (T, H, W, 3) with ``save_images``. ``extractor=None`` and ``baselines=None`` give a plain
    rollout. ``task`` is the task name stored with the episode (default: the environment's).
    The outcome comes from the simulator's ``info["label"]``; an episode cut at
    ``max_steps`` before the simulator ended it is labelled a ``timeout`` failure at its last step.
    """
    if max_steps < 1:
        raise InvalidInputError(f"max_steps must be >= 1, got {max_steps}")
    obs, info = env.reset(seed=int(seed))
    reset_policy(policy, seed)
    if extractor is not None:
        extractor.reset()
    if baselines is not None:
        baselines.reset()
    buf: dict[str, list[np.ndarray]] = {}

    def put(key: str, value: Any) -> None:
        buf.setdefault(key, []).append(np.asarray(value))

    if task is None:
        task = str(getattr(env.unwrapped, "task", None) or obs.get("task", ""))
    label = None
    for _ in range(max_steps):
        state = np.asarray(obs["state"], dtype=np.float32)
        action = np.asarray(policy.act(obs), dtype=np.float32).reshape(-1)
        internals = getattr(policy, "last_internals", None)
        put("state", state)
        put("action", action)
        if internals is not None:
            put("obs_embedding", np.asarray(internals.obs_embedding[0], dtype=np.float16))
            if save_hidden:
                put("hidden", np.asarray(internals.hidden_step[0], dtype=np.float16))
        if extractor is not None:
            if internals is None:
                raise SalusError(
                    "signal extraction needs a policy that reports its internals (last_internals)"
                )
            sig = extractor.step(internals, state[None])
            put("signals", sig.values[0])
            put("signal_valid", sig.valid[0])
        if baselines is not None and internals is not None:
            base = baselines.step(internals)
            put("baselines", base.values[0])
            put("baseline_valid", base.valid[0])
        if save_images:
            for cam in cameras:
                put(f"image_{cam}", obs[f"image_{cam}"])
        obs, _reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            label = info.get("label")
            break
    steps = {k: np.stack(v) for k, v in buf.items()}
    T = steps["action"].shape[0]
    records = info.get("perturbations")
    if label is None:
        # Cut by max_steps before the simulator's own limit: ask the simulator, else a timeout.
        label = _label_now(env, T)
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
    tracker = getattr(base, "_tracker", None) or getattr(base, "tracker", None)
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
