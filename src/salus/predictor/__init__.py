"""salus.predictor: failure predictors, training, functional conformal thresholds and the
evaluation protocol (SAFE's) with every baseline side by side.

Cheap to import: configs and names load eagerly; torch-backed parts load on first access.
"""

from __future__ import annotations

from typing import Any

from salus._lazy import load_lazy
from salus.predictor.config import (
    DEFAULT_ALPHAS,
    DEFAULT_FAILURE_TYPES,
    DEFAULT_HORIZONS,
    EMBEDDING_MODELS,
    MODEL_NAMES,
    SIGNAL_MODELS,
    ConformalConfig,
    ModelConfig,
    SplitConfig,
    TrainConfig,
    check_model_name,
)

_LAZY: dict[str, str] = {
    "Episode": "salus.predictor.episodes",
    "EpisodeSet": "salus.predictor.episodes",
    "EpisodeSplit": "salus.predictor.episodes",
    "episodes_from_dataset": "salus.predictor.episodes",
    "split_episodes": "salus.predictor.episodes",
    "horizon_labels": "salus.predictor.episodes",
    "synthetic_episodes": "salus.predictor.episodes",
    "FunctionalBand": "salus.predictor.conformal",
    "fit_functional_bands": "salus.predictor.conformal",
    "running_max": "salus.predictor.metrics",
    "protocol_times": "salus.predictor.metrics",
    "ranking_metrics": "salus.predictor.metrics",
    "alarm_metrics": "salus.predictor.metrics",
    "roc_auc": "salus.predictor.metrics",
    "average_precision": "salus.predictor.metrics",
    "TrainedPredictor": "salus.predictor.checkpoint",
    "train_model": "salus.predictor.training",
    "EpochLog": "salus.predictor.training",
    "run_evaluation": "salus.predictor.evaluate",
    "evaluate_methods": "salus.predictor.evaluate",
    "MethodScores": "salus.predictor.evaluate",
    "format_markdown": "salus.predictor.evaluate",
    "FailurePredictor": "salus.predictor.inference",
    "build_model": "salus.predictor.models",
}

__all__ = [
    "DEFAULT_ALPHAS",
    "DEFAULT_FAILURE_TYPES",
    "DEFAULT_HORIZONS",
    "EMBEDDING_MODELS",
    "MODEL_NAMES",
    "SIGNAL_MODELS",
    "ConformalConfig",
    "ModelConfig",
    "SplitConfig",
    "TrainConfig",
    "check_model_name",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, name)
