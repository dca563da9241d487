"""The one streaming home of a checkpoint's score: one call per control step for B environments.

:class:`StreamingScorer` turns one step's inputs into the network's input for every input kind
(:meth:`StreamingScorer.features`), runs the network one step (the fastest runner of
:func:`salus.predictor.runners.make_runner`, keeping each environment's state), and keeps each
environment's elapsed steps and running max of the score (the probability at ``score_index`` plus
the checkpoint's time ramp, :func:`salus.predictor.checkpoint.ramped`), tested against the
calibrated conformal band at that step: exactly what the protocol scores offline
(``TrainedPredictor.episode_scores``). The runtime monitor wraps it (it reads the inputs from the
policy's internals and adds input guards, fail-safe and attribution); :class:`FailurePredictor`
(``salus.predictor.inference``) is it with a small API for callers who compute the inputs.

Shapes: B environments, D network input width, P probability columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from salus.errors import InvalidInputError

from .checkpoint import TrainedPredictor, embedding_features, embedding_source, ramped, signal_features
from .episodes import N_SIGNALS
from .runners import make_runner

__all__ = ["StepScore", "StreamingScorer"]


@dataclass
class StepScore:
    """One step of B environments."""

    probs: np.ndarray  # (B, P) float64, the network's probabilities (the score column at ``col``)
    col: int  # the score column of ``probs``
    t: np.ndarray  # (B,) int64, this step's index in each environment's episode
    running: np.ndarray  # (B,) running max of the ramped score, a copy
    threshold: np.ndarray  # (B,) the band at step ``t``
    exceeded: np.ndarray  # (B,) bool, ``running > threshold``

    @property
    def prob(self) -> np.ndarray:
        """``(B,)`` this step's probability in the score column."""
        return self.probs[:, self.col]


