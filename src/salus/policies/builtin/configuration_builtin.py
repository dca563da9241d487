"""Configuration of the built-in flow-matching VLA policy (cheap to import: no torch).

The policy is shaped like LeRobot's SmolVLA: per-camera image encoders, a state encoder and task-text
tokens feed a trunk whose output is the observation embedding (E); an action expert denoises an action
chunk of ``chunk_size`` steps in ``num_steps`` Euler steps (t from 1 to 0) and ends in
``action_out_proj = nn.Linear(expert_hidden, action_dim)``, whose output is the velocity.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from salus.errors import CheckpointError, InvalidInputError
from salus.sim.spec import ACTION_DIM, CAMERA_NAMES, DEFAULT_IMAGE_SIZE, STATE_DIM, STATE_SLICES

__all__ = ["BuiltinConfig", "WordTokenizer", "BASE_VOCAB", "PAD_TOKEN", "UNK_TOKEN", "CONFIG_FILE"]

CONFIG_FILE = "config.json"
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"

# Words every built-in vocabulary starts with; training adds the words of its tasks' texts.
BASE_VOCAB: tuple[str, ...] = (
    PAD_TOKEN,
    UNK_TOKEN,
    "a",
    "an",
    "the",
    "and",
    "to",
    "in",
    "on",
    "into",
    "onto",
    "of",
    "it",
    "pick",
    "up",
    "place",
    "put",
    "push",
    "lift",
    "stack",
    "move",
    "open",
    "close",
    "grasp",
    "drop",
    "insert",
    "cube",
    "block",
    "box",
    "peg",
    "hole",
    "bin",
    "target",
    "goal",
    "table",
    "red",
    "green",
    "blue",
    "yellow",
    "left",
    "right",
    "top",
    "small",
    "large",
)

_WORD_RE = re.compile(r"[a-z0-9]+")


class WordTokenizer:
    """A deterministic word-level tokenizer over a fixed vocabulary (ids are vocabulary indices).

    Lower-cases the text and splits it into runs of letters and digits; unknown words map to
    ``<unk>``; the output is padded with ``<pad>`` (id 0) or truncated to ``max_tokens``.
    """

    def __init__(self, vocab: tuple[str, ...] | list[str], max_tokens: int):
        self.vocab = tuple(vocab)
        self.max_tokens = int(max_tokens)
        self._ids = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id = self._ids[PAD_TOKEN]
        self.unk_id = self._ids[UNK_TOKEN]

    @staticmethod
    def words(text: str) -> list[str]:
        return _WORD_RE.findall(text.lower())

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, length ``max_tokens``."""
        if not isinstance(text, str):
            raise InvalidInputError(f"task text must be a str, got {type(text).__name__}")
        ids = [self._ids.get(w, self.unk_id) for w in self.words(text)][: self.max_tokens]
        return ids + [self.pad_id] * (self.max_tokens - len(ids))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidInputError(f"BuiltinConfig.{name} must be a positive int, got {value!r}")


