"""A trained predictor: network + everything needed to use it, saved as safetensors + JSON.

Files in a checkpoint directory: ``model.safetensors`` (weights) and ``predictor.json`` with the
keys in ``REQUIRED_KEYS`` (model config, feature normalisation, the signal extractor's fitted
statistics copied from the dataset, horizons, failure types, score index, calibrated conformal
bands) plus the split and training history used by ``salus evaluate``.

:meth:`TrainedPredictor.load` validates a checkpoint completely or refuses it with a
``CheckpointError`` naming the file and the field (:func:`validate_meta`): unreadable or truncated
files, a missing ``files`` record, a safetensors file the record does not cover or whose SHA-256
differs from the one recorded at save time, weights that do not match the model config or are not
finite, normalisation vectors of the wrong width or with a std that is not positive and finite,
missing ``signal_names`` or other than ``salus.signals.SIGNAL_NAMES`` in that order, horizons, score
index and control rate out of range, conformal bands that are not finite (``mu``, ``h``, and
``half_width`` except the ``"inf"`` of a calibration too small for its alpha, and only then), of
mismatched lengths, or stored under another alpha. ``predictor.json`` is validated, not hashed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salus._io import load_safetensors, read_json
from salus._json import to_json
from salus.errors import CheckpointError, InvalidInputError

from .config import ModelConfig
from .conformal import FunctionalBand, band_status
from .episodes import Episode
from .objectives import get_objective

__all__ = [
    "TrainedPredictor",
    "REQUIRED_KEYS",
    "FORMAT_VERSION",
    "signal_features",
    "embedding_features",
    "is_checkpoint_dir",
    "validate_meta",
]

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "predictor.json"
EXTRACTOR_FILE = "extractor.safetensors"
FEATURES_FILE = "features.safetensors"
REQUIRED_KEYS = (
    "format_version",
    "model",
    "signal_names",
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
    invalid or non-finite, clipped to +-50) followed by the valid flags. Written with in-place
    ufuncs: the monitor calls it once per control step."""
    v = np.asarray(signals, dtype=np.float32)
    ok = np.isfinite(v)
    ok &= np.asarray(valid, dtype=bool)
    n = v.shape[-1]
    out = np.empty((*v.shape[:-1], 2 * n), dtype=np.float32)
    z = out[..., :n]
    np.subtract(v, mean, out=z)
    z /= std
    z[~ok] = 0.0
    np.maximum(z, -50.0, out=z)  # np.clip without its Python wrapper
    np.minimum(z, 50.0, out=z)
    out[..., n:] = ok
    return out


# The vectors an ``embedding``-input model can read: step key (= ``StepInternals`` field, what the
# monitor feeds live) -> ``Episode`` field. SAFE-MLP/LSTM read SAFE's own feature ``hidden_mean``
# when the data records it (``--save-hidden``), else the observation embedding; the embedding
# baselines always read the observation embedding. The checkpoint's ``normalization.source`` says
# which (absent in older checkpoints: ``obs_embedding``).
EMBEDDING_SOURCES: dict[str, str] = {"obs_embedding": "embedding", "hidden_mean": "hidden_mean"}


def embedding_source(norm: Mapping[str, Any]) -> str:
    """The step key an ``embedding`` model's ``normalization`` record reads."""
    source = str(norm.get("source", "obs_embedding"))
    if source not in EMBEDDING_SOURCES:
        raise CheckpointError(
            f"normalization.source must be one of {list(EMBEDDING_SOURCES)}, got {source!r}"
        )
    return source


def episode_vector(episode: Any, source: str) -> np.ndarray | None:
    """The ``(T, D)`` vector ``source`` (a key of :data:`EMBEDDING_SOURCES`) of one episode."""
    return getattr(episode, EMBEDDING_SOURCES[source])  # type: ignore[no-any-return]


def ramped(score: np.ndarray, step: np.ndarray | int, ramp: float) -> np.ndarray:
    """The per-step score the protocol's running max and the monitor's band read: the model's
    probability plus ``ramp`` per elapsed step (``step`` 0-based; ``score_ramp`` of the checkpoint,
    0 for published baselines). With a ramp the running max at t is the current probability unless
    an earlier one was higher by more than ``ramp`` per step since: a success's early uncertainty is
    not carried to the end. Every comparison of the protocol is at equal elapsed time, so the ramp
    itself ranks nothing (a score of elapsed time gets 0.5)."""
    s = np.asarray(score, dtype=np.float64)
    return s + ramp * np.asarray(step, dtype=np.float64) if ramp else s


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


