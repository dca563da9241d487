"""A trained predictor: network + everything needed to use it, saved as safetensors + JSON.

Files in a checkpoint directory: ``model.safetensors`` (weights) and ``predictor.json`` with the
keys in ``REQUIRED_KEYS`` (model config, feature normalisation, the signal extractor's fitted
statistics copied from the dataset, horizons, failure types, score index, calibrated conformal
bands) plus the split and training history used by ``salus evaluate``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salus.errors import CheckpointError, InvalidInputError

from .config import ModelConfig
from .conformal import FunctionalBand
from .episodes import Episode

__all__ = [
    "TrainedPredictor",
    "REQUIRED_KEYS",
    "FORMAT_VERSION",
    "signal_features",
    "embedding_features",
    "is_checkpoint_dir",
]

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "predictor.json"
EXTRACTOR_FILE = "extractor.safetensors"
REQUIRED_KEYS = (
    "format_version",
    "model",
    "normalization",
    "extractor_statistics",
    "horizons",
    "failure_types",
    "score_index",
    "control_hz",
    "conformal",
)


def signal_features(signals: np.ndarray, valid: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(..., 12)`` signals and valid flags -> ``(..., 24)`` float32: normalised values (0 where
    invalid or non-finite) followed by the valid flags."""
    signals = np.asarray(signals, dtype=np.float32)
    ok = np.asarray(valid, dtype=bool) & np.isfinite(signals)
    z = np.where(ok, (np.nan_to_num(signals) - mean) / std, 0.0).astype(np.float32)
    return np.concatenate([np.clip(z, -50.0, 50.0), ok.astype(np.float32)], axis=-1)


