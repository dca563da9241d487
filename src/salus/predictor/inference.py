"""Streaming inference for the runtime monitor: one call per control step for B environments.

    predictor = FailurePredictor.load("runs/model/salus-tcn")
    predictor.reset(batch_size=4)
    probs = predictor.predict(signals, valid)      # (4, n_horizons) failure probabilities
    alarm = predictor.alarm()                      # (4,) bool: running score above the band
    predictor.reset(env_index=2)                   # a new episode in environment 2

The temporal model keeps its window per environment; ``reset(env_index)`` clears one. The alarm
follows the evaluation protocol: the running max of the per-step score against the checkpoint's
functional conformal band at step t of each environment's episode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from salus.errors import InvalidInputError

from .checkpoint import TrainedPredictor, embedding_features, embedding_source, ramped, signal_features
from .conformal import FunctionalBand
from .episodes import N_SIGNALS

__all__ = ["FailurePredictor"]


class FailurePredictor:
    """A loaded checkpoint with per-environment streaming state."""

    def __init__(self, trained: TrainedPredictor, alpha: float | None = None):
        import torch

        self.trained = trained
        self.model = trained.model.eval()
        norm = trained.meta["normalization"]
        self._mean = np.asarray(norm["mean"], np.float32)
        self._std = np.asarray(norm["std"], np.float32)
        self._band = trained.band(alpha)
        self._upper = self._band.upper(4096)
        self._torch = torch
        self.batch_size = 0
        self.reset(batch_size=1)

    @classmethod
    def load(cls, directory: str | Path, alpha: float | None = None) -> FailurePredictor:
        """Load a checkpoint directory (``CheckpointError`` if anything is missing)."""
        return cls(TrainedPredictor.load(directory), alpha)

    # ------------------------------------------------------------------ metadata
    @property
    def name(self) -> str:
        return self.trained.name

    @property
    def input_kind(self) -> str:
        """``"signals"`` (the 12 signals), ``"embedding"`` (SAFE models, embedding baselines), ``"features"``
        or ``"baselines"`` (online baseline models; ``salus.predictor.registry``)."""
        return self.trained.input_kind

    @property
    def horizons(self) -> tuple[int, ...]:
        """Horizons in control steps of the ``predict`` columns (SAFE models: one column)."""
        return self.trained.horizons if self.input_kind != "embedding" else ()

    @property
    def horizons_s(self) -> tuple[float, ...]:
        return tuple(h / self.trained.control_hz for h in self.horizons)

    @property
    def alpha(self) -> float:
        return self._band.alpha

    @property
    def band(self) -> FunctionalBand:
        """The calibrated functional conformal band (``upper(T)`` gives the threshold per step)."""
        return self._band

    @property
    def extractor_statistics(self) -> dict:
        return self.trained.extractor_statistics

    # ------------------------------------------------------------------ streaming
    def reset(self, env_index: int | None = None, *, batch_size: int | None = None) -> None:
        """Start new episodes: all environments (optionally with a new ``batch_size``) or one."""
        if env_index is None:
            b = batch_size or self.batch_size or 1
            if b < 1:
                raise InvalidInputError(f"batch_size must be >= 1, got {b}")
            self.batch_size = b
            self._state = self.model.init_state(b)
            self._t = np.zeros(b, dtype=np.int64)
            self._running = np.full(b, -np.inf)
            return
        if not 0 <= env_index < self.batch_size:
            raise InvalidInputError(f"env_index {env_index} out of range for batch size {self.batch_size}")
        self._state = self.model.reset_state(self._state, env_index)
        self._t[env_index] = 0
        self._running[env_index] = -np.inf

    def predict(
        self,
        signals: np.ndarray | None,
        valid: np.ndarray | None = None,
        embedding: np.ndarray | None = None,
        **inputs: np.ndarray,
    ) -> np.ndarray:
        """One control step: ``signals (B, 12)``, ``valid (B, 12)`` (or ``embedding (B, E)`` for SAFE
        models and the embedding baselines: the step key the checkpoint reads, ``obs_embedding`` or
        SAFE's ``hidden_mean``, see ``checkpoint.embedding_source``; ``features`` models also take ``baselines (B, nb)``, ``state (B, 22)``, ``hidden
        (B, H)``; the online baseline models ``baselines (B, nb)`` alone) -> failure probabilities
        ``(B, P)`` (P = number of horizons; 1 for SAFE models and the training-free baselines, whose
        column is the baseline's score; 1 + horizons for ``salus-risk``, column 0 = the episode fails)."""
        torch = self._torch
        if self.input_kind == "features":
            fs = self.trained.feature_space
            x = fs.step({"signals": signals, "valid": valid, "embedding": embedding, **inputs})
            if x.shape[0] != self.batch_size:
                raise InvalidInputError(f"inputs must have batch {self.batch_size}, got {x.shape[0]}")
        elif self.input_kind == "signals":
            s = np.asarray(signals, dtype=np.float32)
            v = np.ones_like(s, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
            if s.ndim != 2 or s.shape != (self.batch_size, N_SIGNALS) or v.shape != s.shape:
                raise InvalidInputError(
                    f"signals and valid must be ({self.batch_size}, {N_SIGNALS}), got {s.shape} and {v.shape}"
                )
            x = signal_features(s, v, self._mean, self._std)
        elif self.input_kind == "baselines":  # a training-free online baseline (STAC, ...)
            base = inputs.get("baselines")
            width = int(self.trained.meta["model"]["in_dim"])
            if base is None or np.shape(base) != (self.batch_size, width):
                raise InvalidInputError(
                    f"{self.name} predicts from the online baseline scores {self.trained.meta['baseline_names']}: "
                    f"pass baselines=({self.batch_size}, {width}) (NaN where invalid), got "
                    f"{None if base is None else np.shape(base)}"
                )
            x = np.asarray(base, dtype=np.float32)
        else:
            if embedding is None:
                source = embedding_source(self.trained.meta["normalization"])
                raise InvalidInputError(f"{self.name} predicts from {source}; pass embedding=(B, E) of it")
            e = np.asarray(embedding, dtype=np.float32)
            if e.shape != (self.batch_size, self._mean.shape[0]):
                raise InvalidInputError(
                    f"embedding must be ({self.batch_size}, {self._mean.shape[0]}), got {e.shape}"
                )
            x = embedding_features(e, self._mean, self._std)
        with torch.no_grad():
            probs, self._state = self.model.step(torch.from_numpy(x), self._state)
        p = probs.numpy().astype(np.float64)
        idx = int(self.trained.meta["score_index"]) if p.shape[1] > 1 else 0
        self._running = np.maximum(self._running, ramped(p[:, idx], self._t, self.trained.score_ramp))
        self._t += 1
        return p

    def type_probs(self) -> dict[str, np.ndarray]:
        """Per failure type, ``(B, n_horizons)`` probabilities of that failure within each horizon
        at the last ``predict`` (our models' per-type heads; empty for SAFE models)."""
        full = getattr(self.model, "last_full", None)
        if self.input_kind == "embedding" or full is None:
            return {}
        arr = full.numpy()
        return {t: arr[:, :, 1 + k].astype(np.float64) for k, t in enumerate(self.failure_types)}

    @property
    def failure_types(self) -> tuple[str, ...]:
        return tuple(self.trained.meta["failure_types"])

    def score(self) -> np.ndarray:
        """``(B,)`` running max of the per-step failure score so far (the protocol's score)."""
        return self._running.copy()

    def threshold(self) -> np.ndarray:
        """``(B,)`` the band's upper limit at each environment's last predicted step."""
        t = np.maximum(self._t - 1, 0)
        if t.max(initial=0) >= len(self._upper):
            self._upper = self._band.upper(int(t.max()) + 4096)
        return self._upper[t]

    def alarm(self) -> np.ndarray:
        """``(B,)`` bool: the running score is above the calibrated band at the last step."""
        return (self._t > 0) & (self._running > self.threshold())
