"""A policy adapter for any PyTorch flow-matching (or other chunking) policy, given its output layer.

Protocol a user's ``nn.Module`` follows (the built-in policy is one such module):

- ``sample_actions(batch, noise) -> Tensor (N, C, A_m)``: denoises ``noise`` (N, C, A_m) into an action
  chunk in model units, for a model batch from ``preprocess``. With ``supports_multi_sample = True``
  on the module, the batch has B rows and N = B * K (rows b*K .. b*K+K-1 are observation b's
  samples); otherwise the adapter repeats each batch row K times so that N is the batch size.
- The output layer (``output_layer``, e.g. ``"action_out_proj"``) is called once per denoising step
  with a (N, C, H) input and returns the velocity (N, C, A_m).
- Optional: a module ``embedding_layer`` (e.g. the trunk) whose last output in a call, (N, E) or
  (N, T, E) (averaged over T), is the observation embedding.

``preprocess(observation, rows) -> dict[str, Tensor]`` turns a batched observation (only the given
rows) into the model batch; ``postprocess(Tensor (N, C, A_m)) -> ndarray (N, C, A)`` into env units;
``validate(observation) -> B`` checks the observation and raises ``InvalidInputError``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from salus.errors import InvalidInputError
from salus.policies.base import forward_reset
from salus.policies.capture import capture_modules, resolve_module
from salus.policies.chunking import ChunkedAdapter, ChunkResult

__all__ = ["TorchPolicyAdapter", "default_preprocess", "default_validate"]

Preprocess = Callable[[Mapping[str, Any], "np.ndarray | None"], dict[str, torch.Tensor]]
Postprocess = Callable[[torch.Tensor], np.ndarray]


def default_validate(observation: Mapping[str, Any]) -> int:
    """Every array in the observation shares a leading B axis and is finite; ``task`` is B strings."""
    sizes = {}
    for key, value in observation.items():
        if key == "task":
            if isinstance(value, str) or not all(isinstance(t, str) for t in value):
                raise InvalidInputError("observation 'task' must be a list of B str in a batch")
            sizes[key] = len(value)
            continue
        arr = np.asarray(value)
        if arr.ndim == 0:
            raise InvalidInputError(f"observation {key!r} must be an array with a leading batch axis")
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise InvalidInputError(f"observation {key!r} contains NaN or inf")
        sizes[key] = arr.shape[0]
    if not sizes:
        raise InvalidInputError("observation is empty")
    if len(set(sizes.values())) != 1:
        raise InvalidInputError(f"observation entries disagree on the batch size: {sizes}")
    return next(iter(sizes.values()))


def default_preprocess(observation: Mapping[str, Any], rows: np.ndarray | None) -> dict[str, Any]:
    """Arrays become float32 tensors (the given rows); ``task`` stays a list of str."""
    out: dict[str, Any] = {}
    for key, value in observation.items():
        if key == "task":
            out[key] = list(value) if rows is None else [value[i] for i in rows]
        else:
            arr = np.asarray(value)
            out[key] = torch.from_numpy(
                np.ascontiguousarray(arr if rows is None else arr[rows], dtype=np.float32)
            )
    return out


class TorchPolicyAdapter(ChunkedAdapter):
    """Runs a chunking ``nn.Module`` policy in a control loop and captures its internals by hooks.

    Hooks are registered only while a chunk is computed (inside :func:`salus.policies.capture.capture_modules`)
    so they fire ``num_steps`` times per chunk and never on steps served from the queue.
    ``num_samples`` = K > 1 draws K chunks from K noises in one batched call; sample 0 is executed.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        output_layer: str,
        chunk_size: int,
        n_action_steps: int,
        action_dim: int,
        model_action_dim: int | None = None,
        embedding_layer: str | None = None,
        preprocess: Preprocess | None = None,
        postprocess: Postprocess | None = None,
        validate: Callable[[Mapping[str, Any]], int] | None = None,
        num_samples: int = 1,
        capture_internals: bool = True,
        seed: int = 0,
        device: str | torch.device = "cpu",
        state_dim: int | None = None,
    ):
        out_module = resolve_module(model, output_layer)
        if embedding_layer is not None:
            resolve_module(model, embedding_layer)
        if not callable(getattr(model, "sample_actions", None)):
            raise InvalidInputError(
                f"{type(model).__name__} has no sample_actions(batch, noise) method; see salus.policies.generic"
            )
        if model_action_dim is None:
            model_action_dim = getattr(out_module, "out_features", None)
            if model_action_dim is None:
                raise InvalidInputError(
                    f"cannot infer the width of output layer {output_layer!r}; pass model_action_dim"
                )
        if model_action_dim < action_dim:
            raise InvalidInputError(
                f"model_action_dim ({model_action_dim}) must be >= action_dim ({action_dim})"
            )
        super().__init__(
            action_dim=action_dim,
            chunk_size=chunk_size,
            n_action_steps=n_action_steps,
            noise_shape=(chunk_size, int(model_action_dim)),
            num_samples=num_samples,
            capture_internals=capture_internals,
            seed=seed,
        )
        self.model = model.to(device).eval()
        self._sample_actions: Callable[[dict[str, Any], torch.Tensor], torch.Tensor] = model.sample_actions  # type: ignore[assignment]
        self.device = torch.device(device)
        self.output_layer = output_layer
        self.embedding_layer = embedding_layer
        self._preprocess: Preprocess = preprocess or default_preprocess
        self._postprocess: Postprocess = postprocess or (
            lambda chunk: chunk[..., :action_dim].float().cpu().numpy()
        )
        self._validate_fn = validate or default_validate
        self.multi_sample = bool(getattr(model, "supports_multi_sample", False))
        if state_dim is None:  # the model may say it: model.state_dim or model.config.state_dim
            found = getattr(model, "state_dim", None)
            if found is None:
                found = getattr(getattr(model, "config", None), "state_dim", None)
            state_dim = found if isinstance(found, int) and not isinstance(found, bool) else None
        if state_dim is not None and state_dim < 1:
            raise InvalidInputError(f"state_dim must be >= 1, got {state_dim}")
        self.state_dim = state_dim

    def reset(self, env_index: int | None = None, seed: int | None = None) -> None:
        """Start a new episode (see :meth:`PolicyAdapter.reset`), and reset the wrapped model too
        when it has a ``reset`` method (a stateful controller), with whichever of ``env_index`` /
        ``seed`` it accepts (:func:`salus.policies.base.forward_reset`)."""
        super().reset(env_index, seed)
        forward_reset(self.model, env_index, seed)

    def _validate(self, observation: Mapping[str, Any]) -> int:
        b = int(self._validate_fn(observation))
        if self.state_dim is not None and "state" in observation:
            shape = np.shape(observation["state"])
            if len(shape) != 2 or shape[1] != self.state_dim:
                raise InvalidInputError(
                    f"the policy takes a state of {self.state_dim} entries, the observation gives "
                    f"{shape[1:] if len(shape) == 2 else shape}; map the right observation keys to the "
                    "state (salus collect --obs state=KEY[,KEY])"
                )
        return b

    def _sample(self, batch: dict[str, Any], noise: torch.Tensor) -> torch.Tensor:
        """``sample_actions``; a shape error inside the model (an input width it cannot take) becomes
        an ``InvalidInputError`` naming the input shapes."""
        try:
            return self._sample_actions(batch, noise)
        except RuntimeError as exc:
            text = str(exc)
            if not any(w in text for w in ("shape", "size", "dimension")):
                raise
            shapes = {k: tuple(v.shape) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            first = text.splitlines()[0] if text else repr(exc)
            raise InvalidInputError(
                f"{type(self.model).__name__}.sample_actions cannot take inputs of shapes {shapes} "
                f"(noise {tuple(noise.shape)}): {first}. Is the state "
                "mapped from the right observation keys (salus collect --obs state=KEY[,KEY])? Pass "
                "state_dim to TorchPolicyAdapter to check the width before the model runs."
            ) from exc

    def _model_batch(self, observation: Mapping[str, Any], rows: np.ndarray) -> dict[str, Any]:
        batch = self._preprocess(observation, rows)
        k = self.num_samples
        out: dict[str, Any] = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if k > 1 and not self.multi_sample:
                    value = value.repeat_interleave(k, dim=0)
            elif k > 1 and not self.multi_sample and isinstance(value, list):
                value = [v for v in value for _ in range(k)]
            out[key] = value
        return out

    def _compute_chunks(
        self, observation: Mapping[str, Any], rows: np.ndarray, noise: torch.Tensor
    ) -> ChunkResult:
        n, k = rows.size, self.num_samples
        batch = self._model_batch(observation, rows)
        noise = noise.to(self.device)
        if not self.capture_internals:
            with torch.no_grad():
                out = self._sample(batch, noise)
            return self._result(out, n, None, None, None)
        names = [self.output_layer] + ([self.embedding_layer] if self.embedding_layer else [])
        with torch.no_grad(), capture_modules(self.model, names) as buf:
            out = self._sample(batch, noise)
        if buf.count(self.output_layer) == 0:
            raise InvalidInputError(
                f"output layer {self.output_layer!r} was never called by sample_actions; name the layer that "
                "produces the velocity (see salus.policies.generic)"
            )
        hidden = buf.inputs(self.output_layer)  # (S, N, C, H)
        vel = buf.outputs(self.output_layer)  # (S, N, C, A_m)
        if hidden.ndim != 4 or hidden.shape[1] != n * k or vel.shape[:3] != hidden.shape[:3]:
            raise InvalidInputError(
                f"output layer {self.output_layer!r} must map (N, C, H) to (N, C, A_m) with N = {n * k}; "
                f"got input {tuple(hidden.shape[1:])} and output {tuple(vel.shape[1:])}"
            )
        s = hidden.shape[0]
        hidden = hidden.reshape(s, n, k, *hidden.shape[2:])[:, :, 0]  # (S, n, C, H), sample 0
        vel = vel.reshape(s, n, k, *vel.shape[2:])[:, :, 0]
        emb = None
        if self.embedding_layer:
            e = buf.outputs(self.embedding_layer)[-1]
            if e.ndim == 3:
                e = e.mean(1)
            if e.shape[0] == n * k and k > 1:
                e = e.reshape(n, k, -1)[:, 0]
            emb = e.reshape(n, -1)
        return self._result(out, n, hidden, vel, emb)

    def _result(
        self,
        out: torch.Tensor,
        n: int,
        hidden: torch.Tensor | None,
        vel: torch.Tensor | None,
        emb: torch.Tensor | None,
    ) -> ChunkResult:
        k, (c, a_m) = self.num_samples, self.noise_shape
        if tuple(out.shape) != (n * k, c, a_m):
            raise InvalidInputError(
                f"sample_actions must return (N, C, A_m) = ({n * k}, {c}, {a_m}), got {tuple(out.shape)}"
            )
        env = np.asarray(self._postprocess(out), dtype=np.float32).reshape(n * k, c, self.action_dim)
        return ChunkResult.from_capture(env, n, k, a_m, hidden, vel, emb)
