"""The 12 per-step signals: names, definitions and the extractor's configuration (cheap, numpy only).

Every signal is defined for chunked flow-matching policies (the policy computes a chunk of C
actions and executes some of them before computing the next one) and for token-based policies.
The table here is the single source of the documentation: ``salus signals list`` prints it and
``docs/signals.md`` mirrors it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from salus.errors import InvalidInputError

__all__ = [
    "SIGNAL_NAMES",
    "SIGNAL_DEFINITIONS",
    "SignalDefinition",
    "SignalConfig",
    "NUM_SIGNALS",
]


@dataclass(frozen=True)
class SignalDefinition:
    """One signal: its formula, the inputs it reads, units, typical range and when it is invalid."""

    name: str
    formula: str
    inputs: str
    units: str
    typical_range: str
    invalid_when: str


SIGNAL_DEFINITIONS: tuple[SignalDefinition, ...] = (
    SignalDefinition(
        "action_volatility",
        "||a_t - a_{t-1}||_2 over all action dimensions",
        "action",
        "normalised action units",
        "0 - 1 (gripper switch: 2)",
        "first step of an episode; non-finite a_t or a_{t-1}",
    ),
    SignalDefinition(
        "action_magnitude",
        "||a_t[:3]||_2 (commanded end-effector step / POSITION_ACTION_SCALE_M)",
        "action",
        "fraction of the maximum end-effector step",
        "0 - 1.5",
        "non-finite a_t",
    ),
    SignalDefinition(
        "action_acceleration",
        "||a_t - 2 a_{t-1} + a_{t-2}||_2 over all action dimensions",
        "action",
        "normalised action units",
        "0 - 1.5 (gripper switch: 2-4)",
        "first two steps; non-finite a_t, a_{t-1} or a_{t-2}",
    ),
    SignalDefinition(
        "trajectory_divergence",
        "||chunk_k[t - s_k] - chunk_{k-1}[t - s_{k-1}]||_2: the current chunk's plan for step t against the "
        "previous chunk's plan for the same step (s_k = step at which chunk k was computed)",
        "chunk, chunk_id, chunk_offset",
        "normalised action units",
        "0 - 1.7",
        "before the second chunk; previous chunk does not cover step t (no overlap); non-finite plans",
    ),
    SignalDefinition(
        "latent_drift",
        "1 - cos(e_k, e_{k-1}): cosine distance between the observation embedding of the current chunk "
        "and that of the previous chunk (held for the steps served from the chunk's queue)",
        "obs_embedding, chunk_id",
        "cosine distance",
        "0 - 0.45",
        "before the second chunk; non-finite or zero embedding",
    ),
    SignalDefinition(
        "latent_norm_spike",
        "||h_t - m_{t-1}|| / ||m_{t-1}||: norm of the jump of h = hidden_step (output-layer input at this step's "
        "chunk position, last denoising step) away from m_{t-1}, the mean of h over the episode's earlier finite "
        "steps, relative to that mean's norm (scale-free, so it works after the expert's final LayerNorm/RMSNorm)",
        "hidden_step",
        "relative norm (ratio)",
        "0.3 - 3",
        "first step; non-finite hidden state",
    ),
    SignalDefinition(
        "ood_distance",
        "sqrt((e - mu)^T Sigma^-1 (e - mu) / E): Mahalanobis distance of the observation embedding to a "
        "Ledoit-Wolf Gaussian fitted on successful training rollouts (frozen), per dimension",
        "obs_embedding, fitted statistics",
        "standard deviations per dimension (RMS)",
        "0.4 - 1.5",
        "non-finite embedding (unfitted extractor: NotFittedError)",
    ),
    SignalDefinition(
        "sample_entropy",
        "-sum_c p_c log p_c over the cluster-assignment distribution p of the K sampled chunks (single-linkage "
        "clusters at a fitted RMS radius, SAFE's cluster entropy); token policies: entropy of the action-token "
        "softmax",
        "samples (K >= 2) or action_token_probs",
        "nats",
        "0 - log K",
        "K < 2 and no token probabilities; non-finite samples",
    ),
    SignalDefinition(
        "max_sample_probability",
        "max_c p_c of the same distribution as sample_entropy (largest cluster's share of the K samples, or "
        "the largest action-token probability)",
        "samples (K >= 2) or action_token_probs",
        "probability",
        "1/K - 1",
        "K < 2 and no token probabilities; non-finite samples",
    ),
    SignalDefinition(
        "execution_mismatch",
        "||(p_t - p_{t-1}) / POSITION_ACTION_SCALE_M - clip(a_{t-1}[:3], -1, 1)||_2: achieved end-effector "
        "displacement against the commanded one of the previous step",
        "robot_state ee_pos, action",
        "fraction of the maximum end-effector step",
        "0 - 1",
        "first step; non-finite positions or action",
    ),
    SignalDefinition(
        "constraint_margin",
        "min(min_j min(q_j - lo_j, hi_j - q_j) / (hi_j - lo_j), min_i min(p_i - L_i, H_i - p_i) / (H_i - L_i)): "
        "smallest normalised distance to a joint limit or a workspace wall (negative outside)",
        "robot_state joint_pos and ee_pos, sim.spec limits",
        "fraction of the joint / workspace range",
        "0 - 0.4",
        "non-finite robot state",
    ),
    SignalDefinition(
        "temporal_consistency",
        "||sum_{i<W} a_{t-i}[:3]|| / sum_{i<W} ||a_{t-i}[:3]||: mean resultant length of the last W commanded "
        "end-effector steps (1 = all in one direction, 0 = cancelling)",
        "action",
        "ratio",
        "0.5 - 1",
        "fewer than 2 steps; non-finite actions in the window; total commanded motion < min_motion",
    ),
)

SIGNAL_NAMES: tuple[str, ...] = tuple(d.name for d in SIGNAL_DEFINITIONS)
NUM_SIGNALS = len(SIGNAL_NAMES)


@dataclass(frozen=True)
class SignalConfig:
    """Settings of :class:`~salus.signals.SignalExtractor`.

    ``consistency_window``: W of temporal_consistency. ``min_motion``: total commanded motion (action
    units) below which temporal_consistency is undefined. ``cluster_radius``: RMS distance (action
    units) that links two sampled chunks into one cluster; None uses the fitted radius
    (``cluster_radius_scale`` times the median distance between two samples of one batch in the fitting
    rollouts).
    ``require_fitted``: step() raises NotFittedError before the OOD statistics are fitted or loaded;
    False flags ood_distance invalid instead (used while collecting the fitting rollouts).
    """

    consistency_window: int = 5
    min_motion: float = 1e-3
    cluster_radius: float | None = None
    cluster_radius_scale: float = 1.0
    ood_shrinkage: float | None = None
    require_fitted: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.consistency_window, int) or self.consistency_window < 2:
            raise InvalidInputError(
                f"consistency_window must be an int >= 2, got {self.consistency_window!r}"
            )
        if not self.min_motion >= 0:
            raise InvalidInputError(f"min_motion must be >= 0, got {self.min_motion!r}")
        if self.cluster_radius is not None and not self.cluster_radius > 0:
            raise InvalidInputError(f"cluster_radius must be > 0 or None, got {self.cluster_radius!r}")
        if not self.cluster_radius_scale > 0:
            raise InvalidInputError(f"cluster_radius_scale must be > 0, got {self.cluster_radius_scale!r}")
        if self.ood_shrinkage is not None and not 0.0 <= self.ood_shrinkage <= 1.0:
            raise InvalidInputError(
                f"ood_shrinkage must be in [0, 1] or None (Ledoit-Wolf), got {self.ood_shrinkage!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignalConfig:
        """Build from a JSON dict; unknown keys are an error that lists the allowed ones."""
        allowed = {f.name for f in fields(cls)}
        unknown = set(data) - allowed
        if unknown:
            raise InvalidInputError(
                f"unknown SignalConfig keys {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        return cls(**data)
