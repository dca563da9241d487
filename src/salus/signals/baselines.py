"""The published failure-detection scores (SAFE, FAIL-Detect, Sentinel/STAC, FIPER), computed by salus.

Two kinds, both "higher = more likely to fail", so an evaluation ranks them like any predictor:

- online scores, per control step from the policy's internals (:class:`OnlineBaselines`, names
  :data:`ONLINE_BASELINE_NAMES`): action total variance of K sampled chunks, STAC (MMD between
  the overlapping parts of consecutive chunk batches), STAC-single (distance between the
  overlapping parts of consecutive executed chunks), FIPER's action-chunk entropy;
- embedding scores, fitted on successful training rollouts' observation embeddings and scored on
  arrays (:class:`EmbeddingScorer`, names :data:`EMBEDDING_BASELINE_NAMES`): Mahalanobis (Ledoit-
  Wolf), kNN Euclidean and kNN cosine distance, and FAIL-Detect's two best scores, RND and logpZO,
  small networks trained on the successes (``salus.signals.learned``).

Online scores are computed when a chunk is computed and held for the steps served from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from salus.errors import CheckpointError, InvalidInputError, InvalidNameError, NotFittedError
from salus.signals.learned import LEARNED_EMBEDDING_NAMES, LearnedConfig, make_learned
from salus.signals.stats import GaussianStats, as_2d_finite, knn_distance, prepare_knn_reference

__all__ = [
    "ONLINE_BASELINE_NAMES",
    "EMBEDDING_BASELINE_NAMES",
    "BASELINE_DEFINITIONS",
    "BaselineConfig",
    "BaselineStep",
    "OnlineBaselines",
    "EmbeddingScorer",
    "action_total_variance",
    "fiper_chunk_entropy",
    "mmd_rbf",
]

ONLINE_BASELINE_NAMES: tuple[str, ...] = (
    "action_total_variance",
    "stac",
    "stac_single",
    "fiper_chunk_entropy",
)
EMBEDDING_BASELINE_NAMES: tuple[str, ...] = (
    "mahalanobis",
    "knn_euclidean",
    "knn_cosine",
    *LEARNED_EMBEDDING_NAMES,
)

BASELINE_DEFINITIONS: dict[str, str] = {
    "action_total_variance": "mean over chunk positions of sum over action dims of Var_K(samples) (SAFE's baseline, K samples)",
    "stac": "biased MMD^2, RBF kernel (median-heuristic bandwidth), between the K samples of the previous and the "
    "current chunk batch restricted to the steps both cover (Sentinel's STAC)",
    "stac_single": "RMS difference between the previous and the current executed chunk over the steps both cover "
    "(STAC-single)",
    "fiper_chunk_entropy": "leave-one-out Gaussian-KDE entropy (nats) of the K sampled actions at each chunk "
    "position, averaged over positions (FIPER's action-chunk entropy)",
    "mahalanobis": "Mahalanobis distance of the observation embedding to a Ledoit-Wolf Gaussian of successful rollouts",
    "knn_euclidean": "mean Euclidean distance to the k nearest successful-rollout embeddings",
    "knn_cosine": "mean cosine distance (1 - cos) to the k nearest successful-rollout embeddings",
    "rnd": "random network distillation (FAIL-Detect's RND): L2 error of an MLP trained on successful-rollout "
    "embeddings (standardised) to match a frozen random MLP",
    "logpzo": "FAIL-Detect's logpZO: squared norm of the standardised embedding pushed by one Euler step to the "
    "noise end of a flow-matching model trained from successful-rollout embeddings to N(0, I)",
}


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of the online baselines: ``fiper_bandwidth`` is the KDE bandwidth in action units."""

    fiper_bandwidth: float = 0.05

    def __post_init__(self) -> None:
        if not self.fiper_bandwidth > 0:
            raise InvalidInputError(f"fiper_bandwidth must be > 0, got {self.fiper_bandwidth!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BaselineStep:
    """Online baseline scores of one control step: ``values`` (B, nb) float32 finite, ``valid`` (B, nb)."""

    values: np.ndarray
    valid: np.ndarray
    names: tuple[str, ...]


def action_total_variance(samples: np.ndarray) -> np.ndarray:
    """samples (R, K, C, A) -> (R,): mean over C of the sum over A of the variance over K (ddof 0)."""
    return np.asarray(samples, dtype=np.float64).var(axis=1).sum(axis=-1).mean(axis=-1)


def fiper_chunk_entropy(samples: np.ndarray, bandwidth: float) -> np.ndarray:
    """samples (R, K, C, A), K >= 2 -> (R,) leave-one-out KDE entropy per position, averaged over C.

    H_c = -1/K sum_i log( 1/(K-1) sum_{j != i} N(x_i; x_j, h^2 I_A) ) with x the K actions at position c.
    """
    x = np.moveaxis(np.asarray(samples, dtype=np.float64), 1, 2)  # (R, C, K, A)
    k, a = x.shape[2], x.shape[3]
    sq = np.einsum("rcka,rcka->rck", x, x)
    d2 = np.maximum(sq[..., :, None] + sq[..., None, :] - 2.0 * np.einsum("rcia,rcja->rcij", x, x), 0.0)
    logk = -d2 / (2.0 * bandwidth**2) - 0.5 * a * np.log(2.0 * np.pi * bandwidth**2)
    logk[..., np.arange(k), np.arange(k)] = -np.inf
    m = logk.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(logk - m).sum(axis=-1))
    log_density = lse - np.log(k - 1)  # (R, C, K)
    return -log_density.mean(axis=-1).mean(axis=-1)


