"""Configuration of the salus adapter around LeRobot's SmolVLA (cheap: no torch, no LeRobot import)."""

from __future__ import annotations

from dataclasses import dataclass, field

from salus.errors import InvalidInputError

__all__ = ["SmolVLAAdapterConfig", "DEFAULT_IMAGE_KEYS", "DEFAULT_STATE_KEY", "HOOK_MODULE", "PREFIX_MODULE"]

#: salus observation key -> LeRobot feature key.
DEFAULT_IMAGE_KEYS: dict[str, str] = {
    "image_front": "observation.images.front",
    "image_wrist": "observation.images.wrist",
}
DEFAULT_STATE_KEY = "observation.state"
#: The output layer whose input (hidden) and output (velocity) are captured, inside ``policy``.
HOOK_MODULE = "model.action_out_proj"
#: The VLM's final norm: called once per chunk, on the prefix (images, language, state); its output,
#: averaged over the valid prefix tokens, is the observation embedding.
PREFIX_MODULE = "model.vlm_with_expert.vlm.model.text_model.norm"


@dataclass
class SmolVLAAdapterConfig:
    """How salus observations map to a SmolVLA checkpoint and what the adapter captures.

    ``image_keys`` maps salus image keys (uint8 ``(H, W, 3)``) to the policy's visual features
    (every target must be one of the checkpoint's image features); ``state_key`` is the policy's
    state feature; ``state_indices`` picks the entries of the salus ``state`` (22,) that form the
    policy's state (None: the whole vector, whose length must then match); ``action_indices`` picks
    the policy's output entries that form the env action (None: all of them).
    ``n_action_steps`` overrides the policy's (None keeps it; must be <= its ``chunk_size``).
    ``num_samples`` K > 1 turns on K-sample mode: every chunk is sampled from K noises in one
    batched call and the executed chunk is sample 0. ``capture_internals`` False runs without hooks
    (the hidden / velocity / embedding fields of the internals are then zero-width arrays).
    ``seed`` seeds the per-environment noise generators (environment b uses ``seed + b``).
    ``action_clip`` clips executed actions to [-c, c] (None: no clip). ``device`` is where the
    policy runs (None: the checkpoint's ``device``).
    """

    image_keys: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_IMAGE_KEYS))
    state_key: str = DEFAULT_STATE_KEY
    state_indices: tuple[int, ...] | None = None
    action_indices: tuple[int, ...] | None = None
    n_action_steps: int | None = None
    num_samples: int = 1
    capture_internals: bool = True
    seed: int = 0
    action_clip: float | None = 1.0
    device: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.image_keys, dict) or not self.image_keys:
            raise InvalidInputError(
                f"image_keys must be a non-empty dict of salus key -> LeRobot key, got {self.image_keys!r}"
            )
        for src, dst in self.image_keys.items():
            if not isinstance(src, str) or not isinstance(dst, str) or not dst.startswith("observation."):
                raise InvalidInputError(
                    f"image_keys entries must map str -> 'observation.*' keys, got {src!r} -> {dst!r}"
                )
        if not isinstance(self.state_key, str) or not self.state_key.startswith("observation."):
            raise InvalidInputError(f"state_key must start with 'observation.', got {self.state_key!r}")
        for name in ("state_indices", "action_indices"):
            value = getattr(self, name)
            if value is not None:
                value = tuple(int(i) for i in value)
                if not value or min(value) < 0:
                    raise InvalidInputError(f"{name} must be non-empty non-negative indices, got {value}")
                setattr(self, name, value)
        if self.n_action_steps is not None and (
            not isinstance(self.n_action_steps, int) or self.n_action_steps < 1
        ):
            raise InvalidInputError(
                f"n_action_steps must be an int >= 1 or None, got {self.n_action_steps!r}"
            )
        if not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise InvalidInputError(f"num_samples must be an int >= 1, got {self.num_samples!r}")
        if self.action_clip is not None and not self.action_clip > 0:
            raise InvalidInputError(f"action_clip must be > 0 or None, got {self.action_clip}")
        self.seed = int(self.seed)
