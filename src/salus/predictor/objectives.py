"""The training objectives, by name: what a model is trained to output and how it is fitted.

One :class:`Objective` per entry of ``registry.OBJECTIVES``: its per-step targets and step mask
(which steps count), how it is fitted (``"network"``: epochs of ``loss``; ``"trees"``: gradient-
boosted trees on pre-event steps; ``"baseline"``: no training, fitted as the evaluation fits the
method), its loss, the checkpoint's score column and the names of its probability columns. Training
(``salus.predictor.training``) reads this table instead of switching on the objective's name; a new
objective is one entry here and its name in ``registry.OBJECTIVES``.

Shapes: T steps, H horizons, K failure types; a batch of B episodes padded to L steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from salus.errors import InvalidInputError, InvalidNameError

from .config import ModelConfig, SafeMLPConfig, TrainConfig
from .episodes import Episode, horizon_labels
from .registry import OBJECTIVES

__all__ = [
    "Objective",
    "get_objective",
    "outcome_hazard_targets",
    "pre_event_mask",
    "class_weights",
]


def outcome_hazard_targets(episode: Episode, horizons: Sequence[int], types: Sequence[str]) -> np.ndarray:
    """Targets ``(T, 1 + H, 1 + K)`` of the ``outcome-hazard`` objective: row 0 = the episode
    fails (any, then per type), rows 1.. = ``horizon_labels``."""
    y = np.zeros((episode.length, 1 + len(horizons), 1 + len(types)), dtype=np.float32)
    if episode.failed:
        y[:, 0, 0] = 1.0
        if episode.failure_type in types:
            y[:, 0, 1 + list(types).index(episode.failure_type)] = 1.0
    y[:, 1:] = horizon_labels(episode, horizons, types)
    return y


def pre_event_mask(episode: Episode) -> np.ndarray:
    """``(T,)`` 1 at steps that still have something to predict: every step of a success or a
    timeout, steps ``t <= failure_step`` of an event failure (after the event it is no prediction)."""
    m = np.ones(episode.length, dtype=np.float32)
    if episode.failed and episode.failure_type != "timeout":
        m[episode.failure_step + 1 :] = 0.0
    return m


def _outcome(episode: Episode, horizons: Sequence[int], types: Sequence[str]) -> np.ndarray:
    """``(T,)`` the episode's outcome at every step (SAFE's per-step target)."""
    return np.full((episode.length,), float(episode.failed), dtype=np.float32)


def _every_step(episode: Episode) -> np.ndarray:
    return np.ones(episode.length, dtype=np.float32)


def class_weights(label: np.ndarray) -> tuple[float, float]:
    """Inverse class frequencies ``(w_pos, w_neg)`` of the episode labels (each class weighs half)."""
    n, n_pos = len(label), float(label.sum())
    return n / (2 * max(n_pos, 1.0)), n / (2 * max(n - n_pos, 1.0))


# A loss factory: (model config, train config, all training targets (T_i, ...) and step masks
# (T_i,), episode labels (N,)) -> loss(raw (B, L, ...), y, mask (B, L), label (B,)) -> scalar.
LossFactory = Callable[
    [ModelConfig, TrainConfig, Sequence[np.ndarray], Sequence[np.ndarray], np.ndarray], Any
]


def _focal(outcome_row: bool) -> LossFactory:
    """Focal loss on every output, per-output alpha = 1 - positive rate (clipped to [0.5, 0.98]);
    with ``outcome_row`` the "episode fails" row weighs as much as all horizon rows together."""

    def factory(
        cfg: ModelConfig,
        tcfg: TrainConfig,
        ys: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        label: np.ndarray,
    ) -> Any:
        import torch
        from torch.nn import functional as F

        y_all = np.concatenate(ys)  # (N, H, O)
        m = np.concatenate(masks)[:, None, None]
        pos = (y_all * m).sum(axis=0) / max(float(m.sum()), 1.0)
        alpha = torch.from_numpy(np.clip(1.0 - pos, 0.5, 0.98).astype(np.float32))
        gamma = tcfg.focal_gamma
        rows = np.ones(y_all.shape[1], dtype=np.float32)
        if outcome_row:
            rows[0] = max(1.0, float(y_all.shape[1] - 1))
        w_rows = torch.from_numpy(rows / rows.sum())

        def focal(raw: Any, y: Any, mask: Any, lab: Any) -> Any:
            p = torch.sigmoid(raw)
            ce = F.binary_cross_entropy_with_logits(raw, y, reduction="none")
            p_t = p * y + (1 - p) * (1 - y)
            a_t = alpha * y + (1 - alpha) * (1 - y)
            loss = ((a_t * (1 - p_t) ** gamma * ce).mean(dim=-1) * w_rows).sum(dim=-1)
            return (loss * mask).sum() / mask.sum().clamp(min=1)

        return focal

    return factory


def _safe_mlp(
    cfg: ModelConfig,
    tcfg: TrainConfig,
    ys: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    label: np.ndarray,
) -> Any:
    """SAFE-MLP's loss: the accumulated score (running mean or sum of the per-step sigmoid) below 0
    for successes and above ``safe_threshold`` for failures, rollouts weighted by inverse class
    frequency."""
    import torch
    from torch.nn import functional as F

    if not isinstance(cfg, SafeMLPConfig):
        raise InvalidInputError(
            f"the safe-mlp objective needs a SafeMLPConfig, {cfg.name} has {type(cfg).__name__}"
        )
    w_pos, w_neg = class_weights(label)
    thr, accumulate = cfg.safe_threshold, cfg.safe_accumulate

    def safe_mlp(raw: Any, y: Any, mask: Any, lab: Any) -> Any:
        s = torch.cumsum(torch.sigmoid(raw), dim=-1)
        if accumulate == "mean":
            s = s / torch.arange(1, raw.shape[-1] + 1, dtype=s.dtype)
        e = lab[:, None]
        per = e * F.relu(thr - s) + (1 - e) * F.relu(s)
        w = (lab * w_pos + (1 - lab) * w_neg)[:, None] * mask
        return (per * w).sum() / w.sum().clamp(min=1e-8)

    return safe_mlp


def _safe_lstm(
    cfg: ModelConfig,
    tcfg: TrainConfig,
    ys: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    label: np.ndarray,
) -> Any:
    """SAFE-LSTM's loss: class-weighted cross-entropy against the rollout's outcome at every step."""
    from torch.nn import functional as F

    w_pos, w_neg = class_weights(label)

    def safe_lstm(raw: Any, y: Any, mask: Any, lab: Any) -> Any:
        per = F.binary_cross_entropy_with_logits(raw, y, reduction="none")
        w = (lab * w_pos + (1 - lab) * w_neg)[:, None] * mask
        return (per * w).sum() / w.sum().clamp(min=1e-8)

    return safe_lstm


@dataclass(frozen=True)
class Objective:
    """What training needs to know about an objective (see the module docstring)."""

    name: str
    fit: str  # "network", "trees" or "baseline"
    targets: Callable[[Episode, Sequence[int], Sequence[str]], np.ndarray]  # per step
    step_mask: Callable[[Episode], np.ndarray]  # (T,) the steps the loss counts
    loss: LossFactory | None = None  # "network" objectives
    horizon_score: bool = False  # the score column is TrainConfig.score_horizon (else column 0)
    records_horizons: bool = True  # the checkpoint lists the horizons (a baseline has one score)
    outcome_columns: bool = False  # column 0 is "the episode fails", then one per horizon

    def score_index(self, tcfg: TrainConfig) -> int:
        return tcfg.score_horizon % len(tcfg.horizons) if self.horizon_score else 0

    def prob_columns(self, tcfg: TrainConfig) -> list[str] | None:
        """Names of the probability columns when they are not the horizons alone."""
        if not self.outcome_columns:
            return None
        return ["episode", *[f"within {h} steps" for h in tcfg.horizons]]


_OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("horizons", "network", horizon_labels, _every_step, _focal(False), horizon_score=True),
        Objective(
            "outcome-hazard",
            "network",
            outcome_hazard_targets,
            pre_event_mask,
            _focal(True),
            outcome_columns=True,
        ),
        Objective("safe-mlp", "network", _outcome, _every_step, _safe_mlp),
        Objective("safe-lstm", "network", _outcome, _every_step, _safe_lstm),
        Objective("boosted-trees", "trees", _outcome, pre_event_mask),
        Objective("baseline", "baseline", _outcome, _every_step, records_horizons=False),
    )
}
if set(_OBJECTIVES) != set(OBJECTIVES):  # pragma: no cover - a developer's slip, caught at import
    raise RuntimeError(
        f"objectives {sorted(_OBJECTIVES)} differ from registry.OBJECTIVES {sorted(OBJECTIVES)}"
    )


def get_objective(name: str) -> Objective:
    """The objective ``name``; ``InvalidNameError`` lists the valid ones."""
    try:
        return _OBJECTIVES[name]
    except KeyError:
        raise InvalidNameError("objective", name, tuple(_OBJECTIVES)) from None
