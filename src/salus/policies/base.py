"""Policy adapter interface and the per-control-step internals every adapter reports.

Shapes: B parallel environments, C chunk length, A action dimension (env units), A_m the output
layer's width (may be padded, e.g. 32 for SmolVLA), S denoising steps, H hidden width of the input
to the output layer, E observation-embedding width, K sampled chunks.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["StepInternals", "PolicyAdapter", "batch_observation", "forward_reset"]


def forward_reset(model: Any, env_index: int | None = None, seed: int | None = None) -> bool:
    """Call ``model.reset`` (a stateful controller's: a filter, a history, a phase) when it has one,
    with whichever of ``env_index`` and ``seed`` its signature accepts; returns whether it was called.

    A ``reset`` that takes no ``env_index`` is called for whole-batch resets only (``env_index``
    None): called for one environment of a batch, it would clear the other environments' state too.
    """
    fn = getattr(model, "reset", None)
    if not callable(fn):
        return False
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: call it plainly
        params = {}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    takes = {name for name in ("env_index", "seed") if var_kw or name in params}
    if env_index is not None and "env_index" not in takes:
        return False
    kwargs = {"env_index": env_index, "seed": seed}
    fn(**{k: v for k, v in kwargs.items() if k in takes})
    return True


@dataclass
class StepInternals:
    """What the policy computed for one control step of B environments.

    Every control step has its own record, including steps served from the action queue: the
    fields then come from the chunk that produced the step (``new_chunk`` is False).
    """

    chunk_id: np.ndarray  # (B,) int64, increases by one per computed chunk, per environment
    chunk_offset: np.ndarray  # (B,) int64, index of this step inside its chunk
    new_chunk: np.ndarray  # (B,) bool, a chunk was computed at this step
    # (B, H) input to the output layer at this step's chunk position, last denoising step
    hidden_step: np.ndarray
    # (B, H) input to the output layer averaged over chunk positions and denoising steps
    hidden_mean: np.ndarray
    velocities: np.ndarray  # (B, S, A_m) output layer at this step's chunk position, per denoising step
    obs_embedding: np.ndarray  # (B, E) trunk / prefix output for the observation that produced the chunk
    chunk: np.ndarray  # (B, C, A) the full predicted chunk, env action units
    action: np.ndarray  # (B, A) the action executed at this step, env action units
    samples: np.ndarray | None = None  # (B, K, C, A) K chunks from K noise draws (K-sample mode)
    action_token_probs: np.ndarray | None = None  # (B, V) action-token softmax of token-based policies

    @property
    def batch_size(self) -> int:
        return int(self.action.shape[0])

    def index(self, env_index: int) -> StepInternals:
        """The record of one environment, keeping a batch axis of 1."""
        sl = slice(env_index, env_index + 1)
        return StepInternals(
            chunk_id=self.chunk_id[sl],
            chunk_offset=self.chunk_offset[sl],
            new_chunk=self.new_chunk[sl],
            hidden_step=self.hidden_step[sl],
            hidden_mean=self.hidden_mean[sl],
            velocities=self.velocities[sl],
            obs_embedding=self.obs_embedding[sl],
            chunk=self.chunk[sl],
            action=self.action[sl],
            samples=None if self.samples is None else self.samples[sl],
            action_token_probs=None if self.action_token_probs is None else self.action_token_probs[sl],
        )


def batch_observation(observation: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Add a batch axis to a single environment observation; returns (batched, was_single).

    A batched observation has arrays with a leading B axis and ``task`` as a list of B strings.
    """
    task = observation.get("task")
    if isinstance(task, str):
        batched = {k: (np.asarray(v)[None] if k != "task" else [v]) for k, v in observation.items()}
        return batched, True
    return dict(observation), False


class PolicyAdapter(ABC):
    """One object that runs a policy in a control loop (robomimic ``RolloutPolicy`` style).

    It owns batching, normalisation, the action queue and episode starts, and exposes the
    internals of every control step in ``last_internals``.
    """

    action_dim: int

    @abstractmethod
    def reset(self, env_index: int | None = None, seed: int | None = None) -> None:
        """Start a new episode (all environments, or one): clears action queues and capture buffers.

        ``seed`` re-seeds the policy's noise (environment b of a batch then draws from seed + b), so
        the same seed gives the same actions; None keeps the current generators. An adapter
        without randomness accepts it and ignores it.
        """

    @abstractmethod
    def act(self, observation: Mapping[str, Any]) -> np.ndarray:
        """One control step. A single observation gives (A,); a batched one gives (B, A)."""

    @property
    @abstractmethod
    def last_internals(self) -> StepInternals | None:
        """Internals of the most recent ``act`` call (batched, B >= 1); None before the first call."""