@dataclass
class BuiltinConfig:
    """Architecture and inference settings of the built-in policy (saved as ``config.json``)."""

    image_size: int = DEFAULT_IMAGE_SIZE  # input images are (image_size, image_size, 3) uint8
    cameras: tuple[str, ...] = CAMERA_NAMES
    state_dim: int = STATE_DIM
    # Parts of the state the model reads (names of ``salus.sim.spec.STATE_SLICES``). Joint velocities
    # are left out by default: in demonstrations they reveal the expert's last action, a shortcut
    # ("copycat") that behaviour cloning latches onto and that fails in closed loop.
    state_features: tuple[str, ...] = ("joint_pos", "gripper_opening", "ee_pos", "ee_quat")
    action_dim: int = ACTION_DIM
    chunk_size: int = 16  # C: actions predicted per chunk
    n_action_steps: int = 8  # actions executed from each chunk before a new one is computed
    num_steps: int = 10  # S: Euler denoising steps per chunk
    vocab: tuple[str, ...] = BASE_VOCAB
    max_text_tokens: int = 12
    conv_channels: tuple[int, ...] = (16, 32, 32)
    num_keypoints: int = 32  # spatial-softmax keypoints per camera
    image_feature_dim: int = 64
    state_feature_dim: int = 64
    text_dim: int = 32
    embed_dim: int = 128  # E: observation embedding (trunk output)
    expert_hidden: int = 128  # H: width of the action expert, input width of action_out_proj
    expert_layers: int = 2
    expert_heads: int = 4
    min_period: float = 4e-3  # sinusoidal time embedding, as in SmolVLA
    max_period: float = 4.0
    extra: dict[str, Any] = field(default_factory=dict)  # free-form metadata (training recipe, tasks)

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)
        self.state_features = tuple(self.state_features)
        self.vocab = tuple(self.vocab)
        self.conv_channels = tuple(int(c) for c in self.conv_channels)
        for name in (
            "image_size",
            "state_dim",
            "action_dim",
            "chunk_size",
            "n_action_steps",
            "num_steps",
            "max_text_tokens",
            "num_keypoints",
            "image_feature_dim",
            "state_feature_dim",
            "text_dim",
            "embed_dim",
            "expert_hidden",
            "expert_layers",
            "expert_heads",
        ):
            _positive(name, getattr(self, name))
        if self.n_action_steps > self.chunk_size:
            raise InvalidInputError(
                f"BuiltinConfig.n_action_steps ({self.n_action_steps}) must be <= chunk_size ({self.chunk_size})"
            )
        if self.image_size < 16:
            raise InvalidInputError(f"BuiltinConfig.image_size must be >= 16, got {self.image_size}")
        bad_features = [f for f in self.state_features if f not in STATE_SLICES]
        if (
            not self.state_features
            or bad_features
            or len(set(self.state_features)) != len(self.state_features)
        ):
            raise InvalidInputError(
                f"BuiltinConfig.state_features must be distinct names from {tuple(STATE_SLICES)}, "
                f"got {self.state_features}"
            )
        if self.state_dim != STATE_DIM:
            raise InvalidInputError(
                f"BuiltinConfig.state_dim must be {STATE_DIM} (salus.sim.spec), got {self.state_dim}"
            )
        if not self.cameras:
            raise InvalidInputError("BuiltinConfig.cameras must name at least one camera")
        bad = [c for c in self.cameras if c not in CAMERA_NAMES]
        if bad or len(set(self.cameras)) != len(self.cameras):
            raise InvalidInputError(
                f"BuiltinConfig.cameras must be distinct names from {CAMERA_NAMES}, got {self.cameras}"
            )
        if not self.conv_channels or any(c <= 0 for c in self.conv_channels):
            raise InvalidInputError(
                f"BuiltinConfig.conv_channels must be positive ints, got {self.conv_channels}"
            )
        if len(self.vocab) < 2 or self.vocab[0] != PAD_TOKEN or self.vocab[1] != UNK_TOKEN:
            raise InvalidInputError(f"BuiltinConfig.vocab must start with {PAD_TOKEN!r}, {UNK_TOKEN!r}")
        if len(set(self.vocab)) != len(self.vocab):
            raise InvalidInputError("BuiltinConfig.vocab has duplicate words")
        if self.expert_hidden % self.expert_heads:
            raise InvalidInputError(
                f"BuiltinConfig.expert_hidden ({self.expert_hidden}) must be divisible by "
                f"expert_heads ({self.expert_heads})"
            )
        if not (0 < self.min_period < self.max_period):
            raise InvalidInputError("BuiltinConfig needs 0 < min_period < max_period")

    def state_indices(self) -> list[int]:
        """Indices of the state vector the model reads, in ``state_features`` order."""
        return [i for f in self.state_features for i in range(STATE_SLICES[f].start, STATE_SLICES[f].stop)]

    def tokenizer(self) -> WordTokenizer:
        return WordTokenizer(self.vocab, self.max_text_tokens)

    def with_task_words(self, texts: list[str]) -> BuiltinConfig:
        """A copy whose vocabulary also holds every word of ``texts`` (appended in first-seen order)."""
        vocab = list(self.vocab)
        for text in texts:
            for w in WordTokenizer.words(text):
                if w not in vocab:
                    vocab.append(w)
        data = self.to_dict()
        data["vocab"] = vocab
        return BuiltinConfig.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("cameras", "vocab", "conv_channels", "state_features"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuiltinConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"unknown BuiltinConfig fields {unknown}; valid fields: {sorted(known)}")
        return cls(**data)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> BuiltinConfig:
        path = Path(directory) / CONFIG_FILE
        if not path.is_file():
            raise CheckpointError(f"no {CONFIG_FILE} in {directory}: a built-in policy folder needs one")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)
