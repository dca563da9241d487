"""salus.signals: the 12 per-step failure signals and the published baseline scores.

``SignalExtractor(B).step(internals, robot_state) -> SignalStep(values (B, 12), valid (B, 12))``;
``OnlineBaselines(B).step(internals)``; ``EmbeddingScorer(name).fit(X).score(X)``.
"""

from __future__ import annotations

from salus.signals.analysis import load_extractor_for_policy, signal_stats_path, summarize_signals
from salus.signals.baselines import (
    BASELINE_DEFINITIONS,
    EMBEDDING_BASELINE_NAMES,
    ONLINE_BASELINE_NAMES,
    BaselineConfig,
    BaselineStep,
    EmbeddingScorer,
    OnlineBaselines,
)
from salus.signals.definitions import (
    NUM_SIGNALS,
    SIGNAL_DEFINITIONS,
    SIGNAL_NAMES,
    SignalConfig,
    SignalDefinition,
)
from salus.signals.extractor import SignalExtractor, SignalStep
from salus.signals.stats import GaussianStats

__all__ = [
    "SIGNAL_NAMES",
    "SIGNAL_DEFINITIONS",
    "NUM_SIGNALS",
    "SignalDefinition",
    "SignalConfig",
    "SignalExtractor",
    "SignalStep",
    "ONLINE_BASELINE_NAMES",
    "EMBEDDING_BASELINE_NAMES",
    "BASELINE_DEFINITIONS",
    "BaselineConfig",
    "BaselineStep",
    "OnlineBaselines",
    "EmbeddingScorer",
    "GaussianStats",
    "load_extractor_for_policy",
    "signal_stats_path",
    "summarize_signals",
]
