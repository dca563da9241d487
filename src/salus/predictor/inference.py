"""Streaming inference for callers who compute a step's inputs themselves: one call per control
step for B environments.

    predictor = FailurePredictor.load("runs/model/salus-tcn")
    predictor.reset(batch_size=4)
    probs = predictor.predict(signals, valid)      # (4, n_horizons) failure probabilities
    alarm = predictor.alarm()                      # (4,) bool: running score above the band
    predictor.reset(env_index=2)                   # a new episode in environment 2

It is the streaming scorer (:class:`salus.predictor.streaming.StreamingScorer`, which the runtime
monitor wraps too) with a small API: the temporal model keeps its window per environment,
``reset(env_index)`` clears one, and the alarm follows the evaluation protocol (the running max of
the per-step score against the checkpoint's functional conformal band at step t of each
environment's episode).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .checkpoint import TrainedPredictor
from .conformal import FunctionalBand
from .streaming import StreamingScorer

__all__ = ["FailurePredictor"]


class FailurePredictor(StreamingScorer):
    """A loaded checkpoint with per-environment streaming state."""

    band: FunctionalBand

    def __init__(self, trained: TrainedPredictor, alpha: float | None = None):
        super().__init__(trained, alpha)
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
    def extractor_statistics(self) -> dict:
        return self.trained.extractor_statistics

    @property
    def failure_types(self) -> tuple[str, ...]:
        return tuple(self.trained.meta["failure_types"])

    # ------------------------------------------------------------------ streaming
    def reset(self, env_index: int | None = None, *, batch_size: int | None = None) -> None:
        """Start new episodes: all environments (optionally with a new ``batch_size``) or one."""
        if env_index is None:
            self.allocate(batch_size or self.batch_size or 1)
        else:
            self.reset_env(env_index)

    def predict(  # type: ignore[override]
        self,
        signals: np.ndarray | None,
        valid: np.ndarray | None = None,
        embedding: np.ndarray | None = None,
        **inputs: np.ndarray,
    ) -> np.ndarray:
        """One control step (inputs as :meth:`StreamingScorer.features`) -> failure probabilities
        ``(B, P)`` (P = number of horizons; 1 for SAFE models and the training-free baselines, whose
        column is the baseline's score; 1 + horizons for ``salus-risk``, column 0 = the episode fails)."""
        probs = super().predict(self.features(signals, valid, embedding, **inputs))
        self.accumulate(probs)
        return probs

    def type_probs(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        """Per failure type, ``(B, n_horizons)`` probabilities of that failure within each horizon
        at the last ``predict`` (our models' per-type heads; empty for SAFE models)."""
        arr = super().type_probs()
        if arr is None:
            return {}
        return {t: np.asarray(arr[:, :, k], dtype=np.float64) for k, t in enumerate(self.failure_types)}

    def score(self) -> np.ndarray:
        """``(B,)`` running max of the per-step failure score so far (the protocol's score)."""
        return self.running.copy()

    def threshold(self) -> np.ndarray:
        """``(B,)`` the band's upper limit at each environment's last predicted step."""
        return self.threshold_at(np.maximum(self.t - 1, 0))

    def alarm(self) -> np.ndarray:
        """``(B,)`` bool: the running score is above the calibrated band at the last step."""
        return (self.t > 0) & (self.running > self.threshold())
