"""salus.predictor: failure predictors, training, functional conformal thresholds and the
evaluation protocol (SAFE's) with every baseline side by side.

Cheap to import: configs and names load eagerly; torch-backed parts load on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from salus._lazy import load_lazy
from salus.predictor.config import (
    BASELINE_MODELS,
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

if TYPE_CHECKING:  # the lazy names below, for type checkers and editors (no import at run time)
    from salus.predictor.ceiling_replay import CeilingConfig as CeilingConfig
    from salus.predictor.ceiling_replay import CeilingResult as CeilingResult
    from salus.predictor.ceiling_replay import run_ceiling as run_ceiling
    from salus.predictor.checkpoint import TrainedPredictor as TrainedPredictor
    from salus.predictor.conformal import FunctionalBand as FunctionalBand
    from salus.predictor.conformal import fit_functional_bands as fit_functional_bands
    from salus.predictor.episodes import Episode as Episode
    from salus.predictor.episodes import EpisodeSet as EpisodeSet
    from salus.predictor.episodes import EpisodeSplit as EpisodeSplit
    from salus.predictor.episodes import episodes_from_dataset as episodes_from_dataset
    from salus.predictor.episodes import horizon_labels as horizon_labels
    from salus.predictor.episodes import split_episodes as split_episodes
    from salus.predictor.episodes import synthetic_episodes as synthetic_episodes
    from salus.predictor.evaluate import Evaluation as Evaluation
    from salus.predictor.evaluate import MethodScores as MethodScores
    from salus.predictor.evaluate import aggregate_seeds as aggregate_seeds
    from salus.predictor.evaluate import evaluate_detailed as evaluate_detailed
    from salus.predictor.evaluate import evaluate_methods as evaluate_methods
    from salus.predictor.evaluate import run_evaluation as run_evaluation
    from salus.predictor.features import FeatureSpace as FeatureSpace
    from salus.predictor.inference import FailurePredictor as FailurePredictor
    from salus.predictor.models import build_model as build_model
    from salus.predictor.protocol import ProtocolConfig as ProtocolConfig
    from salus.predictor.protocol import alarm_metrics as alarm_metrics
    from salus.predictor.protocol import average_precision as average_precision
    from salus.predictor.protocol import method_metrics as method_metrics
    from salus.predictor.protocol import roc_auc as roc_auc
    from salus.predictor.protocol import running_max as running_max
    from salus.predictor.protocol import safe_times as safe_times
    from salus.predictor.registry import ModelSpec as ModelSpec
    from salus.predictor.registry import get_model_spec as get_model_spec
    from salus.predictor.registry import register_model as register_model
    from salus.predictor.streaming import StreamingScorer as StreamingScorer
    from salus.predictor.tables import format_benchmark as format_benchmark
    from salus.predictor.tables import format_markdown as format_markdown
    from salus.predictor.training import EpochLog as EpochLog
    from salus.predictor.training import train_model as train_model

_LAZY: dict[str, str] = {
    "CeilingConfig": "salus.predictor.ceiling_replay",
    "CeilingResult": "salus.predictor.ceiling_replay",
    "run_ceiling": "salus.predictor.ceiling_replay",
    "Episode": "salus.predictor.episodes",
    "EpisodeSet": "salus.predictor.episodes",
    "EpisodeSplit": "salus.predictor.episodes",
    "episodes_from_dataset": "salus.predictor.episodes",
    "split_episodes": "salus.predictor.episodes",
    "horizon_labels": "salus.predictor.episodes",
    "synthetic_episodes": "salus.predictor.episodes",
    "FunctionalBand": "salus.predictor.conformal",
    "fit_functional_bands": "salus.predictor.conformal",
    "ProtocolConfig": "salus.predictor.protocol",
    "running_max": "salus.predictor.protocol",
    "safe_times": "salus.predictor.protocol",
    "method_metrics": "salus.predictor.protocol",
    "alarm_metrics": "salus.predictor.protocol",
    "roc_auc": "salus.predictor.protocol",
    "average_precision": "salus.predictor.protocol",
    "FeatureSpace": "salus.predictor.features",
    "ModelSpec": "salus.predictor.registry",
    "register_model": "salus.predictor.registry",
    "get_model_spec": "salus.predictor.registry",
    "TrainedPredictor": "salus.predictor.checkpoint",
    "train_model": "salus.predictor.training",
    "EpochLog": "salus.predictor.training",
    "run_evaluation": "salus.predictor.evaluate",
    "evaluate_detailed": "salus.predictor.evaluate",
    "evaluate_methods": "salus.predictor.evaluate",
    "aggregate_seeds": "salus.predictor.evaluate",
    "Evaluation": "salus.predictor.evaluate",
    "MethodScores": "salus.predictor.evaluate",
    "format_markdown": "salus.predictor.tables",
    "format_benchmark": "salus.predictor.tables",
    "FailurePredictor": "salus.predictor.inference",
    "StreamingScorer": "salus.predictor.streaming",
    "build_model": "salus.predictor.models",
}

__all__ = [
    "BASELINE_MODELS",
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