_HASHED_FILES = (WEIGHTS_FILE, EXTRACTOR_FILE, FEATURES_FILE)  # SHA-256 recorded in predictor.json "files"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _placeholder_signal_names(n: int) -> list[str]:
    """The names ``salus.predictor.episodes`` gives the columns of a dataset that records none."""
    return [f"signal_{i}" for i in range(n)]


def _finite_vector(value: Any, what: str, where: Path) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckpointError(
            f"{where}: {what} must be a list of numbers, got {type(value).__name__}"
        ) from None
    if arr.ndim != 1 or arr.size == 0 or not np.isfinite(arr).all():
        raise CheckpointError(
            f"{where}: {what} must be a non-empty list of finite numbers (shape {arr.shape})"
        )
    return arr


def validate_meta(meta: dict[str, Any], where: Path | str = META_FILE) -> None:
    """Check a checkpoint's metadata (after its tensors are joined back) is complete and consistent;
    ``CheckpointError`` naming ``where`` and the field otherwise. See the module docstring."""
    from salus.signals.definitions import SIGNAL_NAMES

    where = Path(where)
    model = meta["model"]
    if not isinstance(model, dict) or not isinstance(model.get("config"), dict):
        raise CheckpointError(f"{where}: 'model' must be an object with a 'config' object")
    try:
        config = ModelConfig.from_dict(model["config"])
    except (ValueError, TypeError, KeyError) as exc:  # InvalidInputError, InvalidNameError, ...
        raise CheckpointError(f"{where}: bad model config: {exc}") from None
    in_dim = model.get("in_dim")
    if not isinstance(in_dim, int) or isinstance(in_dim, bool) or in_dim < 1:
        raise CheckpointError(f"{where}: model.in_dim must be a positive int, got {in_dim!r}")
    kind = config.input_kind
    if meta.get("input_kind", kind) != kind:
        raise CheckpointError(
            f"{where}: input_kind {meta['input_kind']!r} but model {config.name} reads {kind!r}"
        )
    norm = meta["normalization"]
    if not isinstance(norm, dict):
        raise CheckpointError(f"{where}: 'normalization' must be an object with 'mean' and 'std'")
    if norm.get("kind", kind) != kind:
        raise CheckpointError(
            f"{where}: normalization is for {norm['kind']!r} inputs, model {config.name} reads {kind!r}"
        )
    n = len(SIGNAL_NAMES)
    if kind == "baselines":  # the dataset's online baseline vector, which the monitor computes live
        from salus.signals import ONLINE_BASELINE_NAMES

        names = meta.get("baseline_names")
        if (
            not isinstance(names, list)
            or len(names) != in_dim
            or not all(isinstance(x, str) and x in ONLINE_BASELINE_NAMES for x in names)
        ):
            raise CheckpointError(
                f"{where}: a baselines model needs baseline_names, {in_dim} (model.in_dim) of "
                f"{list(ONLINE_BASELINE_NAMES)}; got {names!r:.120}"
            )
    if kind in ("signals", "embedding"):  # "features" models normalise inside their feature space
        mean = _finite_vector(norm["mean"], "normalization.mean", where)
        std = _finite_vector(norm["std"], "normalization.std", where)
        if mean.shape != std.shape:
            raise CheckpointError(
                f"{where}: normalization.mean has {mean.size} values but normalization.std has {std.size}"
            )
        if not (std > 0).all():
            bad = np.flatnonzero(~(std > 0)).tolist()
            raise CheckpointError(
                f"{where}: normalization.std must be > 0 everywhere (zero or negative at features {bad}); "
                "a zero std makes the score constant"
            )
        if kind == "signals":
            if mean.size != n or in_dim != 2 * n:
                raise CheckpointError(
                    f"{where}: a signals model needs normalization vectors of width {n} (one per signal) and "
                    f"model.in_dim {2 * n}; got width {mean.size} and in_dim {in_dim}"
                )
        elif mean.size != in_dim:
            raise CheckpointError(
                f"{where}: normalization vectors have width {mean.size} but the model reads {in_dim} embedding values"
            )
        else:
            try:
                embedding_source(norm)
            except CheckpointError as exc:
                raise CheckpointError(f"{where}: {exc}") from None
    if "signal_names" not in meta:
        raise CheckpointError(f"{where} lacks required field 'signal_names'")
    names = meta["signal_names"]
    if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
        raise CheckpointError(f"{where}: signal_names must be a list of strings, got {names!r:.80}")
    if names != list(SIGNAL_NAMES) and names != _placeholder_signal_names(n):
        raise CheckpointError(
            f"{where}: signal_names {names} are not the signals the extractor computes, in its order: "
            f"{list(SIGNAL_NAMES)}"
        )
    horizons = meta["horizons"]
    if not isinstance(horizons, list) or not all(
        isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in horizons
    ):
        raise CheckpointError(f"{where}: horizons must be a list of positive step counts, got {horizons!r}")
    if not horizons and get_objective(config.objective_name).horizon_score:
        raise CheckpointError(f"{where}: horizons are empty ({config.name} scores a horizon's probability)")
    types = meta["failure_types"]
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise CheckpointError(f"{where}: failure_types must be a list of strings, got {types!r}")
    idx = meta["score_index"]
    if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < max(1, len(horizons)):
        raise CheckpointError(
            f"{where}: score_index must be an int in [0, {max(1, len(horizons))}), got {idx!r}"
        )
    hz = meta["control_hz"]
    if not isinstance(hz, int | float) or isinstance(hz, bool) or not (math.isfinite(hz) and hz > 0):
        raise CheckpointError(f"{where}: control_hz must be a positive number, got {hz!r}")
    ramp = meta.get("score_ramp", 0.0)
    if not isinstance(ramp, int | float) or isinstance(ramp, bool) or not (math.isfinite(ramp) and ramp >= 0):
        raise CheckpointError(f"{where}: score_ramp must be a finite number >= 0 (per step), got {ramp!r}")
    conformal = meta["conformal"]
    alpha = conformal["alpha"]
    if not isinstance(alpha, int | float) or not 0.0 < float(alpha) < 1.0:
        raise CheckpointError(f"{where}: conformal.alpha must be in (0, 1), got {alpha!r}")
    bands = conformal["bands"]
    if not isinstance(bands, dict) or not bands:
        raise CheckpointError(f"{where}: no calibrated conformal bands")
    for key, band in bands.items():
        try:
            a = float(key)
            parsed = FunctionalBand.from_dict(band)
        except (InvalidInputError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: conformal.bands[{key!r}] is malformed: {exc}") from None
        if abs(parsed.alpha - a) > 1e-12:
            raise CheckpointError(
                f"{where}: conformal.bands[{key!r}] holds the band of alpha {parsed.alpha:g}, not {key}"
            )
    if not any(abs(float(k) - float(alpha)) < 1e-12 for k in bands):
        raise CheckpointError(f"{where}: no conformal band at the checkpoint's alpha {alpha}")
    if not isinstance(meta["extractor_statistics"], dict) or not meta["extractor_statistics"]:
        raise CheckpointError(f"{where}: extractor_statistics must be a non-empty object")
    if meta.get("robot") is not None:
        from salus.data.robot import RobotSpec

        try:
            RobotSpec.from_dict(meta["robot"])
        except InvalidInputError as exc:
            raise CheckpointError(f"{where}: the robot description is malformed: {exc}") from None


@dataclass
class TrainedPredictor:
    """A network with its metadata. ``meta`` holds every ``REQUIRED_KEYS`` entry (JSON-able)."""

    model: Any  # PredictorNet (torch import kept lazy for callers that only read metadata)
    config: ModelConfig
    meta: dict[str, Any] = field(default_factory=dict)
    feature_space: Any = None  # FeatureSpace of input kind "features" (features.safetensors)

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
    def robot(self) -> Any:
        """The :class:`~salus.data.RobotSpec` of the training data (the state layout the monitor
        reads); our Panda for a checkpoint that carries none (written before robot descriptions)."""
        from salus.data.robot import RobotSpec, panda_robot

        raw = self.meta.get("robot")
        return panda_robot() if raw is None else RobotSpec.from_dict(raw)

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

    def band_status(self) -> list[dict[str, Any]]:
        """Per calibrated alpha (increasing): whether its band can fire and how many calibration
        successes it had and needs (``salus.predictor.conformal.band_status``)."""
        conformal = self.meta["conformal"]
        frac = conformal.get("fit_fraction")
        frac = float(frac) if isinstance(frac, int | float) and 0.0 < float(frac) < 1.0 else None
        bands = sorted(conformal["bands"].items(), key=lambda kv: float(kv[0]))
        return [band_status(FunctionalBand.from_dict(b), frac) for _, b in bands]

    @property
    def extractor_statistics(self) -> dict[str, Any]:
        """The signal extractor's fitted statistics the predictor was trained with (arrays restored),
        e.g. for ``SignalExtractor.load_state_dict``."""
        return dict(self.meta["extractor_statistics"])

    def features(self, episode: Episode) -> np.ndarray:
        """Network input ``(T, D)`` of one episode."""
        if self.input_kind == "features":
            if self.feature_space is None:
                raise CheckpointError(f"{self.name} has no fitted feature space ({FEATURES_FILE})")
            return self.feature_space.transform(episode)  # type: ignore[no-any-return]
        if self.input_kind == "baselines":
            width = int(self.meta["model"]["in_dim"])
            if episode.baselines is None or episode.baselines.shape[1] != width:
                got = "none" if episode.baselines is None else f"{episode.baselines.shape[1]}"
                raise InvalidInputError(
                    f"{self.name} reads the {width} online baseline scores {self.meta['baseline_names']} "
                    f"per step (step key 'baselines'); this episode has {got}"
                )
            return np.asarray(episode.baselines, dtype=np.float32)
        norm = self.meta["normalization"]
        mean, std = np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
        if self.input_kind == "signals":
            return signal_features(episode.signals, episode.valid, mean, std)
        source = embedding_source(norm)
        vec = episode_vector(episode, source)
        if vec is None:
            raise InvalidInputError(f"{self.name} reads step key {source!r}, which this episode lacks")
        if vec.shape[1] != mean.shape[0]:
            raise InvalidInputError(
                f"{self.name} was trained on {source} of width {mean.shape[0]}, got {vec.shape[1]}"
            )
        return embedding_features(vec, mean, std)

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
        ``score_index`` (our models: one horizon, by default the longest; SAFE: its only output),
        plus the checkpoint's ``score_ramp`` per step (:func:`ramped`)."""
        return [self.score_of(p) for p in self.episode_probs(episodes)]

    def score_of(self, probs: np.ndarray) -> np.ndarray:
        """The per-step score ``(T,)`` of one episode's probabilities ``(T, P)``
        (:meth:`episode_probs`): the ``score_index`` column plus the ramp."""
        idx = int(self.meta["score_index"])
        return ramped(probs[:, idx if probs.shape[1] > 1 else 0], np.arange(len(probs)), self.score_ramp)

    @property
    def score_ramp(self) -> float:
        """Added to the score per elapsed step (:func:`ramped`); 0 for checkpoints without one."""
        return float(self.meta.get("score_ramp", 0.0))

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
        if self.feature_space is not None:
            save_numpy(self.feature_space.tensors(), str(d / FEATURES_FILE))
            meta["features"] = self.feature_space.config_dict()
        meta["model"] = {
            "name": self.config.name,
            "config": self.config.to_dict(),
            "in_dim": meta["model"]["in_dim"],
        }
        meta["files"] = {name: _sha256(d / name) for name in _HASHED_FILES if (d / name).is_file()}
        tmp = d / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(to_json(meta, non_finite="null"), indent=1, sort_keys=True))
        tmp.replace(d / META_FILE)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> TrainedPredictor:
        """Load a checkpoint, validated completely (:func:`validate_meta`, the recorded SHA-256 of
        each file, finite weights that fit the config); ``CheckpointError`` names any missing,
        damaged or inconsistent file or field."""
        from .models import build_model

        d = Path(directory)
        if not (d / META_FILE).is_file() or not (d / WEIGHTS_FILE).is_file():
            raise CheckpointError(
                f"{d} is not a predictor checkpoint: it needs {META_FILE} and {WEIGHTS_FILE}"
            )
        meta = read_json(d / META_FILE, "the checkpoint metadata (not valid JSON)", CheckpointError)
        if not isinstance(meta, dict):
            raise CheckpointError(f"{d / META_FILE} must hold a JSON object, got {type(meta).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in meta]
        if missing:
            raise CheckpointError(f"{d / META_FILE} lacks required fields {missing}")
        if meta["format_version"] != FORMAT_VERSION:
            raise CheckpointError(f"checkpoint format {meta['format_version']} is not {FORMAT_VERSION}")
        if "files" not in meta:
            raise CheckpointError(
                f"{d / META_FILE} lacks 'files' (the SHA-256 of each file, recorded at save time); "
                "without it a changed weights file would load unnoticed"
            )
        files = meta["files"]
        if not isinstance(files, dict) or not all(
            isinstance(v, str) and len(v) == 64 for v in files.values()
        ):
            raise CheckpointError(f"{d / META_FILE}: 'files' must map file names to SHA-256 digests")
        for name in _HASHED_FILES:  # every file the checkpoint has must be covered by the record
            if (d / name).is_file() and name not in files:
                raise CheckpointError(
                    f"{d / META_FILE}: 'files' records no SHA-256 for {name}, which the checkpoint holds"
                )
        for name, digest in files.items():
            if name not in _HASHED_FILES:
                continue
            if not (d / name).is_file():
                raise CheckpointError(f"{d} lacks {name}, which {META_FILE} records")
            if _sha256(d / name) != digest:
                raise CheckpointError(
                    f"{d / name} is damaged: its SHA-256 differs from the one recorded in {META_FILE} at save time"
                )
        for key, sub in (
            ("model", ("config", "in_dim")),
            ("normalization", ("mean", "std")),
            ("conformal", ("alpha", "bands")),
        ):
            if not isinstance(meta[key], dict):
                raise CheckpointError(f"{d / META_FILE}: '{key}' must be an object")
            lacking = [s for s in sub if s not in meta[key]]
            if lacking:
                raise CheckpointError(f"{d / META_FILE}: '{key}' lacks {lacking}")
        if not isinstance(meta["extractor_statistics"], dict) or not meta["extractor_statistics"]:
            raise CheckpointError(f"{d / META_FILE}: extractor_statistics must be a non-empty object")
        ext: dict[str, np.ndarray] = {}
        if "__tensor__" in json.dumps(meta["extractor_statistics"]):
            if not (d / EXTRACTOR_FILE).is_file():
                raise CheckpointError(
                    f"{d} lacks {EXTRACTOR_FILE} (the signal extractor's fitted statistics)"
                )
            ext = load_safetensors(d / EXTRACTOR_FILE, "the signal extractor's statistics", CheckpointError)
        meta["extractor_statistics"] = join_tensors(meta["extractor_statistics"], ext)
        validate_meta(meta, d / META_FILE)
        config = ModelConfig.from_dict(meta["model"]["config"])
        weights = load_safetensors(
            d / WEIGHTS_FILE, "the predictor weights", CheckpointError, framework="torch"
        )
        for name, tensor in weights.items():
            if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
                raise CheckpointError(f"{d / WEIGHTS_FILE}: tensor {name!r} holds NaN or inf weights")
        model = build_model(
            config,
            int(meta["model"]["in_dim"]),
            max(1, len(meta["horizons"])),
            len(meta["failure_types"]),
        )
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise CheckpointError(f"{d / WEIGHTS_FILE} does not match the model config: {exc}") from exc
        model.eval()
        feature_space = None
        if config.input_kind == "features":
            feature_space = _load_feature_space(d, meta)
        return cls(model=model, config=config, meta=meta, feature_space=feature_space)


def _load_feature_space(d: Path, meta: dict[str, Any]) -> Any:
    """The fitted ``FeatureSpace`` of a ``features`` checkpoint (``CheckpointError`` if absent)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file as load_numpy

    from .features import FeatureSpace

    if "features" not in meta or not (d / FEATURES_FILE).is_file():
        raise CheckpointError(f"{d} lacks the feature space ({FEATURES_FILE} and predictor.json 'features')")
    try:
        tensors = load_numpy(str(d / FEATURES_FILE))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{d / FEATURES_FILE} is damaged: {exc}") from exc
    fs = FeatureSpace.restore(meta["features"], tensors)
    if fs.dim != int(meta["model"]["in_dim"]):
        raise CheckpointError(
            f"{d}: the feature space gives {fs.dim} features but the network expects {meta['model']['in_dim']}"
        )
    return fs
