"""Numerical building blocks shared by the signals and the baselines (numpy; sklearn only when fitting).

- :class:`GaussianStats`: a frozen Gaussian (mean + Ledoit-Wolf shrinkage covariance) scoring
  Mahalanobis distances through a whitening matrix.
- :func:`knn_distance`: mean distance to the k nearest reference rows (Euclidean or cosine).
- :func:`cluster_probabilities`: deterministic single-linkage clustering of K samples at a radius,
  returned as the cluster-assignment distribution (SAFE's cluster entropy uses this distribution).
- :func:`entropy`, :func:`pairwise_rms`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from salus.errors import InvalidInputError, NotFittedError

__all__ = [
    "GaussianStats",
    "knn_distance",
    "cluster_probabilities",
    "entropy",
    "pairwise_rms",
    "as_2d_finite",
]


def as_2d_finite(x: Any, what: str, dim: int | None = None) -> np.ndarray:
    """Validate a (N, D) float array of finite values (used by fitting code), returned as float64."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise InvalidInputError(f"{what} must be a 2-D array (N, D), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise InvalidInputError(f"{what} must have {dim} columns (the fitted width), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{what} contains {int((~np.isfinite(arr)).sum())} non-finite values")
    return arr


class GaussianStats:
    """Mean and shrinkage covariance of reference vectors; scores Mahalanobis distances.

    ``fit(X (N, D))`` estimates the covariance with Ledoit-Wolf shrinkage (or a fixed shrinkage in
    [0, 1]) and stores a whitening matrix W (D, D) with W W^T = Sigma^-1, so
    ``distance(x) = ||(x - mu) W||`` costs one (B, D) x (D, D) product.
    """

    def __init__(self, shrinkage: float | None = None) -> None:
        self.shrinkage = shrinkage
        self.mean: np.ndarray | None = None
        self.whitener: np.ndarray | None = None
        self.fitted_shrinkage: float | None = None

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    @property
    def dim(self) -> int:
        if self.mean is None:
            raise NotFittedError("GaussianStats has not been fitted; call fit(X) or load_state_dict()")
        return int(self.mean.shape[0])

    def fit(self, x: Any) -> GaussianStats:
        """Fit on reference rows X (N, D), N >= 2, all finite."""
        from sklearn.covariance import ledoit_wolf, shrunk_covariance

        arr = as_2d_finite(x, "reference embeddings")
        if arr.shape[0] < 2:
            raise InvalidInputError(f"need at least 2 reference rows to fit a covariance, got {arr.shape[0]}")
        mean = arr.mean(axis=0)
        if self.shrinkage is None:
            cov, shrink = ledoit_wolf(arr, assume_centered=False)
        else:
            centred = arr - mean
            emp = centred.T @ centred / arr.shape[0]
            cov, shrink = shrunk_covariance(emp, self.shrinkage), self.shrinkage
        evals, evecs = np.linalg.eigh(np.atleast_2d(cov))
        floor = max(float(evals.max()) * 1e-9, 1e-12)
        evals = np.maximum(evals, floor)
        self.mean = mean.astype(np.float32)
        self.whitener = (evecs / np.sqrt(evals)).astype(np.float32)
        self.fitted_shrinkage = float(shrink)
        return self

    def distance(self, x: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of rows x (B, D) -> (B,) float32; non-finite rows give NaN.

        Each row is whitened by its own (1, D) @ (D, D) product, so a row's distance has the same
        bits whatever B is (a (B, D) product lets BLAS pick its blocking by B)."""
        if self.mean is None or self.whitener is None:
            raise NotFittedError("GaussianStats has not been fitted; call fit(X) or load_state_dict()")
        z = ((np.asarray(x, dtype=np.float32) - self.mean)[:, None, :] @ self.whitener)[:, 0]
        return np.sqrt(np.einsum("bd,bd->b", z, z))

    def state_dict(self, prefix: str = "") -> dict[str, np.ndarray]:
        if self.mean is None or self.whitener is None:
            return {}
        return {
            f"{prefix}mean": self.mean,
            f"{prefix}whitener": self.whitener,
            f"{prefix}shrinkage": np.asarray([self.fitted_shrinkage], dtype=np.float64),
        }

    def load_state_dict(self, state: dict[str, np.ndarray], prefix: str = "") -> None:
        keys = [f"{prefix}mean", f"{prefix}whitener"]
        missing = [k for k in keys if k not in state]
        if missing:
            raise InvalidInputError(f"Gaussian statistics are missing {missing}; present: {sorted(state)}")
        mean = np.asarray(state[keys[0]], dtype=np.float32)
        whitener = np.asarray(state[keys[1]], dtype=np.float32)
        if mean.ndim != 1 or whitener.shape != (mean.shape[0], mean.shape[0]):
            raise InvalidInputError(
                f"Gaussian statistics must be mean (D,) and whitener (D, D), got {mean.shape} and {whitener.shape}"
            )
        self.mean, self.whitener = mean, whitener
        shrink = state.get(f"{prefix}shrinkage")
        self.fitted_shrinkage = None if shrink is None else float(np.asarray(shrink).reshape(-1)[0])


def prepare_knn_reference(reference: np.ndarray, metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """The reference rows as :func:`knn_distance` uses them (float32, L2-normalised for "cosine")
    and their squared norms: computed once by a fitted scorer instead of at every query."""
    ref = np.asarray(reference, dtype=np.float32)
    if metric == "cosine":
        ref = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(ref), np.einsum("nd,nd->n", ref, ref)


def knn_distance(
    reference: np.ndarray,
    query: np.ndarray,
    k: int,
    metric: str = "euclidean",
    block: int | None = None,
    prepared: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Mean distance of each query row (M, D) to its k nearest reference rows (N, D) -> (M,).

    ``metric`` "euclidean" or "cosine" (1 - cosine similarity; rows are L2-normalised first). Brute
    force, float32, in blocks of ``block`` queries (default: about 8 M distances, 32 MB, per block).
    ``prepared``: :func:`prepare_knn_reference` of ``reference`` for ``metric`` (same numbers, faster).
    """
    ref, ref_sq = prepared if prepared is not None else prepare_knn_reference(reference, metric)
    qry = np.asarray(query, dtype=np.float32)
    kk = min(k, ref.shape[0])
    if metric == "cosine":
        qry = qry / np.maximum(np.linalg.norm(qry, axis=1, keepdims=True), 1e-12)
    if block is None:
        block = max(1, (8 << 20) // max(ref.shape[0], 1))
    out = np.empty(qry.shape[0], dtype=np.float32)
    for start in range(0, qry.shape[0], block):
        q = qry[start : start + block]
        if metric == "cosine":
            d = 1.0 - q @ ref.T
        else:
            d2 = np.einsum("md,md->m", q, q)[:, None] + ref_sq[None, :] - 2.0 * (q @ ref.T)
            d = np.sqrt(np.maximum(d2, 0.0))
        part = np.partition(d, kk - 1, axis=1)[:, :kk] if kk < d.shape[1] else d
        out[start : start + block] = part.mean(axis=1)
    return np.maximum(out, 0.0)


def pairwise_rms(x: np.ndarray) -> np.ndarray:
    """RMS distance between the K rows of each batch: x (B, K, D) -> (B, K, K), sqrt(||x_i - x_j||^2 / D)."""
    x = np.asarray(x, dtype=np.float64)
    gram = x @ x.transpose(0, 2, 1)
    sq = np.diagonal(gram, axis1=1, axis2=2)
    d2 = sq[:, :, None] + sq[:, None, :] - 2.0 * gram
    return np.sqrt(np.maximum(d2, 0.0) / x.shape[-1])


def cluster_probabilities(x: np.ndarray, radius: float) -> np.ndarray:
    """Cluster-assignment distribution of K samples per batch row: x (B, K, D) -> (B, K).

    Deterministic single-linkage clustering: two samples are linked when their RMS distance is
    <= ``radius``; clusters are the connected components (independent of sample order). Entry c of
    the result is the share of samples in the cluster whose smallest member index is c (zero for
    indices that are not a cluster's smallest member), so each row sums to 1.
    """
    k = x.shape[1]
    reach = (pairwise_rms(x) <= radius).astype(np.float32)
    # Transitive closure by repeated squaring: after ceil(log2 K) products, reach[i, j] = connected.
    for _ in range(max(1, int(np.ceil(np.log2(max(k, 2)))))):
        reach = np.minimum(reach @ reach, 1.0)
    label = np.argmax(reach > 0, axis=-1)  # (B, K): smallest index in each sample's component
    counts = (label[:, :, None] == np.arange(k)).sum(axis=1)  # (B, K) members per smallest index
    return counts / float(k)


def entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats of distributions along the last axis (0 log 0 = 0): (..., n) -> (...)."""
    p = np.asarray(p, dtype=np.float64)
    logp = np.log(np.where(p > 0, p, 1.0))
    return 0.0 - (p * logp).sum(axis=-1)  # 0.0 - x turns -0.0 into 0.0