def mmd_rbf(x: np.ndarray, y: np.ndarray) -> float:
    """Biased MMD^2 between sample sets x (n, D) and y (m, D), RBF kernel, bandwidth^2 = median pooled sq. distance."""
    z = np.concatenate([x, y]).astype(np.float64)
    sq = np.einsum("nd,nd->n", z, z)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    off = d2[~np.eye(z.shape[0], dtype=bool)]
    h2 = float(np.median(off)) if off.size else 0.0
    if h2 <= 1e-12:
        h2 = 1e-12
    kern = np.exp(-d2 / (2.0 * h2))
    n = x.shape[0]
    return float(kern[:n, :n].mean() + kern[n:, n:].mean() - 2.0 * kern[:n, n:].mean())


class OnlineBaselines:
    """Streaming online baseline scores for B parallel episodes, like :class:`SignalExtractor`.

    ``step(internals) -> BaselineStep`` with ``values`` (B, len(names)). Scores needing K samples
    are invalid (0) when the policy runs with K < 2; STAC and STAC-single need two chunks that cover
    a common step (the policy must re-plan before its chunk is used up).
    """

    def __init__(
        self,
        batch_size: int,
        names: tuple[str, ...] | list[str] = ONLINE_BASELINE_NAMES,
        config: BaselineConfig | None = None,
    ) -> None:
        if not isinstance(batch_size, int | np.integer) or int(batch_size) < 1:
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
        for name in names:
            if name not in ONLINE_BASELINE_NAMES:
                raise InvalidNameError("online baseline", name, ONLINE_BASELINE_NAMES)
        if len(names) == 0:
            raise InvalidInputError(f"names must not be empty; valid: {', '.join(ONLINE_BASELINE_NAMES)}")
        self.batch_size = int(batch_size)
        self.names = tuple(names)
        self.config = config if config is not None else BaselineConfig()
        self._cols = [ONLINE_BASELINE_NAMES.index(n) for n in self.names]
        b = self.batch_size
        self._t = np.zeros(b, dtype=np.int64)
        self._cur_id = np.zeros(b, dtype=np.int64)
        self._cur_start = np.zeros(b, dtype=np.int64)
        self._nchunks = np.zeros(b, dtype=np.int64)
        self._chunks: list[np.ndarray | None] = [None] * b
        self._samples: list[np.ndarray | None] = [None] * b
        self._held = np.zeros((b, len(ONLINE_BASELINE_NAMES)))
        self._held_ok = np.zeros((b, len(ONLINE_BASELINE_NAMES)), dtype=bool)

    def reset(self, env_index: int | None = None) -> None:
        """Start a new episode for all environments, or for one."""
        rows = range(self.batch_size) if env_index is None else [int(env_index)]
        for r in rows:
            if not 0 <= r < self.batch_size:
                raise InvalidInputError(f"env_index must be in [0, {self.batch_size}), got {r}")
            self._t[r] = 0
            self._nchunks[r] = 0
            self._chunks[r] = None
            self._samples[r] = None
            self._held[r] = 0.0
            self._held_ok[r] = False

    def step(self, internals: Any) -> BaselineStep:
        """Scores of one control step; ``internals`` is the step's StepInternals (batch B)."""
        b = self.batch_size
        chunk = np.asarray(internals.chunk)
        cid = np.asarray(internals.chunk_id)
        off = np.asarray(internals.chunk_offset)
        new = np.asarray(internals.new_chunk)
        if chunk.ndim != 3 or chunk.shape[0] != b:
            raise InvalidInputError(f"StepInternals.chunk must have shape (B={b}, C, A), got {chunk.shape}")
        for name, arr in (("chunk_id", cid), ("chunk_offset", off), ("new_chunk", new)):
            if arr.shape != (b,):
                raise InvalidInputError(f"StepInternals.{name} must have shape (B={b},), got {arr.shape}")
        samples = internals.samples
        if samples is not None:
            samples = np.asarray(samples)
            if samples.ndim != 4 or samples.shape[0] != b or samples.shape[3] != chunk.shape[2]:
                raise InvalidInputError(
                    f"StepInternals.samples must have shape (B={b}, K, C, A={chunk.shape[2]}), got {samples.shape}"
                )
        changed = (self._t == 0) | new.astype(bool) | (cid != self._cur_id)
        with np.errstate(invalid="ignore", over="ignore"):
            for r in np.flatnonzero(changed):
                self._new_chunk(
                    int(r), chunk[r], None if samples is None else samples[r], int(self._t[r] - off[r])
                )
        self._cur_id[changed] = cid[changed]
        self._t += 1
        vals = self._held[:, self._cols]
        ok = self._held_ok[:, self._cols] & np.isfinite(vals)
        return BaselineStep(values=np.where(ok, vals, 0.0).astype(np.float32), valid=ok, names=self.names)

    def _new_chunk(self, r: int, chunk: np.ndarray, samples: np.ndarray | None, start: int) -> None:
        chunk = chunk.astype(np.float64)
        prev_chunk, prev_samples = self._chunks[r], self._samples[r]
        shift = start - int(self._cur_start[r])
        had_prev = self._nchunks[r] >= 1
        self._held_ok[r] = False
        has_k = samples is not None and samples.shape[0] >= 2
        s = None if not has_k else np.asarray(samples, dtype=np.float64)
        if s is not None and np.isfinite(s).all():
            self._held[r, 0] = action_total_variance(s[None])[0]
            self._held_ok[r, 0] = True
            self._held[r, 3] = fiper_chunk_entropy(s[None], self.config.fiper_bandwidth)[0]
            self._held_ok[r, 3] = True
        if had_prev and prev_chunk is not None and shift > 0:
            n = min(chunk.shape[0], prev_chunk.shape[0] - shift)  # steps both chunks cover
            if n > 0:
                diff = chunk[:n] - prev_chunk[shift : shift + n]
                self._held[r, 2] = np.sqrt(np.mean(diff**2))
                self._held_ok[r, 2] = True
                if s is not None and prev_samples is not None:
                    x = prev_samples[:, shift : shift + n].reshape(prev_samples.shape[0], -1)
                    y = s[:, :n].reshape(s.shape[0], -1)
                    if np.isfinite(x).all() and np.isfinite(y).all():
                        self._held[r, 1] = mmd_rbf(x, y)
                        self._held_ok[r, 1] = True
        self._chunks[r] = chunk
        self._samples[r] = s
        self._cur_start[r] = start
        self._nchunks[r] += 1


