"""Configuration of the salus adapter around LeRobot's SmolVLA (cheap: no torch, no LeRobot import)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salus.errors import CheckpointError, InvalidInputError, InvalidNameError

__all__ = [
    "SmolVLAAdapterConfig",
    "SalusMapping",
    "MAPPING_FILE",
    "MAPPING_FIELDS",
    "DEFAULT_IMAGE_KEYS",
    "DEFAULT_STATE_KEY",
    "HOOK_MODULE",
    "PREFIX_MODULE",
]

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
    Spec-option text is accepted: ``image_keys`` as ``"image_front:observation.images.front,..."``
    and a single int for an index list.
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
        if isinstance(self.image_keys, str):  # spec text: "image_front:observation.images.front,..."
            self.image_keys = _parse_image_keys(self.image_keys)
        for name in ("state_indices", "action_indices"):
            if isinstance(getattr(self, name), int):  # one index, as a spec option gives it
                setattr(self, name, (getattr(self, name),))
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


def _parse_image_keys(text: str) -> dict[str, str]:
    """``"SALUS_KEY:LEROBOT_KEY,SALUS_KEY:LEROBOT_KEY"`` (``+`` also separates) -> dict."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.replace("+", ",").split(","))):
        src, sep, dst = part.partition(":")
        if not sep or not src or not dst:
            raise InvalidInputError(
                f"image_keys entry {part!r} must be SALUS_KEY:LEROBOT_KEY "
                "(e.g. image_front:observation.images.front)"
            )
        out[src] = dst
    return out


#: The small salus file a checkpoint folder may carry: how the simulator's observation maps onto it.
MAPPING_FILE = "salus_mapping.json"
#: The adapter options a mapping file may set (spec options and keyword arguments override them).
MAPPING_FIELDS = ("state_indices", "action_indices", "image_keys")


@dataclass
class SalusMapping:
    """How a SmolVLA checkpoint's inputs and outputs map to the salus simulator (``salus_mapping.json``).

    ``state_indices``: entries of the salus state (22,) forming the policy's state (None: all 22);
    ``action_indices``: policy outputs forming the env action (None: all); ``image_keys``: salus
    image key -> the checkpoint's visual feature (None: the adapter's default two cameras).
    ``state_names`` documents the picked entries (e.g. ``joint_pos.0``); it is not read back.
    """

    state_indices: tuple[int, ...] | None = None
    action_indices: tuple[int, ...] | None = None
    image_keys: dict[str, str] | None = None
    state_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("state_indices", "action_indices"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, (str, bytes)) or not all(
                    isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value
                ):
                    raise InvalidInputError(
                        f"{MAPPING_FILE}: {name} must be a list of ints >= 0, got {value!r}"
                    )
                setattr(self, name, tuple(value))
        if self.image_keys is not None and (
            not isinstance(self.image_keys, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in self.image_keys.items())
        ):
            raise InvalidInputError(
                f"{MAPPING_FILE}: image_keys must map str -> str, got {self.image_keys!r}"
            )
        if self.state_names is not None:
            self.state_names = tuple(str(n) for n in self.state_names)

    def adapter_options(self) -> dict[str, Any]:
        """The fields the mapping sets, as :class:`SmolVLAAdapterConfig` keyword arguments."""
        return {name: getattr(self, name) for name in MAPPING_FIELDS if getattr(self, name) is not None}

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / MAPPING_FILE
        data = {
            "state_indices": None if self.state_indices is None else list(self.state_indices),
            "action_indices": None if self.action_indices is None else list(self.action_indices),
            "image_keys": self.image_keys,
            "state_names": None if self.state_names is None else list(self.state_names),
        }
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> SalusMapping | None:
        """The mapping of a checkpoint folder, or None when it has no ``salus_mapping.json``."""
        path = Path(folder) / MAPPING_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}")
        valid = (*MAPPING_FIELDS, "state_names")
        for key in data:
            if key not in valid:
                raise InvalidNameError(f"field of {path}", key, valid)
        try:
            return cls(**data)
        except InvalidInputError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
