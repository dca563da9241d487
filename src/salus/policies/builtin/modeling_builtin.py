"""The built-in flow-matching VLA policy: model, normalisation statistics, pre/post-processing.

Shapes: B batch, C chunk_size, A action_dim, H expert_hidden, E embed_dim, L max_text_tokens.

Flow matching follows SmolVLA: for a normalised action chunk ``a`` and noise ``n`` the model sees
``x_t = t * n + (1 - t) * a`` and regresses the velocity ``u = n - a``; sampling starts from
``x_1 = noise`` and takes ``num_steps`` Euler steps ``x <- x - v / num_steps`` from t = 1 to 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from salus.errors import CheckpointError, InvalidInputError
from salus.policies.builtin.configuration_builtin import CONFIG_FILE, BuiltinConfig

__all__ = [
    "BuiltinFlowPolicy",
    "NormalizationStats",
    "BuiltinProcessor",
    "WEIGHTS_FILE",
    "STATS_FILE",
    "save_pretrained",
    "load_pretrained",
]

WEIGHTS_FILE = "model.safetensors"
STATS_FILE = "stats.safetensors"
_MIN_STD = 1e-2


class SpatialSoftmax(nn.Module):
    """Soft arg-max keypoints: (B, K, h, w) feature maps -> (B, 2K) expected (x, y) in [-1, 1]."""

    grid: torch.Tensor

    def __init__(self, height: int, width: int):
        super().__init__()
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, k, h, w = features.shape
        attention = torch.softmax(features.reshape(b, k, h * w), dim=-1)
        return (attention @ self.grid).reshape(b, 2 * k)


class ImageEncoder(nn.Module):
    """Small CNN with spatial-softmax keypoints: (B, 3, S, S) in [0, 1] -> (B, image_feature_dim)."""

    def __init__(self, config: BuiltinConfig):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        size = config.image_size
        for i, ch in enumerate(config.conv_channels):
            stride = 2 if i < 3 else 1
            layers += [
                nn.Conv2d(in_ch, ch, 3, stride=stride, padding=1),
                nn.GroupNorm(4 if ch % 4 == 0 else 1, ch),
            ]
            layers.append(nn.SiLU())
            size = (size + 2 - 3) // stride + 1
            in_ch = ch
        layers.append(nn.Conv2d(in_ch, config.num_keypoints, 1))
        self.conv = nn.Sequential(*layers)
        self.keypoints = SpatialSoftmax(size, size)
        self.proj = nn.Sequential(nn.Linear(2 * config.num_keypoints, config.image_feature_dim), nn.SiLU())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.keypoints(self.conv(images * 2.0 - 1.0)))


def sinusoidal_time_embedding(
    t: torch.Tensor, dim: int, min_period: float, max_period: float
) -> torch.Tensor:
    """SmolVLA-style sine-cosine embedding of the flow time: (N,) -> (N, dim)."""
    half = dim // 2
    fraction = torch.linspace(0.0, 1.0, half, dtype=torch.float32, device=t.device)
    period = min_period * (max_period / min_period) ** fraction
    angle = (2 * math.pi / period)[None, :] * t[:, None].float()
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)


class BuiltinFlowPolicy(nn.Module):
    """A small SmolVLA-shaped flow-matching policy.

    Modules (their names are used by the capture hooks): ``image_encoders.<camera>``,
    ``state_encoder``, ``text_embedding``, ``trunk`` (output: the observation embedding, (B, E)),
    ``action_in_proj``, ``time_mlp``, ``fuse``, ``expert``, ``expert_norm`` and
    ``action_out_proj`` (called once per denoising step on (B, C, H); output: velocity (B, C, A)).

    It follows the :class:`salus.policies.generic.TorchPolicyAdapter` protocol: ``sample_actions``
    accepts a noise batch that is a multiple K of the observation batch and then shares the
    observation embedding across the K samples of each environment (like SmolVLA's prefix cache).
    """

    supports_multi_sample = True
    state_index: torch.Tensor

    def __init__(self, config: BuiltinConfig):
        super().__init__()
        self.config = config
        c = config
        self.image_encoders = nn.ModuleDict({cam: ImageEncoder(c) for cam in c.cameras})
        self.register_buffer(
            "state_index", torch.tensor(c.state_indices(), dtype=torch.long), persistent=False
        )
        self.state_encoder = nn.Sequential(
            nn.Linear(len(c.state_indices()), c.state_feature_dim),
            nn.SiLU(),
            nn.Linear(c.state_feature_dim, c.state_feature_dim),
        )
        self.text_embedding = nn.Embedding(len(c.vocab), c.text_dim, padding_idx=0)
        trunk_in = len(c.cameras) * c.image_feature_dim + c.state_feature_dim + c.text_dim
        self.trunk = nn.Sequential(
            nn.Linear(trunk_in, c.embed_dim),
            nn.SiLU(),
            nn.Linear(c.embed_dim, c.embed_dim),
            nn.LayerNorm(c.embed_dim),
        )
        h = c.expert_hidden
        self.action_in_proj = nn.Linear(c.action_dim, h)
        self.time_mlp = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h))
        self.obs_proj = nn.Linear(c.embed_dim, h)
        self.position_embedding = nn.Parameter(torch.randn(c.chunk_size, h) * 0.02)
        self.fuse = nn.Sequential(nn.Linear(3 * h, h), nn.SiLU(), nn.Linear(h, h))
        layer = nn.TransformerEncoderLayer(
            d_model=h,
            nhead=c.expert_heads,
            dim_feedforward=2 * h,
            dropout=0.0,
            batch_first=True,
            norm_first=True,
        )
        self.expert = nn.TransformerEncoder(layer, num_layers=c.expert_layers, enable_nested_tensor=False)
        self.expert_norm = nn.LayerNorm(h)
        self.action_out_proj = nn.Linear(h, c.action_dim)

    # -- observation ---------------------------------------------------------------------------
    def embed_observation(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Trunk output for a preprocessed batch: ``image_<cam>`` (B, 3, S, S) in [0, 1],
        ``state`` (B, state_dim) normalised (the model reads ``config.state_features`` of it),
        ``tokens`` (B, L) int64 -> (B, E)."""
        feats = [self.image_encoders[cam](batch[f"image_{cam}"]) for cam in self.config.cameras]
        feats.append(self.state_encoder(batch["state"][:, self.state_index]))
        tokens = batch["tokens"]
        mask = (tokens != 0).unsqueeze(-1).float()
        text = (self.text_embedding(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        feats.append(text)
        return self.trunk(torch.cat(feats, dim=-1))

    # -- action expert -------------------------------------------------------------------------
    def denoise_step(self, x_t: torch.Tensor, t: torch.Tensor, obs_embedding: torch.Tensor) -> torch.Tensor:
        """Velocity for noisy chunks ``x_t`` (N, C, A) at flow times ``t`` (N,), given (N, E) -> (N, C, A)."""
        c = self.config
        n, chunk, _ = x_t.shape
        time = self.time_mlp(sinusoidal_time_embedding(t, c.expert_hidden, c.min_period, c.max_period))
        tokens = torch.cat(
            [
                self.action_in_proj(x_t),
                time[:, None, :].expand(n, chunk, -1),
                self.obs_proj(obs_embedding)[:, None, :].expand(n, chunk, -1),
            ],
            dim=-1,
        )
        hidden = self.fuse(tokens) + self.position_embedding[None, :chunk]
        hidden = self.expert_norm(self.expert(hidden))
        return self.action_out_proj(hidden)

    @torch.no_grad()
    def sample_actions(self, batch: Mapping[str, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
        """Denoise ``noise`` (B*K, C, A) into normalised action chunks (B*K, C, A).

        Rows ``b*K .. b*K+K-1`` of ``noise`` belong to observation ``b``; the observation is
        embedded once and shared by its K samples.
        """
        embedding = self.embed_observation(batch)
        b = embedding.shape[0]
        if noise.shape[0] % b:
            raise InvalidInputError(
                f"noise batch {noise.shape[0]} is not a multiple of the observation batch {b}"
            )
        k = noise.shape[0] // b
        if k > 1:
            embedding = embedding.repeat_interleave(k, dim=0)
        steps = self.config.num_steps
        dt = -1.0 / steps
        x_t = noise
        for i in range(steps):
            t = torch.full((x_t.shape[0],), 1.0 + i * dt, dtype=x_t.dtype, device=x_t.device)
            x_t = x_t + dt * self.denoise_step(x_t, t, embedding)
        return x_t

    def compute_loss(
        self,
        batch: Mapping[str, torch.Tensor],
        actions: torch.Tensor,
        action_is_pad: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        time: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Flow-matching loss for normalised action chunks (B, C, A); padded positions are masked."""
        b = actions.shape[0]
        if noise is None:
            noise = torch.randn_like(actions)
        if time is None:  # SmolVLA: Beta(1.5, 1) scaled into (0.001, 1)
            time = torch.distributions.Beta(1.5, 1.0).sample((b,)).to(actions) * 0.999 + 0.001
        t = time[:, None, None]
        x_t = t * noise + (1 - t) * actions
        target = noise - actions
        velocity = self.denoise_step(x_t, time, self.embed_observation(batch))
        err = F.mse_loss(velocity, target, reduction="none").mean(-1)  # (B, C)
        if action_is_pad is None:
            return err.mean()
        keep = (~action_is_pad).float()
        return (err * keep).sum() / keep.sum().clamp(min=1.0)


@dataclass
class NormalizationStats:
    """Mean/std normalisation of the state and the action (arrays of shape (state_dim,), (action_dim,))."""

    state_mean: np.ndarray
    state_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray

    def __post_init__(self) -> None:
        for name in ("state_mean", "state_std", "action_mean", "action_std"):
            value = np.asarray(getattr(self, name), dtype=np.float32)
            if value.ndim != 1 or not np.all(np.isfinite(value)):
                raise CheckpointError(
                    f"normalisation statistic {name} must be a finite 1-D array, got {value.shape}"
                )
            setattr(self, name, value)
        self.state_std = np.maximum(self.state_std, _MIN_STD)
        self.action_std = np.maximum(self.action_std, _MIN_STD)

    @classmethod
    def fit(cls, states: np.ndarray, actions: np.ndarray) -> NormalizationStats:
        """From (N, state_dim) states and (N, action_dim) actions."""
        return cls(states.mean(0), states.std(0), actions.mean(0), actions.std(0))

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(getattr(self, k))) for k in self._keys()}

    @staticmethod
    def _keys() -> tuple[str, ...]:
        return ("state_mean", "state_std", "action_mean", "action_std")

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(directory) / STATS_FILE
        save_file(self.to_tensors(), str(path))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> NormalizationStats:
        from safetensors.torch import load_file

        path = Path(directory) / STATS_FILE
        if not path.is_file():
            raise CheckpointError(
                f"no normalisation statistics ({STATS_FILE}) in {directory}: a policy cannot be loaded "
                "without the statistics it was trained with"
            )
        data = load_file(str(path))
        missing = [k for k in cls._keys() if k not in data]
        if missing:
            raise CheckpointError(f"{path} lacks {missing}; it needs {list(cls._keys())}")
        return cls(**{k: data[k].numpy() for k in cls._keys()})


class BuiltinProcessor:
    """Turns batched environment observations into model tensors and model chunks into env actions."""

    def __init__(self, config: BuiltinConfig, stats: NormalizationStats):
        if stats.state_mean.shape != (config.state_dim,) or stats.action_mean.shape != (config.action_dim,):
            raise CheckpointError(
                f"normalisation statistics have state {stats.state_mean.shape} / action {stats.action_mean.shape}; "
                f"the config needs ({config.state_dim},) / ({config.action_dim},)"
            )
        self.config = config
        self.stats = stats
        self.tokenizer = config.tokenizer()
        self._state_mean = torch.from_numpy(stats.state_mean)
        self._state_std = torch.from_numpy(stats.state_std)
        self._action_mean = torch.from_numpy(stats.action_mean)
        self._action_std = torch.from_numpy(stats.action_std)
        self._token_cache: dict[str, list[int]] = {}

    @property
    def required_keys(self) -> tuple[str, ...]:
        return (*(f"image_{c}" for c in self.config.cameras), "state", "task")

    def validate(self, observation: Mapping[str, Any]) -> int:
        """Check a batched observation; returns B. Raises InvalidInputError saying what is wrong."""
        missing = [k for k in self.required_keys if k not in observation]
        if missing:
            raise InvalidInputError(
                f"observation is missing {missing}; the built-in policy needs {list(self.required_keys)}"
            )
        state = np.asarray(observation["state"])
        if state.ndim != 2 or state.shape[1] != self.config.state_dim:
            raise InvalidInputError(
                f"observation 'state' must have shape ({self.config.state_dim},) or (B, {self.config.state_dim}), "
                f"got {state.shape[1:] if state.ndim >= 2 else state.shape}"
            )
        b = state.shape[0]
        if not np.issubdtype(state.dtype, np.number) or not np.all(np.isfinite(state)):
            raise InvalidInputError("observation 'state' must be finite numbers (found NaN or inf)")
        s = self.config.image_size
        for cam in self.config.cameras:
            image = np.asarray(observation[f"image_{cam}"])
            if image.shape != (b, s, s, 3):
                raise InvalidInputError(
                    f"observation 'image_{cam}' must have shape ({s}, {s}, 3) or (B, {s}, {s}, 3) with B={b}, "
                    f"got {image.shape}"
                )
            if image.dtype != np.uint8:
                raise InvalidInputError(f"observation 'image_{cam}' must be uint8, got {image.dtype}")
        task = observation["task"]
        if not isinstance(task, Sequence) or isinstance(task, str) or len(task) != b:
            raise InvalidInputError(f"observation 'task' must be a str, or a list of B={b} str for a batch")
        if not all(isinstance(t, str) for t in task):
            raise InvalidInputError("observation 'task' entries must be str")
        return b

    def tokens(self, texts: Sequence[str]) -> torch.Tensor:
        rows = []
        for text in texts:
            ids = self._token_cache.get(text)
            if ids is None:
                ids = self._token_cache[text] = self.tokenizer.encode(text)
            rows.append(ids)
        return torch.tensor(rows, dtype=torch.long)

    def preprocess(
        self, observation: Mapping[str, Any], rows: np.ndarray | None = None
    ) -> dict[str, torch.Tensor]:
        """Model batch for a validated batched observation (optionally only the given rows)."""
        sel = slice(None) if rows is None else rows
        batch: dict[str, torch.Tensor] = {}
        for cam in self.config.cameras:
            image = torch.from_numpy(np.ascontiguousarray(np.asarray(observation[f"image_{cam}"])[sel]))
            batch[f"image_{cam}"] = image.permute(0, 3, 1, 2).float().div_(255.0)
        state = torch.from_numpy(np.asarray(observation["state"], dtype=np.float32)[sel])
        batch["state"] = (state - self._state_mean) / self._state_std
        tasks = list(observation["task"])
        batch["tokens"] = self.tokens(tasks if rows is None else [tasks[i] for i in np.asarray(rows)])
        return batch

    def normalize_actions(self, actions: np.ndarray | torch.Tensor) -> torch.Tensor:
        a = torch.as_tensor(actions, dtype=torch.float32)
        return (a - self._action_mean) / self._action_std

    def postprocess(self, chunk: torch.Tensor) -> np.ndarray:
        """Normalised chunks (..., C, A) -> env action units, clipped to [-1, 1], float32."""
        actions = chunk.float() * self._action_std + self._action_mean
        return actions.clamp_(-1.0, 1.0).numpy().astype(np.float32, copy=False)


def save_pretrained(
    directory: str | Path,
    model: BuiltinFlowPolicy,
    stats: NormalizationStats,
    *,
    config: BuiltinConfig | None = None,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``stats.safetensors`` into ``directory``."""
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (config or model.config).save(out)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(out / WEIGHTS_FILE))
    stats.save(out)
    return out


def load_pretrained(directory: str | Path) -> tuple[BuiltinFlowPolicy, NormalizationStats]:
    """Load a folder written by :func:`save_pretrained`; every file must be present."""
    from safetensors.torch import load_file

    folder = Path(directory)
    if not folder.is_dir():
        raise CheckpointError(f"built-in policy folder {folder} does not exist")
    config = BuiltinConfig.load(folder)
    stats = NormalizationStats.load(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(
            f"no {WEIGHTS_FILE} in {folder} (needs {CONFIG_FILE}, {WEIGHTS_FILE}, {STATS_FILE})"
        )
    model = BuiltinFlowPolicy(config)
    state = load_file(str(weights))
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensor shapes that disagree with config.json
        raise CheckpointError(f"{weights} does not match {folder / CONFIG_FILE}: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{weights} does not match the config: missing {result.missing_keys}, unexpected {result.unexpected_keys}"
        )
    model.eval()
    return model, stats