class EmbeddingScorer:
    """Distance of observation embeddings to successful training rollouts: ``fit(X).score(X)``.

    ``name`` in :data:`EMBEDDING_BASELINE_NAMES`; ``k`` neighbours for the kNN scores (kept, unused,
    by the others). ``fit(X (N, E))`` then ``score(X (M, E)) -> (M,)`` float32, higher = further
    from success data. ``rnd`` and ``logpzo`` train small networks (``salus.signals.learned``):
    ``seed`` seeds them (the same data and seed give the same weights), ``learned`` sizes them.
    """

    def __init__(
        self,
        name: str,
        k: int = 5,
        shrinkage: float | None = None,
        seed: int = 0,
        learned: LearnedConfig | None = None,
    ) -> None:
        if name not in EMBEDDING_BASELINE_NAMES:
            raise InvalidNameError("embedding baseline", name, EMBEDDING_BASELINE_NAMES)
        if not isinstance(k, int) or k < 1:
            raise InvalidInputError(f"k must be a positive int, got {k!r}")
        self.name = name
        self.k = k
        self._gauss = GaussianStats(shrinkage=shrinkage)
        self._reference: np.ndarray | None = None
        self._prepared: tuple[np.ndarray, np.ndarray] | None = None  # the reference as knn_distance uses it
        self._learned = make_learned(name, learned, seed) if name in LEARNED_EMBEDDING_NAMES else None

    @property
    def fitted(self) -> bool:
        if self._learned is not None:
            return self._learned.fitted
        return self._gauss.fitted if self.name == "mahalanobis" else self._reference is not None

    @property
    def dim(self) -> int:
        if self._learned is not None:
            return self._learned.dim
        if self.name == "mahalanobis":
            return self._gauss.dim
        if self._reference is None:
            raise NotFittedError(f"EmbeddingScorer({self.name!r}) has not been fitted; call fit(X)")
        return int(self._reference.shape[1])

    def fit(self, x: Any) -> EmbeddingScorer:
        """Fit on successful rollouts' embeddings X (N, E), all finite."""
        arr = as_2d_finite(x, "embeddings")
        if arr.shape[0] < (1 if self.name.startswith("knn") else 2):
            raise InvalidInputError(f"need more reference embeddings to fit {self.name}, got {arr.shape[0]}")
        if self._learned is not None:
            self._learned.fit(arr)
        elif self.name == "mahalanobis":
            self._gauss.fit(arr)
        else:
            self._reference = arr.astype(np.float32)
            self._prepared = None
        return self

    def score(self, x: Any) -> np.ndarray:
        """Scores of embeddings X (M, E) -> (M,) float32 (NaN for non-finite rows)."""
        if not self.fitted:
            raise NotFittedError(f"EmbeddingScorer({self.name!r}) has not been fitted; call fit(X) first")
        arr = np.asarray(x, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise InvalidInputError(f"embeddings must have shape (M, {self.dim}), got {arr.shape}")
        finite = np.isfinite(arr).all(axis=1)
        out = np.full(arr.shape[0], np.nan, dtype=np.float32)
        if finite.any():
            if self._learned is not None:
                out[finite] = self._learned.score(arr[finite])
            elif self.name == "mahalanobis":
                out[finite] = self._gauss.distance(arr[finite])
            else:
                assert self._reference is not None
                metric = "cosine" if self.name == "knn_cosine" else "euclidean"
                if self._prepared is None:
                    self._prepared = prepare_knn_reference(self._reference, metric)
                out[finite] = knn_distance(
                    self._reference, arr[finite], self.k, metric, prepared=self._prepared
                )
        return out

    def state_dict(self) -> dict[str, Any]:
        """``{"name", "k", "tensors"}``; the kNN scorers keep their reference embeddings, the learned
        scores their standardisation and weights (``rnd.*``, ``flow.*``)."""
        if not self.fitted:
            raise NotFittedError(f"EmbeddingScorer({self.name!r}) has not been fitted; nothing to save")
        if self._learned is not None:
            tensors: dict[str, Any] = self._learned.state_dict()
        elif self.name == "mahalanobis":
            tensors = self._gauss.state_dict("gauss.")
        else:
            tensors = {"reference": self._reference}
        return {"name": self.name, "k": self.k, "tensors": tensors}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> EmbeddingScorer:
        try:
            scorer = cls(str(state["name"]), k=int(state["k"]))
            tensors = state["tensors"]
            if scorer._learned is not None:
                scorer._learned.load_state_dict(tensors)
            elif scorer.name == "mahalanobis":
                scorer._gauss.load_state_dict(tensors, prefix="gauss.")
            else:
                scorer._reference = np.asarray(tensors["reference"], dtype=np.float32)
                scorer._prepared = None
        except KeyError as exc:
            raise CheckpointError(f"embedding scorer state is missing {exc}") from exc
        return scorer
