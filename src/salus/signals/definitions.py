"""The 12 per-step signals: each one's definition and its computation, side by side (numpy only).

Every signal is defined for chunked flow-matching policies (the policy computes a chunk of C
actions and executes some of them before computing the next one) and for token-based policies.
Each signal is one small function registered with :func:`signal` right below its
:class:`SignalDefinition`; the registration order is the column order of the extractor's output,
so adding a signal touches this file only (plus ``docs/signals.md``, which mirrors the table; see
``docs/contributing.md``). The table is the single source of the documentation: ``salus signals
list`` prints it.

A signal is computed either every step from :class:`StepInputs` (all B environments) or, with
``per_chunk=True``, once per computed chunk from :class:`ChunkInputs` (the rows that start a chunk)
and held for the steps served from that chunk's queue. A function returns ``(values, valid)``, both
(R,): the extractor zeroes and flags every non-finite value, so a function only states when its
inputs make it undefined.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from salus.errors import InvalidInputError, NotFittedError
from salus.signals.stats import GaussianStats, cluster_probabilities, entropy
from salus.sim.spec import (
    JOINT_LOWER,
    JOINT_UPPER,
    WORKSPACE_HIGH,
    WORKSPACE_LOW,
)

__all__ = [
    "SIGNAL_NAMES",
    "SIGNAL_DEFINITIONS",
    "SIGNAL_FUNCTIONS",
    "SignalDefinition",
    "SignalFunction",
    "SignalConfig",
    "StepInputs",
    "ChunkInputs",
    "NUM_SIGNALS",
    "signal",
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


Computed = tuple[np.ndarray, np.ndarray]  # values (R,) float64 and valid (R,) bool


class StepInputs:
    """What a per-step signal reads, for all B environments (float64 unless noted; set by the extractor).

    ``action``, ``prev1``, ``prev2`` (B, A): this step's action and the two before it (zeros before
    the episode had them); ``n_hist`` (B,) int: earlier actions in the episode (capped at W);
    ``window`` (B, W, A): the last W actions including this one (zeros in unwritten slots),
    ``n_window`` (B,) how many of them are written, ``window_norms`` (B, W) their ||a[:3]|| and
    ``step_norm`` (B,) this step's ||a_t[:3]|| (the commanded end-effector step). ``chunk`` (B, C, A) as given, ``chunk_offset``
    (B,), ``t`` (B,) step index in the episode, ``prev_chunk`` (B, C, A) and ``prev_start`` (B,):
    the previous chunk and the step it was computed at, ``n_chunks`` (B,) chunks so far (this one
    included). ``limit_state`` (B, L): the limited entries of the robot state (the Panda: 7 joint
    positions then the 3 end-effector coordinates), ``limit_lo`` / ``limit_hi`` / ``limit_range``
    (L,) their limits; ``ee``, ``prev_ee`` (B, 3): end-effector position now and at the previous
    step, ``ee_scale`` the metres per unit of ``action[:3]``; ``joint_error`` (B,) or None: for a
    robot described by joint positions and commanded targets (no end effector), the distance of
    the joints from the last commanded target as a fraction of the joint range. ``hidden`` (B, H),
    ``hidden_sq`` (B,) ||h||^2, ``hidden_dot_sum`` (B,) h . S and ``hidden_sum_sq`` (B,) ||S||^2
    with S the sum of h over the ``n_hidden`` (B,) earlier finite steps. ``token_probs`` (B, V) or
    None. ``rows`` = arange(B), ``always`` (B,) all True, ``config`` the extractor's SignalConfig.
    """

    __slots__ = (
        "action",
        "prev1",
        "prev2",
        "n_hist",
        "window",
        "window_norms",
        "step_norm",
        "n_window",
        "chunk",
        "chunk_offset",
        "t",
        "prev_chunk",
        "prev_start",
        "n_chunks",
        "limit_state",
        "limit_lo",
        "limit_hi",
        "limit_range",
        "ee",
        "prev_ee",
        "ee_scale",
        "joint_error",
        "hidden",
        "hidden_sq",
        "hidden_dot_sum",
        "hidden_sum_sq",
        "n_hidden",
        "token_probs",
        "rows",
        "always",
        "config",
    )

    action: np.ndarray
    prev1: np.ndarray
    prev2: np.ndarray
    n_hist: np.ndarray
    window: np.ndarray
    window_norms: np.ndarray
    step_norm: np.ndarray
    n_window: np.ndarray
    chunk: np.ndarray
    chunk_offset: np.ndarray
    t: np.ndarray
    prev_chunk: np.ndarray
    prev_start: np.ndarray
    n_chunks: np.ndarray
    limit_state: np.ndarray
    limit_lo: np.ndarray
    limit_hi: np.ndarray
    limit_range: np.ndarray
    ee: np.ndarray
    prev_ee: np.ndarray
    ee_scale: float
    joint_error: np.ndarray | None
    hidden: np.ndarray
    hidden_sq: np.ndarray
    hidden_dot_sum: np.ndarray
    hidden_sum_sq: np.ndarray
    n_hidden: np.ndarray
    token_probs: np.ndarray | None
    rows: np.ndarray
    always: np.ndarray
    config: SignalConfig


class ChunkInputs:
    """What a per-chunk signal reads, for the R rows that start a chunk at this step.

    ``embedding`` (R, E) and ``prev_embedding`` (R, E) float64: the observation embeddings of this
    chunk and of the previous one (zeros before the first); ``n_chunks`` (R,): chunks so far, this
    one included; ``samples`` (R, K, C, A) or None; ``ood``: the fitted (or unfitted) Gaussian;
    ``cluster_radius`` and ``config``: see :class:`SignalConfig`.
    """

    def __init__(
        self,
        embedding: np.ndarray,
        prev_embedding: np.ndarray,
        n_chunks: np.ndarray,
        samples: np.ndarray | None,
        ood: GaussianStats,
        cluster_radius: float | None,
        config: SignalConfig,
    ) -> None:
        self.embedding = embedding
        self.prev_embedding = prev_embedding
        self.n_chunks = n_chunks
        self.samples = samples
        self.ood = ood
        self.cluster_radius = cluster_radius
        self.config = config
        self._clusters: Computed | None = None

    def cluster_distribution(self) -> Computed | None:
        """Cluster-assignment distribution of the K samples (R, K) and its validity (R,), computed once.

        None when there are no K >= 2 samples, or no radius and ``require_fitted`` is False.
        """
        if self._clusters is None:
            samples = self.samples
            if samples is None or samples.shape[1] < 2:
                return None
            radius = self.cluster_radius
            if radius is None:
                if self.config.require_fitted:
                    raise NotFittedError(
                        "sample_entropy needs a cluster radius: fit(...) with samples, load fitted statistics, "
                        "or set SignalConfig.cluster_radius"
                    )
                return None
            s = samples.astype(np.float64)
            s = s.reshape(s.shape[0], s.shape[1], -1)
            finite = np.asarray(np.isfinite(s).all(axis=(1, 2)))
            self._clusters = (cluster_probabilities(np.where(finite[:, None, None], s, 0.0), radius), finite)
        return self._clusters


StepFn = Callable[[StepInputs], Computed | None]  # None: keep the held value (per-chunk signals)
ChunkFn = Callable[[ChunkInputs], Computed | None]


@dataclass(frozen=True)
class SignalFunction:
    """How one signal is computed: ``step(StepInputs)`` every step, or ``chunk(ChunkInputs)`` once per
    chunk (held in between; None from it means invalid). ``step`` of a per-chunk signal, when set,
    returns None to keep the held value, or a per-step value (the token policies' entropies)."""

    definition: SignalDefinition
    step: StepFn | None = None
    chunk: ChunkFn | None = None


_REGISTRY: list[SignalFunction] = []


def signal(
    definition: SignalDefinition, *, per_chunk: bool = False, each_step: Callable[..., Any] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the computation of ``definition`` (next output column).

    ``per_chunk``: the function takes :class:`ChunkInputs`; otherwise :class:`StepInputs`.
    ``each_step`` (per-chunk signals only): a StepInputs function returning a per-step value or None.
    """

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if any(f.definition.name == definition.name for f in _REGISTRY):
            raise InvalidInputError(f"signal {definition.name!r} is registered twice")
        _REGISTRY.append(
            SignalFunction(definition, step=each_step, chunk=fn)
            if per_chunk
            else SignalFunction(definition, step=fn)
        )
        return fn

    return register


def _norm(x: np.ndarray) -> np.ndarray:
    """Euclidean norm of the rows of x (R, D) -> (R,)."""
    return np.sqrt(np.vecdot(x, x))


@signal(
    SignalDefinition(
        "action_volatility",
        "||a_t - a_{t-1}||_2 over all action dimensions",
        "action",
        "normalised action units",
        "0 - 1 (gripper switch: 2)",
        "first step of an episode; non-finite a_t or a_{t-1}",
    )
)
def action_volatility(x: StepInputs) -> Computed:
    return _norm(x.action - x.prev1), x.n_hist >= 1


@signal(
    SignalDefinition(
        "action_magnitude",
        "||a_t[:3]||_2 (commanded end-effector step / POSITION_ACTION_SCALE_M)",
        "action",
        "fraction of the maximum end-effector step",
        "0 - 1.5",
        "non-finite a_t",
    )
)
def action_magnitude(x: StepInputs) -> Computed:
    return x.step_norm, x.always


@signal(
    SignalDefinition(
        "action_acceleration",
        "||a_t - 2 a_{t-1} + a_{t-2}||_2 over all action dimensions",
        "action",
        "normalised action units",
        "0 - 1.5 (gripper switch: 2-4)",
        "first two steps; non-finite a_t, a_{t-1} or a_{t-2}",
    )
)
def action_acceleration(x: StepInputs) -> Computed:
    return _norm(x.action - x.prev1 - (x.prev1 - x.prev2)), x.n_hist >= 2


@signal(
    SignalDefinition(
        "trajectory_divergence",
        "||chunk_k[t - s_k] - chunk_{k-1}[t - s_{k-1}]||_2: the current chunk's plan for step t against the "
        "previous chunk's plan for the same step (s_k = step at which chunk k was computed)",
        "chunk, chunk_id, chunk_offset",
        "normalised action units",
        "0 - 1.7",
        "before the second chunk; previous chunk does not cover step t (no overlap); non-finite plans",
    )
)
def trajectory_divergence(x: StepInputs) -> Computed:
    c = x.chunk.shape[1]
    idx = x.t - x.prev_start  # this step's position in the previous chunk
    clipped = np.minimum(np.maximum(idx, 0), c - 1)
    previous_plan = x.prev_chunk[x.rows, clipped]
    valid = (x.n_chunks >= 2) & (clipped == idx)  # idx in [0, C): the previous chunk covers step t
    return _norm(x.chunk[x.rows, x.chunk_offset] - previous_plan), valid


@signal(
    SignalDefinition(
        "latent_drift",
        "1 - cos(e_k, e_{k-1}): cosine distance between the observation embedding of the current chunk "
        "and that of the previous chunk (held for the steps served from the chunk's queue)",
        "obs_embedding, chunk_id",
        "cosine distance",
        "0 - 0.45",
        "before the second chunk; non-finite or zero embedding",
    ),
    per_chunk=True,
)
def latent_drift(x: ChunkInputs) -> Computed:
    e, e_old = x.embedding, x.prev_embedding
    cos = np.vecdot(e, e_old) / (_norm(e) * _norm(e_old))  # NaN for the first chunk (zeros)
    return 1.0 - cos, (x.n_chunks >= 2) & np.isfinite(cos)


@signal(
    SignalDefinition(
        "latent_norm_spike",
        "||h_t - m_{t-1}|| / ||m_{t-1}||: norm of the jump of h = hidden_step (output-layer input at this step's "
        "chunk position, last denoising step) away from m_{t-1}, the mean of h over the episode's earlier finite "
        "steps, relative to that mean's norm (scale-free, so it works after the expert's final LayerNorm/RMSNorm)",
        "hidden_step",
        "relative norm (ratio)",
        "0.3 - 3",
        "first step; non-finite hidden state",
    )
)
def latent_norm_spike(x: StepInputs) -> Computed:
    # ||h - S/c||^2 = ||h||^2 - 2 h.S / c + ||S||^2 / c^2 (c finite steps so far): no pass over H here
    cnt = x.n_hidden
    c = np.maximum(cnt, 1)
    mm = x.hidden_sum_sq / (c * c)
    d2 = np.maximum(x.hidden_sq - 2.0 * x.hidden_dot_sum / c + mm, 0.0)
    # mm > 0 implies an earlier finite step (S is zero until then); a non-finite h makes the value non-finite
    return np.sqrt(d2 / mm), mm > 0


@signal(
    SignalDefinition(
        "ood_distance",
        "sqrt((e - mu)^T Sigma^-1 (e - mu) / E): Mahalanobis distance of the observation embedding to a "
        "Ledoit-Wolf Gaussian fitted on successful training rollouts (frozen), per dimension",
        "obs_embedding, fitted statistics",
        "standard deviations per dimension (RMS)",
        "0.4 - 1.5",
        "non-finite embedding (unfitted extractor: NotFittedError)",
    ),
    per_chunk=True,
)
def ood_distance(x: ChunkInputs) -> Computed | None:
    if not x.ood.fitted:
        return None
    return ood_distance_of(x.ood, x.embedding)


def ood_distance_of(ood: GaussianStats, embedding: np.ndarray) -> Computed:
    """``ood_distance`` of embeddings ``(R, E)`` under a fitted Gaussian: the live signal's formula,
    also used to recompute the recorded column offline (``salus.signals.analysis.refit_ood``)."""
    d = ood.distance(embedding) / np.sqrt(embedding.shape[1])
    return d, np.isfinite(d)


def _token_probabilities(x: StepInputs) -> Computed | None:
    """The action-token softmax clipped at 0 (B, V) and its validity (B,), or None without tokens."""
    probs = x.token_probs
    if probs is None:
        return None
    return np.clip(probs, 0.0, None), np.asarray(np.isfinite(probs).all(axis=1))


def _entropy_of_tokens(x: StepInputs) -> Computed | None:
    p = _token_probabilities(x)
    return None if p is None else (entropy(p[0]), p[1])


def _max_token_probability(x: StepInputs) -> Computed | None:
    p = _token_probabilities(x)
    return None if p is None else (p[0].max(axis=1), p[1])


@signal(
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
    per_chunk=True,
    each_step=_entropy_of_tokens,
)
def sample_entropy(x: ChunkInputs) -> Computed | None:
    clusters = x.cluster_distribution()
    return None if clusters is None else (entropy(clusters[0]), clusters[1])


@signal(
    SignalDefinition(
        "max_sample_probability",
        "max_c p_c of the same distribution as sample_entropy (largest cluster's share of the K samples, or "
        "the largest action-token probability)",
        "samples (K >= 2) or action_token_probs",
        "probability",
        "1/K - 1",
        "K < 2 and no token probabilities; non-finite samples",
    ),
    per_chunk=True,
    each_step=_max_token_probability,
)
def max_sample_probability(x: ChunkInputs) -> Computed | None:
    clusters = x.cluster_distribution()
    return None if clusters is None else (clusters[0].max(axis=1), clusters[1])


@signal(
    SignalDefinition(
        "execution_mismatch",
        "||(p_t - p_{t-1}) / POSITION_ACTION_SCALE_M - clip(a_{t-1}[:3], -1, 1)||_2: achieved end-effector "
        "displacement against the commanded one of the previous step",
        "robot_state ee_pos, action (a robot description: ee_pos and ee_action_scale, else joint_pos and "
        "joint_target: ||(q_t - target_t) / joint range||_2)",
        "fraction of the maximum end-effector step",
        "0 - 1",
        "first step; non-finite positions or action; a robot description without either",
    )
)
def execution_mismatch(x: StepInputs) -> Computed:
    if x.joint_error is not None:  # a robot described by joint positions and commanded targets
        return x.joint_error, x.n_hist >= 1
    commanded = np.minimum(np.maximum(x.prev1[:, :3], -1.0), 1.0)
    return _norm((x.ee - x.prev_ee) / x.ee_scale - commanded), x.n_hist >= 1


# Constraint margin: the 7 joint positions and the 3 end-effector coordinates against their limits.
_LIMIT_LO = np.concatenate([JOINT_LOWER, WORKSPACE_LOW]).astype(np.float64)
_LIMIT_HI = np.concatenate([JOINT_UPPER, WORKSPACE_HIGH]).astype(np.float64)
_LIMIT_RANGE = _LIMIT_HI - _LIMIT_LO


@signal(
    SignalDefinition(
        "constraint_margin",
        "min(min_j min(q_j - lo_j, hi_j - q_j) / (hi_j - lo_j), min_i min(p_i - L_i, H_i - p_i) / (H_i - L_i)): "
        "smallest normalised distance to a joint limit or a workspace wall (negative outside)",
        "robot_state joint_pos and ee_pos, sim.spec limits (a robot description: its joint limits and workspace)",
        "fraction of the joint / workspace range",
        "0 - 0.4",
        "non-finite robot state; a robot description without limits",
    )
)
def constraint_margin(x: StepInputs) -> Computed:
    s = x.limit_state
    return (np.minimum(s - x.limit_lo, x.limit_hi - s) / x.limit_range).min(axis=1), x.always


@signal(
    SignalDefinition(
        "temporal_consistency",
        "||sum_{i<W} a_{t-i}[:3]|| / sum_{i<W} ||a_{t-i}[:3]||: mean resultant length of the last W commanded "
        "end-effector steps (1 = all in one direction, 0 = cancelling)",
        "action",
        "ratio",
        "0.5 - 1",
        "fewer than 2 steps; non-finite actions in the window; total commanded motion < min_motion",
    )
)
def temporal_consistency(x: StepInputs) -> Computed:
    total = x.window_norms.sum(axis=1)
    resultant = x.window[:, :, :3].sum(axis=1)
    valid = (x.n_window >= 2) & (total >= x.config.min_motion)
    return _norm(resultant) / total, valid


SIGNAL_FUNCTIONS: tuple[SignalFunction, ...] = tuple(_REGISTRY)
SIGNAL_DEFINITIONS: tuple[SignalDefinition, ...] = tuple(f.definition for f in SIGNAL_FUNCTIONS)
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
