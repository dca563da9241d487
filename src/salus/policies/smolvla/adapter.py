"""salus adapter around LeRobot's real ``SmolVLAPolicy`` and its pre/post-processor pipelines.

Per control step the adapter maps the salus observation to LeRobot keys (images uint8
``(B, H, W, 3)`` -> float ``(B, 3, H, W)`` in [0, 1], ``state`` -> ``observation.state``, ``task`` ->
tokenized by the checkpoint's own preprocessor), and when an environment's queue is empty computes
a new chunk with ``policy.predict_action_chunk(batch, noise)``: the exact computation of
``select_action`` (which computes ``predict_action_chunk`` and queues its first ``n_action_steps``),
but per environment (LeRobot's single queue is shared by the whole batch and cannot restart one
environment) and with access to the full chunk.

While a chunk is computed, and only then, forward hooks record:

- ``model.action_out_proj`` at each of the ``num_steps`` Euler steps: input (N, C, H) = the action
  expert's output for the chunk positions (``hidden``), output (N, C, A_m=32) = the flow-matching
  velocity (not logits).
- the VLM's final norm (``model.vlm_with_expert.vlm.model.text_model.norm``), called once per
  chunk on the prefix pass that fills the KV cache: the **observation embedding** is the mean,
  over the valid (non-padding) prefix tokens, of that output: image tokens of every camera,
  language tokens and the state token, contextualised by all VLM layers. E = the VLM text hidden
  size (960 for SmolVLM2-500M). This is the "prefix output" feature SAFE / FIPER use. The padding
  mask comes from ``VLAFlowMatching.embed_prefix``, wrapped for the duration of the call.

Shapes: B environments, N = n * K model rows, C chunk size, A env action dimension, A_m the padded
action width (``max_action_dim``), S denoising steps, H action-expert width, E VLM width.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from salus.errors import CheckpointError, InvalidInputError, InvalidNameError
from salus.policies.capture import capture_modules, resolve_module
from salus.policies.chunking import ChunkedAdapter, ChunkResult
from salus.policies.smolvla._compat import import_lerobot_smolvla
from salus.policies.smolvla.configuration_smolvla import (
    HOOK_MODULE,
    MAPPING_FILE,
    PREFIX_MODULE,
    SalusMapping,
    SmolVLAAdapterConfig,
)
from salus.policies.smolvla.tiny import TINY_VLM_DIRNAME

__all__ = ["SmolVLAAdapter", "load_smolvla"]

PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"


@contextlib.contextmanager
def _record_prefix_mask(model: Any) -> Iterator[list[torch.Tensor]]:
    """Record the prefix padding mask (N, L) that ``VLAFlowMatching.embed_prefix`` returns.

    ``embed_prefix`` is a method, not a module, so it is wrapped on the instance for the duration
    of the block (and restored after, also on error).
    """
    masks: list[torch.Tensor] = []
    had_own = "embed_prefix" in vars(model)
    previous = vars(model).get("embed_prefix")
    original = model.embed_prefix

    def embed_prefix(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        masks.append(out[1].detach())
        return out

    model.embed_prefix = embed_prefix
    try:
        yield masks
    finally:
        if had_own:
            model.embed_prefix = previous
        else:
            del model.embed_prefix


class SmolVLAAdapter(ChunkedAdapter):
    """Runs a LeRobot ``SmolVLAPolicy`` in a salus control loop and captures its internals.

    ``preprocessor`` / ``postprocessor`` are the checkpoint's LeRobot ``PolicyProcessorPipeline``s
    (tokenizer, normalisation, device). Build it with :meth:`from_pretrained` (a local folder or a
    hub id) or from objects you already have. ``act(observation, noise=None)`` takes a salus
    observation (single or batched); ``noise`` (B, C, A_m) or (B, K, C, A_m) replaces the drawn
    noise of the environments that compute a chunk at this step.
    """

    def __init__(
        self,
        policy: Any,
        preprocessor: Any,
        postprocessor: Any,
        config: SmolVLAAdapterConfig | None = None,
    ):
        cfg = config or SmolVLAAdapterConfig()
        pcfg: Any = policy.config  # a lerobot SmolVLAConfig
        image_features = list(pcfg.image_features)
        for src, dst in cfg.image_keys.items():
            if dst not in image_features:
                raise InvalidNameError(f"image feature (target of {src!r})", dst, image_features)
        # LeRobot fills at most `empty_cameras` missing cameras with blank images and silently drops
        # the rest: a camera the checkpoint was trained with that the mapping does not feed is an error.
        unfed = [f for f in image_features if f not in cfg.image_keys.values()]
        if len(unfed) > int(getattr(pcfg, "empty_cameras", 0)):
            raise InvalidInputError(
                f"the checkpoint expects camera(s) {unfed} that image_keys {cfg.image_keys} does not provide "
                f"(it fills at most empty_cameras={int(getattr(pcfg, 'empty_cameras', 0))} with blank images); "
                "map a salus camera onto each, e.g. image_keys=image_front:"
                f"{unfed[0]} in the spec or in {MAPPING_FILE}"
            )
        state_feature = pcfg.robot_state_feature
        if state_feature is None or cfg.state_key not in pcfg.input_features:
            raise InvalidNameError(
                "state feature", cfg.state_key, [k for k in pcfg.input_features if "state" in k]
            )
        self.policy_state_dim = int(state_feature.shape[0])
        if cfg.state_indices is not None and len(cfg.state_indices) != self.policy_state_dim:
            raise InvalidInputError(
                f"state_indices selects {len(cfg.state_indices)} entries but the policy's state has "
                f"{self.policy_state_dim}"
            )
        policy_action_dim = int(pcfg.action_feature.shape[0])
        if cfg.action_indices is not None and max(cfg.action_indices) >= policy_action_dim:
            raise InvalidInputError(
                f"action_indices {cfg.action_indices} out of range for the policy's {policy_action_dim} actions"
            )
        action_dim = policy_action_dim if cfg.action_indices is None else len(cfg.action_indices)
        super().__init__(
            action_dim=action_dim,
            chunk_size=int(pcfg.chunk_size),
            n_action_steps=int(pcfg.n_action_steps if cfg.n_action_steps is None else cfg.n_action_steps),
            noise_shape=(int(pcfg.chunk_size), int(pcfg.max_action_dim)),
            num_samples=cfg.num_samples,
            capture_internals=cfg.capture_internals,
            seed=cfg.seed,
        )
        self.config = cfg
        self.policy: Any = policy.eval()  # lerobot SmolVLAPolicy
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor
        self.num_steps = int(pcfg.num_steps)
        self.device = torch.device(cfg.device or pcfg.device or "cpu")
        self.policy.to(self.device)
        # Fail now, with the valid names, if the modules we hook are not there.
        self._out_proj = resolve_module(self.policy, HOOK_MODULE)
        self._prefix_module = resolve_module(self.policy, PREFIX_MODULE)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, path: str | Path, config: SmolVLAAdapterConfig | None = None, **kwargs: Any
    ) -> SmolVLAAdapter:
        """Load policy and processors from a LeRobot checkpoint folder or hub id (e.g. ``lerobot/smolvla_base``).

        ``kwargs`` are :class:`SmolVLAAdapterConfig` fields (when ``config`` is None). A folder with
        a ``vlm/`` sub-folder (as written by :func:`build_tiny_smolvla`) uses it as the VLM and tokenizer.
        A folder's ``salus_mapping.json`` (:class:`SalusMapping`) gives the defaults of
        ``state_indices``, ``action_indices`` and ``image_keys``; ``kwargs`` override them.
        """
        if config is not None and kwargs:
            raise InvalidInputError(f"pass either config or config fields, not both (got {sorted(kwargs)})")
        valid = [f.name for f in dataclasses.fields(SmolVLAAdapterConfig)]
        for name in kwargs:
            if name not in valid:
                raise InvalidNameError("SmolVLA adapter option", name, valid)
        local = Path(path)
        if local.exists():
            for name in ("config.json", PREPROCESSOR_FILE, POSTPROCESSOR_FILE):
                if not (local / name).is_file():
                    raise CheckpointError(
                        f"SmolVLA checkpoint {str(local)!r} has no {name}; a LeRobot >= 0.4 checkpoint holds "
                        f"config.json, model.safetensors, {PREPROCESSOR_FILE} and {POSTPROCESSOR_FILE}"
                    )
        if config is None:
            mapping = SalusMapping.load(local) if local.is_dir() else None
            options = {} if mapping is None else mapping.adapter_options()
            config = SmolVLAAdapterConfig(**{**options, **kwargs})
        cfg = config
        lr = import_lerobot_smolvla()
        try:
            pcfg = lr.PreTrainedConfig.from_pretrained(str(path))
        except Exception as exc:  # hub errors, bad JSON
            raise CheckpointError(f"cannot read the SmolVLA config of {str(path)!r}: {exc}") from exc
        if getattr(pcfg, "type", None) != "smolvla":
            raise CheckpointError(f"{str(path)!r} is a {getattr(pcfg, 'type', '?')!r} policy, not smolvla")
        overrides: dict[str, dict[str, Any]] = {}
        vlm_dir = local / TINY_VLM_DIRNAME
        if vlm_dir.is_dir():
            pcfg.vlm_model_name = str(vlm_dir.resolve())
            overrides["tokenizer_processor"] = {"tokenizer_name": pcfg.vlm_model_name}
        # One device for model and preprocessor (a checkpoint saved on "cuda" must load on a CPU box).
        pcfg.device = cfg.device or pcfg.device or "cpu"
        overrides["device_processor"] = {"device": pcfg.device}
        # LeRobot print()s progress while building the model; keep stdout clean for `--json` CLIs.
        with contextlib.redirect_stdout(sys.stderr):
            policy = lr.SmolVLAPolicy.from_pretrained(str(path), config=pcfg)
        try:
            pre = lr.PolicyProcessorPipeline.from_pretrained(
                str(path), config_filename=PREPROCESSOR_FILE, overrides=overrides
            )
            post = lr.PolicyProcessorPipeline.from_pretrained(
                str(path),
                config_filename=POSTPROCESSOR_FILE,
                to_transition=lr.policy_action_to_transition,
                to_output=lr.transition_to_policy_action,
            )
        except Exception as exc:
            raise CheckpointError(
                f"cannot load the LeRobot pre/post-processors of {str(path)!r} ({exc}); checkpoints from "
                "before LeRobot 0.4 need lerobot's processor migration script first"
            ) from exc
        return cls(policy, pre, post, cfg)

    # -- episode control -----------------------------------------------------------------------
    def reset(self, env_index: int | None = None, seed: int | None = None) -> None:
        """Start new episodes; also empties LeRobot's own action queue (lerobot#1116)."""
        super().reset(env_index, seed)
        if env_index is None:
            self.policy.reset()

    def set_compute_batch(self, rows: int | None) -> None:
        """Fixed-size passes (see :meth:`ChunkedAdapter.set_compute_batch`); the task text is then
        also padded to the tokenizer's fixed length, not to the longest text of the pass, so a row's
        shapes do not depend on the other rows' tasks (padding is masked out: same policy)."""
        super().set_compute_batch(rows)
        for step in getattr(self.preprocessor, "steps", ()):
            if hasattr(step, "padding") and hasattr(step, "max_length"):  # LeRobot's tokenizer step
                if not hasattr(step, "_salus_padding"):
                    step._salus_padding = step.padding
                step.padding = step._salus_padding if rows is None else "max_length"

    # -- observation ---------------------------------------------------------------------------
    def _validate(self, observation: Mapping[str, Any]) -> int:
        cfg = self.config
        required = [*cfg.image_keys, "state", "task"]
        missing = [k for k in required if k not in observation]
        if missing:
            raise InvalidInputError(f"observation is missing {missing}; the SmolVLA adapter needs {required}")
        task = observation["task"]
        if isinstance(task, str) or not all(isinstance(t, str) for t in task):
            raise InvalidInputError("observation 'task' must be a list of B str in a batch")
        b = len(task)
        for key in cfg.image_keys:
            img = np.asarray(observation[key])
            if img.ndim != 4 or img.shape[0] != b or img.shape[-1] != 3 or img.dtype != np.uint8:
                raise InvalidInputError(
                    f"observation {key!r} must be uint8 (B, H, W, 3) with B={b}, got {img.dtype} {img.shape}"
                )
        state = np.asarray(observation["state"])
        if state.ndim != 2 or state.shape[0] != b:
            raise InvalidInputError(f"observation 'state' must be (B, D) with B={b}, got {state.shape}")
        if not np.all(np.isfinite(state)):
            raise InvalidInputError("observation 'state' contains NaN or inf")
        dim = state.shape[1] if cfg.state_indices is None else len(cfg.state_indices)
        if cfg.state_indices is not None and max(cfg.state_indices) >= state.shape[1]:
            raise InvalidInputError(
                f"state_indices {cfg.state_indices} out of range for state width {state.shape[1]}"
            )
        if dim != self.policy_state_dim:
            raise InvalidInputError(
                f"the policy's state has {self.policy_state_dim} entries but the observation gives {dim}; "
                f"set state_indices to pick them (spec option smolvla:PATH?state_indices=0-6,14-21, or "
                f"{MAPPING_FILE} in the checkpoint folder)"
            )
        return b

    def lerobot_batch(self, observation: Mapping[str, Any], rows: np.ndarray | None = None) -> dict[str, Any]:
        """The raw LeRobot observation dict (before the preprocessor) for the given rows of a batch."""
        cfg = self.config
        sel = slice(None) if rows is None else rows
        out: dict[str, Any] = {}
        for src, dst in cfg.image_keys.items():
            img = torch.from_numpy(np.ascontiguousarray(np.asarray(observation[src])[sel]))
            out[dst] = img.permute(0, 3, 1, 2).float().div_(255.0)
        state = np.asarray(observation["state"], dtype=np.float32)[sel]
        if cfg.state_indices is not None:
            state = state[:, list(cfg.state_indices)]
        out[cfg.state_key] = torch.from_numpy(np.ascontiguousarray(state))
        task = list(observation["task"])
        out["task"] = task if rows is None else [task[int(i)] for i in rows]
        return out

    def to_env_actions(self, actions: torch.Tensor) -> np.ndarray:
        """Policy-normalised actions (..., A_policy) -> env units (..., A) through the postprocessor."""
        env = self.postprocessor(actions)
        arr = np.asarray(env.detach().float().cpu().numpy(), dtype=np.float32)
        if self.config.action_indices is not None:
            arr = arr[..., list(self.config.action_indices)]
        if self.config.action_clip is not None:
            arr = np.clip(arr, -self.config.action_clip, self.config.action_clip)
        return arr

    # -- chunk computation ---------------------------------------------------------------------
    def _compute_chunks(
        self, observation: Mapping[str, Any], rows: np.ndarray, noise: torch.Tensor
    ) -> ChunkResult:
        n, k = rows.size, self.num_samples
        batch = self.preprocessor(self.lerobot_batch(observation, rows))
        if k > 1:
            batch = {
                key: (
                    value.repeat_interleave(k, dim=0)
                    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == n
                    else [v for v in value for _ in range(k)]
                    if isinstance(value, list) and len(value) == n
                    else value
                )
                for key, value in batch.items()
            }
        noise = noise.to(self.device)
        predict = self.policy.predict_action_chunk
        if not self.capture_internals:
            out = predict(batch, noise=noise)
            return self._result(out, n, None, None, None)
        with (
            capture_modules(self.policy, [HOOK_MODULE, PREFIX_MODULE]) as buf,
            _record_prefix_mask(self.policy.model) as masks,
        ):
            out = predict(batch, noise=noise)
        if buf.count(HOOK_MODULE) != self.num_steps or buf.count(PREFIX_MODULE) != 1 or len(masks) != 1:
            raise RuntimeError(
                f"expected {self.num_steps} calls of {HOOK_MODULE} and one prefix pass per chunk, got "
                f"{buf.count(HOOK_MODULE)} and {buf.count(PREFIX_MODULE)}: is RTC or torch.compile on?"
            )
        hidden = buf.inputs(HOOK_MODULE)  # (S, N, C, H)
        vel = buf.outputs(HOOK_MODULE)  # (S, N, C, A_m)
        s = hidden.shape[0]
        hidden = hidden.reshape(s, n, k, *hidden.shape[2:])[:, :, 0]
        vel = vel.reshape(s, n, k, *vel.shape[2:])[:, :, 0]
        prefix_out = buf.outputs(PREFIX_MODULE)[0].float()  # (N, L, E)
        valid = masks[0].to(prefix_out.dtype)[..., None]  # (N, L, 1)
        emb = (prefix_out * valid).sum(1) / valid.sum(1).clamp_min(1.0)  # (N, E)
        emb = emb.reshape(n, k, -1)[:, 0]
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
        env = self.to_env_actions(out).reshape(n * k, c, self.action_dim)
        return ChunkResult.from_capture(env, n, k, a_m, hidden, vel, emb)


def load_smolvla(path: str | None = None, **kwargs: Any) -> SmolVLAAdapter:
    """Loader of the ``smolvla[:PATH]`` policy spec.

    ``PATH``: a LeRobot checkpoint folder or hub id; without one, the SmolVLA that ships in the
    package (``salus/policies/smolvla/weights``, trained in our simulator by ``salus policy train
    --arch smolvla``).
    """
    if not path:
        from salus.policies import packaged_weights_dir

        shipped = packaged_weights_dir("smolvla")
        if not (shipped / "model.safetensors").is_file():
            raise CheckpointError(
                f"the packaged SmolVLA weights are missing from {shipped}; reinstall salus, or pass a "
                "checkpoint: 'smolvla:PATH' with a LeRobot SmolVLA folder"
            )
        path = str(shipped)
    return SmolVLAAdapter.from_pretrained(path, **kwargs)