def embedding_features(embedding: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(..., E)`` observation embedding -> normalised float32 (non-finite -> 0)."""
    e = np.asarray(embedding, dtype=np.float32)
    return np.nan_to_num((e - mean) / std, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def split_tensors(tree: Any, prefix: str = "") -> tuple[Any, dict[str, np.ndarray]]:
    """Replace every ndarray in a nested dict/list by ``{"__tensor__": name}``; returns (tree, tensors)."""
    tensors: dict[str, np.ndarray] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, np.ndarray) or hasattr(value, "detach"):
            arr = np.ascontiguousarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
            tensors[path] = arr
            return {"__tensor__": path}
        if isinstance(value, dict):
            return {str(k): walk(v, f"{path}/{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(value)]
        return value

    return walk(tree, prefix), tensors


def join_tensors(tree: Any, tensors: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`split_tensors`; ``CheckpointError`` if a referenced tensor is missing."""
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            name = tree["__tensor__"]
            if name not in tensors:
                raise CheckpointError(
                    f"extractor statistics reference tensor {name!r}, absent from {EXTRACTOR_FILE}"
                )
            return tensors[name]
        return {k: join_tensors(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [join_tensors(v, tensors) for v in tree]
    return tree


def is_checkpoint_dir(path: str | Path) -> bool:
    return (Path(path) / META_FILE).is_file()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class TrainedPredictor:
    """A network with its metadata. ``meta`` holds every ``REQUIRED_KEYS`` entry (JSON-able)."""

    model: Any  # PredictorNet (torch import kept lazy for callers that only read metadata)
    config: ModelConfig
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def input_kind(self) -> str:
        return self.config.input_kind

    @property
    def horizons(self) -> tuple[int, ...]:
        return tuple(int(h) for h in self.meta["horizons"])

    @property
    def control_hz(self) -> float:
        return float(self.meta["control_hz"])

    @property
    def alpha(self) -> float:
        return float(self.meta["conformal"]["alpha"])

    def band(self, alpha: float | None = None) -> FunctionalBand:
        """The calibrated band at ``alpha`` (default: the checkpoint's alpha)."""
        a = self.alpha if alpha is None else float(alpha)
        bands = self.meta["conformal"]["bands"]
        for key, value in bands.items():
            if abs(float(key) - a) < 1e-12:
                return FunctionalBand.from_dict(value)
        raise InvalidInputError(
            f"no band calibrated at alpha {a}; calibrated alphas: {sorted(bands, key=float)}"
        )

    @property
    def extractor_statistics(self) -> dict[str, Any]:
        """The signal extractor's fitted statistics the predictor was trained with (arrays restored),
        e.g. for ``SignalExtractor.load_state_dict``."""
        return dict(self.meta["extractor_statistics"])

    def features(self, episode: Episode) -> np.ndarray:
        """Network input ``(T, D)`` of one episode."""
        norm = self.meta["normalization"]
        mean, std = np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
        if self.input_kind == "signals":
            return signal_features(episode.signals, episode.valid, mean, std)
        if episode.embedding is None:
            raise InvalidInputError(f"{self.name} needs the observation embedding, which this episode lacks")
        if episode.embedding.shape[1] != mean.shape[0]:
            raise InvalidInputError(
                f"{self.name} was trained on embeddings of width {mean.shape[0]}, got {episode.embedding.shape[1]}"
            )
        return embedding_features(episode.embedding, mean, std)

    def episode_probs(self, episodes: Sequence[Episode], batch: int = 64) -> list[np.ndarray]:
        """Failure probabilities ``(T_i, P)`` of each episode (sequence path, eval mode)."""
        import torch

        self.model.eval()
        out: list[np.ndarray] = []
        with torch.no_grad():
            for start in range(0, len(episodes), batch):
                chunk = episodes[start : start + batch]
                feats = [self.features(ep) for ep in chunk]
                L = max(len(f) for f in feats)
                x = np.zeros((len(feats), L, feats[0].shape[1]), dtype=np.float32)
                for i, f in enumerate(feats):
                    x[i, : len(f)] = f
                p = self.model.probs(torch.from_numpy(x)).numpy()
                out.extend(p[i, : len(f)].astype(np.float64) for i, f in enumerate(feats))
        return out

    def episode_scores(self, episodes: Sequence[Episode]) -> list[np.ndarray]:
        """The per-step failure score ``(T_i,)`` used by the protocol: the probability at
        ``score_index`` (our models: one horizon, by default the longest; SAFE: its only output)."""
        idx = int(self.meta["score_index"])
        return [p[:, idx if p.shape[1] > 1 else 0] for p in self.episode_probs(episodes)]

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` and ``predictor.json`` into ``directory``."""
        from safetensors.torch import save_file

        missing = [k for k in REQUIRED_KEYS if k not in self.meta]
        if missing:
            raise CheckpointError(f"cannot save: metadata lacks {missing}")
        from safetensors.numpy import save_file as save_numpy

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().clone() for k, v in self.model.state_dict().items()}
        save_file(tensors, str(d / WEIGHTS_FILE))
        meta = dict(self.meta)
        meta["extractor_statistics"], ext = split_tensors(meta["extractor_statistics"])
        if ext:
            save_numpy(ext, str(d / EXTRACTOR_FILE))
        elif (d / EXTRACTOR_FILE).exists():
            (d / EXTRACTOR_FILE).unlink()
        meta["model"] = {
            "name": self.config.name,
            "config": self.config.to_dict(),
            "in_dim": meta["model"]["in_dim"],
        }
        tmp = d / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(_jsonable(meta), indent=1, sort_keys=True))
        tmp.replace(d / META_FILE)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> TrainedPredictor:
        """Load a checkpoint; ``CheckpointError`` names any missing file or field."""
        from safetensors.torch import load_file

        from .models import build_model

        d = Path(directory)
        if not (d / META_FILE).is_file() or not (d / WEIGHTS_FILE).is_file():
            raise CheckpointError(
                f"{d} is not a predictor checkpoint: it needs {META_FILE} and {WEIGHTS_FILE}"
            )
        try:
            meta = json.loads((d / META_FILE).read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{d / META_FILE} is not valid JSON: {exc}") from exc
        missing = [k for k in REQUIRED_KEYS if k not in meta]
        if missing:
            raise CheckpointError(f"{d / META_FILE} lacks required fields {missing}")
        if meta["format_version"] != FORMAT_VERSION:
            raise CheckpointError(f"checkpoint format {meta['format_version']} is not {FORMAT_VERSION}")
        for key, sub in (
            ("model", ("config", "in_dim")),
            ("normalization", ("mean", "std")),
            ("conformal", ("alpha", "bands")),
        ):
            lacking = [s for s in sub if s not in meta[key]]
            if lacking:
                raise CheckpointError(f"{d / META_FILE}: '{key}' lacks {lacking}")
        if not isinstance(meta["extractor_statistics"], dict) or not meta["extractor_statistics"]:
            raise CheckpointError(f"{d / META_FILE}: extractor_statistics must be a non-empty object")
        ext: dict[str, np.ndarray] = {}
        if "__tensor__" in json.dumps(meta["extractor_statistics"]):
            from safetensors.numpy import load_file as load_numpy

            if not (d / EXTRACTOR_FILE).is_file():
                raise CheckpointError(
                    f"{d} lacks {EXTRACTOR_FILE} (the signal extractor's fitted statistics)"
                )
            ext = load_numpy(str(d / EXTRACTOR_FILE))
        meta["extractor_statistics"] = join_tensors(meta["extractor_statistics"], ext)
        if not meta["horizons"] and meta["model"]["name"] in ("salus-mlp", "salus-tcn"):
            raise CheckpointError(f"{d / META_FILE}: horizons are empty")
        if not meta["conformal"]["bands"]:
            raise CheckpointError(f"{d / META_FILE}: no calibrated conformal bands")
        try:
            config = ModelConfig.from_dict(meta["model"]["config"])
        except (InvalidInputError, TypeError) as exc:
            raise CheckpointError(f"{d / META_FILE}: bad model config: {exc}") from exc
        model = build_model(
            config,
            int(meta["model"]["in_dim"]),
            max(1, len(meta["horizons"])),
            len(meta["failure_types"]),
        )
        try:
            model.load_state_dict(load_file(str(d / WEIGHTS_FILE)))
        except RuntimeError as exc:
            raise CheckpointError(f"{d / WEIGHTS_FILE} does not match the model config: {exc}") from exc
        model.eval()
        return cls(model=model, config=config, meta=meta)