class StreamingScorer:
    """A loaded checkpoint with per-environment streaming state (see the module docstring)."""

    def __init__(self, trained: TrainedPredictor, alpha: float | None = None) -> None:
        self.trained = trained
        self.model = trained.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.runner = make_runner(self.model)
        norm = trained.meta["normalization"]
        self._mean = np.asarray(norm["mean"], dtype=np.float32)
        self._std = np.asarray(norm["std"], dtype=np.float32)
        self.band = trained.band(alpha)
        self.alpha = float(self.band.alpha)
        self.upper = np.asarray(self.band.upper(max(len(self.band.mu), 1)), dtype=np.float64)
        self.score_index = int(trained.meta["score_index"])
        self.ramp = float(trained.score_ramp)
        self.batch_size = 0
        self.state: Any = None
        self.t = np.zeros(0, dtype=np.int64)
        self.running = np.zeros(0)

    # ------------------------------------------------------------------ episodes
    def allocate(self, batch_size: int) -> None:
        """New episodes in ``batch_size`` environments."""
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.state = self.runner.init_state(self.batch_size)
        self.t = np.zeros(self.batch_size, dtype=np.int64)
        self.running = np.full(self.batch_size, -np.inf)

    def reset_env(self, i: int) -> None:
        """A new episode in environment ``i`` (the others continue)."""
        if not 0 <= i < self.batch_size:
            raise InvalidInputError(f"env_index {i} out of range for batch size {self.batch_size}")
        self.state = self.runner.reset_state(self.state, i)
        self.t[i] = 0
        self.running[i] = -np.inf

    # ------------------------------------------------------------------ one step
    def features(
        self,
        signals: Any = None,
        valid: Any = None,
        embedding: Any = None,
        **inputs: Any,
    ) -> np.ndarray:
        """The network input ``(B, D)`` float32 of one step's inputs, for the checkpoint's input
        kind: ``signals (B, 12)`` and ``valid (B, 12)``; ``embedding (B, E)`` (SAFE models and the
        embedding baselines: the step key of ``checkpoint.embedding_source``, ``obs_embedding`` or
        SAFE's ``hidden_mean``); ``features`` models the feature space's inputs (``baselines (B,
        nb)``, ``state``, ``hidden``, as recorded); the online baseline models ``baselines (B, nb)``
        (NaN where invalid)."""
        kind = self.trained.input_kind
        b = self.batch_size
        if kind == "features":
            x = self.trained.feature_space.step(
                {"signals": signals, "valid": valid, "embedding": embedding, **inputs}
            )
            if x.shape[0] != b:
                raise InvalidInputError(f"inputs must have batch {b}, got {x.shape[0]}")
            return x  # type: ignore[no-any-return]
        if kind == "signals":
            s = np.asarray(signals, dtype=np.float32)
            v = np.ones_like(s, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
            if s.ndim != 2 or s.shape != (b, N_SIGNALS) or v.shape != s.shape:
                raise InvalidInputError(
                    f"signals and valid must be ({b}, {N_SIGNALS}), got {s.shape} and {v.shape}"
                )
            return signal_features(s, v, self._mean, self._std)
        if kind == "baselines":
            base = inputs.get("baselines")
            width = int(self.trained.meta["model"]["in_dim"])
            if base is None or np.shape(base) != (b, width):
                raise InvalidInputError(
                    f"{self.trained.name} predicts from the online baseline scores "
                    f"{self.trained.meta['baseline_names']}: pass baselines=({b}, {width}) (NaN where "
                    f"invalid), got {None if base is None else np.shape(base)}"
                )
            return np.asarray(base, dtype=np.float32)
        if embedding is None:
            source = embedding_source(self.trained.meta["normalization"])
            raise InvalidInputError(
                f"{self.trained.name} predicts from {source}; pass embedding=(B, E) of it"
            )
        e = np.asarray(embedding, dtype=np.float32)
        if e.shape != (b, self._mean.shape[0]):
            raise InvalidInputError(f"embedding must be ({b}, {self._mean.shape[0]}), got {e.shape}")
        return embedding_features(e, self._mean, self._std)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The network's probabilities ``(B, P)`` float64 for input ``x (B, D)``; advances the network
        state (the state before is kept in ``prev_state``, e.g. for attribution)."""
        self.prev_state = self.state
        probs, self.state = self.runner.step(x, self.state)
        return probs  # type: ignore[no-any-return]

    def accumulate(self, probs: np.ndarray, skip: np.ndarray | None = None) -> StepScore:
        """This step's running max and band test from :meth:`predict`'s ``probs``; environments
        where ``skip`` is True (the monitor's fail-safe ones) keep their running max. Every
        environment's step count advances."""
        col = min(self.score_index, probs.shape[1] - 1)
        t = self.t
        score = ramped(probs[:, col], t, self.ramp) if self.ramp else probs[:, col]
        if skip is not None and bool(np.logical_or.reduce(skip, axis=None)):
            self.running = np.where(
                skip, self.running, np.maximum(self.running, np.where(skip, -np.inf, score))
            )
        else:
            np.maximum(self.running, score, out=self.running)
        self.t = t + 1  # a new array: ``t`` stays this step's
        threshold = self.threshold_at(t)
        return StepScore(probs, col, t, self.running.copy(), threshold, self.running > threshold)

    def advance(self) -> np.ndarray:
        """A step without a prediction (every environment fail-safe): the step indices ``(B,)``
        it had; the running max is kept."""
        t = self.t
        self.t = t + 1
        return t

    def threshold_at(self, t: np.ndarray) -> np.ndarray:
        """The band at steps ``t`` (its last edge past its end)."""
        return self.upper.take(t, mode="clip")

    def type_probs(self) -> np.ndarray | None:
        """``(B, P, K)`` per-failure-type probabilities of the last :meth:`predict` (our models'
        per-type heads), None for models without them (SAFE, the baselines)."""
        if self.trained.input_kind == "embedding":
            return None
        return getattr(self.runner, "last_types", None)
