"""Action-chunk bookkeeping shared by every chunking policy adapter.

A chunking policy computes a chunk of C actions (plus its internals) for an environment and then
serves ``n_action_steps`` control steps from it. :class:`ChunkedAdapter` keeps, per environment, the
chunk and every internal captured while computing it until the chunk is used up, maps each control
step to (chunk id, offset in chunk) and builds a full :class:`StepInternals` for every step,
including the steps served from the queue. Subclasses implement :meth:`ChunkedAdapter._compute_chunks`.

Shapes: B environments, n rows that need a new chunk, K samples, C chunk length, A env action
dimension, A_m output-layer width, S denoising steps, H hidden width, E embedding width.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from salus.errors import InvalidInputError
from salus.policies.base import PolicyAdapter, StepInternals, batch_observation

__all__ = ["ChunkResult", "ChunkedAdapter"]


@dataclass
class ChunkResult:
    """What computing new chunks for n environments produced (numpy, float32)."""

    chunk: np.ndarray  # (n, C, A) executed chunk (sample 0), env units
    hidden_last: np.ndarray  # (n, C, H) output-layer input at the last denoising step, per position
    hidden_mean: np.ndarray  # (n, H) output-layer input averaged over positions and denoising steps
    velocities: np.ndarray  # (n, S, C, A_m) output-layer output per denoising step and position
    obs_embedding: np.ndarray  # (n, E)
    samples: np.ndarray | None = None  # (n, K, C, A) all K sampled chunks (K-sample mode)

    @classmethod
    def from_capture(
        cls,
        env_actions: np.ndarray,
        n: int,
        num_samples: int,
        output_width: int,
        hidden: torch.Tensor | None,
        velocities: torch.Tensor | None,
        embedding: torch.Tensor | None,
    ) -> ChunkResult:
        """Build the result from what the output-layer hooks captured (sample 0 only).

        ``env_actions`` (n * K, C, A) in env units; ``hidden`` (S, n, C, H) and ``velocities``
        (S, n, C, A_m) from the output layer per denoising step; ``embedding`` (n, E). Internals that
        were not captured (capture off) become empty arrays of width 0.
        """
        c = env_actions.shape[1]
        env = np.asarray(env_actions, dtype=np.float32).reshape(n, num_samples, c, -1)
        f32 = np.float32
        if hidden is None or velocities is None:
            h_last = np.zeros((n, c, 0), f32)
            h_mean = np.zeros((n, 0), f32)
            vel = np.zeros((n, 0, c, output_width), f32)
        else:
            h = hidden.float().cpu()
            h_last = h[-1].numpy()  # (n, C, H)
            h_mean = h.mean(dim=(0, 2)).numpy()  # (n, H)
            vel = velocities.float().cpu().permute(1, 0, 2, 3).numpy()  # (n, S, C, A_m)
        emb = np.zeros((n, 0), f32) if embedding is None else embedding.float().cpu().numpy()
        return cls(
            chunk=np.ascontiguousarray(env[:, 0]),
            hidden_last=np.ascontiguousarray(h_last),
            hidden_mean=h_mean,
            velocities=np.ascontiguousarray(vel),
            obs_embedding=emb,
            samples=env if num_samples > 1 else None,
        )

    def rows(self, n: int) -> ChunkResult:
        """The first ``n`` rows (drops the padding of a fixed-size forward pass)."""
        fields: dict[str, Any] = {
            f: None if getattr(self, f) is None else getattr(self, f)[:n] for f in _RESULT_FIELDS
        }
        return ChunkResult(**fields)

    @classmethod
    def concat(cls, parts: list[ChunkResult]) -> ChunkResult:
        """Row-wise concatenation of results for consecutive groups of environments."""
        if len(parts) == 1:
            return parts[0]
        out: dict[str, Any] = {}
        for f in _RESULT_FIELDS:
            values = [getattr(p, f) for p in parts]
            out[f] = None if values[0] is None else np.concatenate(values)
        return cls(**out)


_RESULT_FIELDS = ("chunk", "hidden_last", "hidden_mean", "velocities", "obs_embedding", "samples")


class ChunkedAdapter(PolicyAdapter):
    """Per-environment action queues with internals kept for every step of every chunk.

    ``reset(env_index=None, seed=None)`` starts new episodes (a seed re-seeds the noise of those
    environments: environment b gets ``seed + b`` when all are reset, ``seed`` when one is).
    ``act(observation, noise=None)`` optionally takes the noise for the environments that compute a
    chunk at this step, shaped (B, C, A_m) or (B, K, C, A_m).
    """

    def __init__(
        self,
        *,
        action_dim: int,
        chunk_size: int,
        n_action_steps: int,
        noise_shape: tuple[int, int],
        num_samples: int = 1,
        capture_internals: bool = True,
        seed: int = 0,
    ):
        if not 1 <= n_action_steps <= chunk_size:
            raise InvalidInputError(
                f"n_action_steps must be in [1, chunk_size={chunk_size}], got {n_action_steps}"
            )
        if not isinstance(num_samples, int) or num_samples < 1:
            raise InvalidInputError(f"num_samples must be an int >= 1, got {num_samples!r}")
        self.action_dim = int(action_dim)
        self.chunk_size = int(chunk_size)
        self.n_action_steps = int(n_action_steps)
        self.noise_shape = (int(noise_shape[0]), int(noise_shape[1]))
        self.num_samples = num_samples
        self.capture_internals = bool(capture_internals)
        self.seed = int(seed)
        self._generators: list[torch.Generator] = []
        self._batch_size: int | None = None
        self._state: dict[str, Any] = {}
        self._last: StepInternals | None = None
        self.compute_batch: int | None = None

    def set_compute_batch(self, rows: int | None) -> None:
        """Run every forward pass on exactly ``rows`` environments (a short group is padded with
        copies of its first row), or on all that need a chunk at once (None, the default).

        Float kernels choose their blocking by batch size, so a row's chunk changes in the last bits
        with the number of rows computed beside it. With a fixed pass size a row's chunk and
        internals have the same bits whatever else is in the batch: collection uses it so that a
        dataset does not depend on how many environments ran in lockstep.
        """
        if rows is not None and (not isinstance(rows, int | np.integer) or rows < 1):
            raise InvalidInputError(f"compute batch must be a positive int or None, got {rows!r}")
        self.compute_batch = None if rows is None else int(rows)

    # -- subclass hook -------------------------------------------------------------------------
    @abstractmethod
    def _validate(self, observation: Mapping[str, Any]) -> int:
        """Check a batched observation and return its batch size B."""

    @abstractmethod
    def _compute_chunks(
        self, observation: Mapping[str, Any], rows: np.ndarray, noise: torch.Tensor
    ) -> ChunkResult:
        """New chunks for the environments ``rows`` (n,) of a batched observation.

        ``noise`` is (n * K, C, A_m), environment-major (rows b*K .. b*K+K-1 belong to ``rows[b]``).
        """

    # -- episode control -----------------------------------------------------------------------
    def reset(self, env_index: int | None = None, seed: int | None = None) -> None:
        """Start a new episode for every environment or for ``env_index``: clears its queue and internals."""
        if env_index is None:
            self._batch_size = None
            self._state = {}
            self._last = None
            if seed is not None:
                self.seed = int(seed)
                self._generators = []
            return
        b = self._batch_size
        if (
            not isinstance(env_index, (int, np.integer))
            or env_index < 0
            or (b is not None and env_index >= b)
        ):
            raise InvalidInputError(
                f"env_index must be an int in [0, {b if b is not None else 'B'}), got {env_index!r}"
            )
        if seed is not None:
            self._generator(int(env_index)).manual_seed(int(seed))
        if self._state:
            self._state["chunk_id"][env_index] = -1
            self._state["offset"][env_index] = self.n_action_steps  # forces a new chunk

    @property
    def last_internals(self) -> StepInternals | None:
        return self._last

    def _generator(self, index: int) -> torch.Generator:
        while len(self._generators) <= index:
            g = torch.Generator()
            g.manual_seed(self.seed + len(self._generators))
            self._generators.append(g)
        return self._generators[index]

    def _draw_noise(self, rows: np.ndarray) -> torch.Tensor:
        k = self.num_samples
        return torch.cat(
            [torch.randn((k, *self.noise_shape), generator=self._generator(int(r))) for r in rows]
        )

    def _noise_from_user(self, noise: Any, rows: np.ndarray, batch_size: int) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(noise, dtype=np.float32))
        c, a = self.noise_shape
        k = self.num_samples
        if t.shape == (batch_size, c, a) and k == 1:
            t = t[:, None]
        if t.shape != (batch_size, k, c, a):
            raise InvalidInputError(
                f"noise must have shape (B, C, A_m) = ({batch_size}, {c}, {a})"
                + (" (only when num_samples == 1)" if k > 1 else "")
                + f" or (B, K, C, A_m) = ({batch_size}, {k}, {c}, {a}), got {tuple(t.shape)}"
            )
        if not torch.isfinite(t).all():
            raise InvalidInputError("noise must be finite")
        return t[torch.as_tensor(rows)].reshape(len(rows) * k, c, a)

    # -- control step --------------------------------------------------------------------------
    def act(self, observation: Mapping[str, Any], noise: Any = None) -> np.ndarray:
        """One control step: (A,) for a single observation, (B, A) for a batched one."""
        if not isinstance(observation, Mapping):
            raise InvalidInputError(f"observation must be a mapping (dict), got {type(observation).__name__}")
        batched, single = batch_observation(observation)
        b = self._validate(batched)
        if self._batch_size is None:
            self._batch_size = b
        elif b != self._batch_size:
            raise InvalidInputError(
                f"batch size changed from {self._batch_size} to {b}; call reset() before using another batch size"
            )
        st = self._state
        if not st:
            st["chunk_id"] = np.full(b, -1, dtype=np.int64)
            st["offset"] = np.full(b, self.n_action_steps, dtype=np.int64)
        need = st["offset"] >= self.n_action_steps
        rows = np.flatnonzero(need)
        if rows.size:
            z = self._draw_noise(rows) if noise is None else self._noise_from_user(noise, rows, b)
            result = self._chunks_in_passes(batched, rows, z)
            self._store(rows, result, b)
            st["chunk_id"][rows] += 1
            st["offset"][rows] = 0
        idx = np.arange(b)
        off = st["offset"]
        chunk = st["chunk"]
        internals = StepInternals(
            chunk_id=st["chunk_id"].copy(),
            chunk_offset=off.copy(),
            new_chunk=need,
            hidden_step=st["hidden_last"][idx, off],
            hidden_mean=st["hidden_mean"],
            velocities=st["velocities"][idx, :, off],
            obs_embedding=st["obs_embedding"],
            chunk=chunk,
            action=chunk[idx, off],
            samples=st.get("samples"),
        )
        st["offset"] = off + 1
        self._last = internals
        return internals.action[0].copy() if single else internals.action.copy()

    def _chunks_in_passes(
        self, observation: Mapping[str, Any], rows: np.ndarray, noise: torch.Tensor
    ) -> ChunkResult:
        """:meth:`_compute_chunks` in passes of exactly ``compute_batch`` rows (see :meth:`set_compute_batch`)."""
        p = self.compute_batch
        if p is None:
            return self._compute_chunks(observation, rows, noise)
        k = self.num_samples
        parts = []
        for start in range(0, rows.size, p):
            group, z = rows[start : start + p], noise[start * k : (start + p) * k]
            n = group.size
            if n < p:
                group = np.concatenate([group, np.full(p - n, group[0])])
                z = torch.cat([z, z[:k].repeat(p - n, 1, 1)])
            parts.append(self._compute_chunks(observation, group, z).rows(n))
        return ChunkResult.concat(parts)

    _FIELDS = _RESULT_FIELDS

    def _store(self, rows: np.ndarray, result: ChunkResult, b: int) -> None:
        """Keep the new chunks' records; arrays handed out earlier are never modified (copy on write).

        The kept arrays are read-only: a step's ``chunk``, ``hidden_mean``, ``obs_embedding`` and
        ``samples`` are shared by every step of the chunk; per-step fields are fresh copies.
        """
        st = self._state
        n = rows.size
        for name in self._FIELDS:
            value = getattr(result, name)
            if value is None:
                st.pop(name, None)
                continue
            if value.shape[0] != n:
                raise InvalidInputError(
                    f"_compute_chunks returned {name} with {value.shape[0]} rows, expected {n}"
                )
            if n == b:
                new = value
            else:
                old = st.get(name)
                if old is None or old.shape[1:] != value.shape[1:]:
                    new = np.zeros((b, *value.shape[1:]), dtype=value.dtype)
                else:
                    new = old.copy()
                new[rows] = value
            new.setflags(write=False)  # shared by the records of every step of the chunk
            st[name] = new
