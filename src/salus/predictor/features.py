"""Per-step input features of the predictors, fitted on training episodes only.

One :class:`FeatureSpace` turns an episode's recorded arrays into the network input ``(T, D)``
and, step by step for the runtime monitor, a batch of observations into ``(B, D)``. Its groups
(``FEATURE_GROUPS``) are what the ablation table switches on and off:

- ``signals``: the 12 signals z-scored on training steps (0 where invalid) and their valid flags (24).
- ``baselines``: the online baseline scores (action variance, STAC, STAC-single, FIPER entropy),
  z-scored, with finite flags (2 nb).
- ``state``: the robot state (22), z-scored.
- ``embedding``: the observation embedding projected on its first ``pca`` principal components
  (whitened), fitted on training steps.
- ``hidden``: the same for the policy's hidden state at the output layer (when recorded).
- ``knn``: distances of the observation embedding to successful *training* steps: kNN cosine,
  kNN Euclidean (``salus.signals.EmbeddingScorer``, k = 5) and Mahalanobis, log-scaled, z-scored.
  Training episodes are scored cross-fitted: episode e's distances use a reference sampled from the
  successes of the other folds, of the same size as the deployed reference, so a training success is
  never its own neighbour and training and test features have the same distribution.
- ``privileged`` (oracle only, not deployable): simulator state ``spec.PRIVILEGED_NAMES`` and the
  episode's perturbation strengths (one column per perturbation name).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from salus.errors import CheckpointError, DatasetError, InvalidInputError, InvalidNameError

from .config import DEPLOYABLE_GROUPS, FEATURE_GROUPS
from .episodes import Episode

__all__ = ["FEATURE_GROUPS", "DEPLOYABLE_GROUPS", "GROUP_STEP_KEYS", "FeatureSpace", "perturbation_vector"]

# The ``Episode`` field each group reads, where it is optional (``signals`` is always there).
GROUP_STEP_KEYS: dict[str, str] = {
    "baselines": "baselines",
    "state": "state",
    "embedding": "embedding",
    "hidden": "hidden",
    "knn": "embedding",
    "privileged": "privileged",
}
KNN_SCORERS: tuple[str, ...] = ("knn_cosine", "knn_euclidean", "mahalanobis")
CLIP = 20.0


def perturbation_vector(perturbations: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """``(n_perturbation_names,)`` float32: each perturbation's strength (0 when absent)."""
    from salus.sim import PERTURBATION_NAMES

    out = np.zeros(len(PERTURBATION_NAMES), dtype=np.float32)
    for p in perturbations:
        name = str(p.get("name", ""))
        if name in PERTURBATION_NAMES:
            out[PERTURBATION_NAMES.index(name)] = float(p.get("strength", 0.0))
    return out


def _digest(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def _zfit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    cnt = np.maximum(ok.sum(axis=0), 1)
    mean = np.where(ok, x, 0.0).sum(axis=0) / cnt
    var = np.where(ok, (x - mean) ** 2, 0.0).sum(axis=0) / cnt
    std = np.sqrt(var)
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def _z(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """z-score clipped to [-CLIP, CLIP]; NaN -> 0, +-inf -> +-CLIP (the clip maps the infinities:
    ``nan_to_num`` runs only when a NaN is present, a per-step saving of the monitor)."""
    z = (np.asarray(x, dtype=np.float32) - mean) / std
    z = np.clip(z, -CLIP, CLIP).astype(np.float32, copy=False)
    if np.isnan(z).any():
        z = np.nan_to_num(z, nan=0.0)
    return z


def _pca_fit(x: np.ndarray, k: int) -> dict[str, np.ndarray]:
    x = np.nan_to_num(np.asarray(x, dtype=np.float64))
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    k = min(k, vt.shape[0])
    scale = s[:k] / np.sqrt(max(len(x) - 1, 1))
    return {
        "mean": mean.astype(np.float32),
        "components": vt[:k].astype(np.float32),
        "scale": np.where(scale > 1e-6, scale, 1.0).astype(np.float32),
    }


def _pca(x: np.ndarray, p: Mapping[str, np.ndarray]) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        x = np.nan_to_num(x)
    y = (x - p["mean"]) @ p["components"].T / p["scale"]
    return np.clip(y, -CLIP, CLIP).astype(np.float32, copy=False)


@dataclass
class FeatureSpace:
    """Fitted feature groups; ``transform(episode) -> (T, D)``, ``step(...) -> (B, D)``."""

    groups: tuple[str, ...]
    pca: int = 16
    knn_reference: int = 2000
    knn_folds: int = 5
    seed: int = 0
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    scorers: dict[str, Any] = field(default_factory=dict)
    dim: int = 0

    def __post_init__(self) -> None:
        bad = [g for g in self.groups if g not in FEATURE_GROUPS]
        if bad:
            raise InvalidNameError("feature group", bad[0], FEATURE_GROUPS)
        if not self.groups:
            raise InvalidInputError(f"at least one feature group is needed; groups: {FEATURE_GROUPS}")
        self.groups = tuple(g for g in FEATURE_GROUPS if g in self.groups)
        if self.pca < 1 or self.knn_reference < 10 or self.knn_folds < 2:
            raise InvalidInputError("pca must be >= 1, knn_reference >= 10 and knn_folds >= 2")

    @property
    def deployable(self) -> bool:
        return "privileged" not in self.groups

    # ------------------------------------------------------------------------------- fitting
    def fit(self, episodes: Sequence[Episode]) -> FeatureSpace:
        """Fit every group's statistics on the training ``episodes``."""
        for g in self.groups:
            attr = GROUP_STEP_KEYS.get(g)
            if attr and any(getattr(ep, attr) is None for ep in episodes):
                raise DatasetError(
                    f"feature group {g!r} needs the step key {attr!r} in every episode; "
                    f"collect with it (e.g. --save-hidden for 'hidden') or drop the group"
                )
        rng = np.random.default_rng(self.seed)
        st: dict[str, np.ndarray] = {}
        if "signals" in self.groups:
            sig = np.concatenate([np.where(ep.valid, ep.signals, np.nan) for ep in episodes])
            st["signals.mean"], st["signals.std"] = _zfit(sig)
        if "baselines" in self.groups:
            st["baselines.mean"], st["baselines.std"] = _zfit(
                np.concatenate([ep.baselines for ep in episodes])
            )  # type: ignore[misc]
        if "state" in self.groups:
            st["state.mean"], st["state.std"] = _zfit(np.concatenate([ep.state for ep in episodes]))  # type: ignore[misc]
        for g, attr in (("embedding", "embedding"), ("hidden", "hidden")):
            if g in self.groups:
                x = np.concatenate([getattr(ep, attr) for ep in episodes])
                x = x[rng.choice(len(x), min(len(x), 20000), replace=False)]
                for k, v in _pca_fit(x, self.pca).items():
                    st[f"{g}.{k}"] = v
        if "privileged" in self.groups:
            priv = np.concatenate([self._privileged(ep) for ep in episodes])
            st["privileged.mean"], st["privileged.std"] = _zfit(priv)
        self.stats = st
        self._train_knn: dict[int, np.ndarray] | None = None
        if "knn" in self.groups:
            self._fit_knn(episodes, rng)
        self.dim = int(self.transform(episodes[0]).shape[1])
        return self

    def _reference(self, episodes: Sequence[Episode], rng: np.random.Generator) -> np.ndarray:
        ref = np.concatenate([ep.embedding for ep in episodes if ep.success])  # type: ignore[misc]
        ref = ref[np.isfinite(ref).all(axis=1)]
        if len(ref) < 10:
            raise DatasetError("the knn features need successful training episodes with embeddings")
        return ref[rng.choice(len(ref), min(len(ref), self.knn_reference), replace=False)]

    def _scorers(self, ref: np.ndarray) -> dict[str, Any]:
        from salus.signals import EmbeddingScorer

        return {name: EmbeddingScorer(name).fit(ref) for name in KNN_SCORERS}

    @staticmethod
    def _raw_knn(scorers: Mapping[str, Any], emb: np.ndarray) -> np.ndarray:
        cols = [np.log(np.maximum(scorers[n].score(emb).astype(np.float64), 0.0) + 1e-6) for n in KNN_SCORERS]
        return np.stack(cols, axis=1).astype(np.float32)

    def _fit_knn(self, episodes: Sequence[Episode], rng: np.random.Generator) -> None:
        """The deployed reference from all training successes; cross-fitted training features
        (cached on the episodes: models trained on the same split share them)."""
        ref = self._reference(episodes, rng)
        self.scorers = self._scorers(ref)
        self._digest = _digest(ref)
        key = f"knn-xfit:{self._digest}:{self.knn_folds}"
        fold = rng.integers(0, self.knn_folds, size=len(episodes))
        if not all(key in ep.cache for ep in episodes):
            for k in range(self.knn_folds):
                members = [i for i in range(len(episodes)) if fold[i] == k]
                if not members:
                    continue
                others = [episodes[i] for i in range(len(episodes)) if fold[i] != k]
                scorers = self._scorers(self._reference(others, rng))
                for i in members:
                    episodes[i].cache[key] = self._raw_knn(scorers, episodes[i].embedding)  # type: ignore[arg-type]
        raw = [ep.cache[key] for ep in episodes]
        allraw = np.concatenate(raw)
        self.stats["knn.mean"], self.stats["knn.std"] = _zfit(allraw)
        # Cross-fitted features of the training episodes, by identity (``transform`` uses them).
        self._train_knn = {id(ep): r for ep, r in zip(episodes, raw, strict=True)}

    def forget_training_cache(self) -> None:
        """Drop the cross-fitted training features (after training, before scoring held-out data)."""
        self._train_knn = None

    # ----------------------------------------------------------------------------- transform
    @staticmethod
    def _privileged(ep: Episode) -> np.ndarray:
        pv = perturbation_vector(ep.perturbations)
        return np.concatenate([ep.privileged, np.broadcast_to(pv, (ep.length, pv.size))], axis=1)  # type: ignore[list-item]

    def transform(self, ep: Episode) -> np.ndarray:
        """Network input ``(T, D)`` float32 of one episode."""
        knn = None
        if "knn" in self.groups:
            cache = getattr(self, "_train_knn", None)
            knn = cache.get(id(ep)) if cache else None
            if knn is None:
                digest = getattr(self, "_digest", None) or _digest(
                    self.scorers["knn_cosine"].state_dict()["tensors"]["reference"]
                )
                self._digest = digest
                key = f"knn:{digest}"
                if key not in ep.cache:
                    ep.cache[key] = self._raw_knn(self.scorers, ep.embedding)  # type: ignore[arg-type]
                knn = ep.cache[key]
        return self._assemble(
            signals=ep.signals,
            valid=ep.valid,
            baselines=ep.baselines,
            state=ep.state,
            embedding=ep.embedding,
            hidden=ep.hidden,
            knn_raw=knn,
            privileged=self._privileged(ep) if "privileged" in self.groups else None,
        )

    def step(self, inputs: Mapping[str, np.ndarray | None]) -> np.ndarray:
        """One control step for B environments: ``inputs`` maps ``signals`` (B, 12), ``valid``
        (B, 12), ``baselines`` (B, nb), ``state`` (B, 22), ``embedding`` (B, E), ``hidden`` (B, H)
        to arrays (those the groups need) -> ``(B, D)``."""
        if not self.deployable:
            raise InvalidInputError(
                "an oracle feature space reads privileged simulator state; it cannot stream"
            )
        emb = inputs.get("embedding")
        knn = self._raw_knn(self.scorers, np.asarray(emb, np.float32)) if "knn" in self.groups else None
        return self._assemble(
            signals=inputs.get("signals"),
            valid=inputs.get("valid"),
            baselines=inputs.get("baselines"),
            state=inputs.get("state"),
            embedding=emb,
            hidden=inputs.get("hidden"),
            knn_raw=knn,
            privileged=None,
        )

    def _assemble(self, **x: Any) -> np.ndarray:
        st, parts = self.stats, []
        for g in self.groups:
            if g == "signals":
                sig = np.asarray(x["signals"], np.float32)
                ok = np.asarray(x["valid"], bool) & np.isfinite(sig)
                parts += [
                    np.where(ok, _z(sig, st["signals.mean"], st["signals.std"]), 0.0),
                    ok.astype(np.float32),
                ]
            elif g in ("baselines", "state"):
                v = x[g]
                if v is None:
                    raise InvalidInputError(f"feature group {g!r} needs {g!r} inputs")
                v = np.asarray(v, np.float32)
                width = np.shape(st[f"{g}.mean"])[-1]
                if v.shape[-1] != width:
                    raise InvalidInputError(
                        f"feature group {g!r} was fitted on {width} values per step, got {v.shape[-1]} "
                        f"(shape {v.shape})"
                    )
                parts.append(_z(v, st[f"{g}.mean"], st[f"{g}.std"]))
                if g == "baselines":
                    parts.append(np.isfinite(v).astype(np.float32))
            elif g in ("embedding", "hidden"):
                v = x[g]
                if v is None:
                    raise InvalidInputError(f"feature group {g!r} needs {g!r} inputs")
                parts.append(_pca(v, {k: st[f"{g}.{k}"] for k in ("mean", "components", "scale")}))
            elif g == "knn":
                parts.append(_z(x["knn_raw"], st["knn.mean"], st["knn.std"]))
            elif g == "privileged":
                parts.append(_z(x["privileged"], st["privileged.mean"], st["privileged.std"]))
        return np.concatenate([np.asarray(p, np.float32) for p in parts], axis=-1)

    # ---------------------------------------------------------------------------- persistence
    def config_dict(self) -> dict[str, Any]:
        return {
            "groups": list(self.groups),
            "pca": self.pca,
            "knn_reference": self.knn_reference,
            "knn_folds": self.knn_folds,
            "seed": self.seed,
            "dim": self.dim,
        }

    def tensors(self) -> dict[str, np.ndarray]:
        """Every fitted array (for safetensors): statistics and the kNN reference."""
        out = {f"stats.{k}": np.ascontiguousarray(v) for k, v in self.stats.items()}
        if self.scorers:
            for name, sc in self.scorers.items():
                for k, v in sc.state_dict()["tensors"].items():
                    out[f"scorer.{name}.{k}"] = np.ascontiguousarray(v)
        return out

    @classmethod
    def restore(cls, config: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> FeatureSpace:
        """Inverse of ``config_dict`` + ``tensors``; ``CheckpointError`` names what is missing."""
        from salus.signals import EmbeddingScorer

        try:
            fs = cls(
                groups=tuple(config["groups"]),
                pca=int(config["pca"]),
                knn_reference=int(config["knn_reference"]),
                knn_folds=int(config["knn_folds"]),
                seed=int(config["seed"]),
                dim=int(config["dim"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"feature space config is malformed ({exc}): {json.dumps(dict(config))[:200]}"
            ) from exc
        fs.stats = {k[len("stats.") :]: np.asarray(v) for k, v in tensors.items() if k.startswith("stats.")}
        if "knn" in fs.groups:
            for name in KNN_SCORERS:
                prefix = f"scorer.{name}."
                t = {k[len(prefix) :]: np.asarray(v) for k, v in tensors.items() if k.startswith(prefix)}
                if not t:
                    raise CheckpointError(f"feature space lacks the {name} reference tensors")
                fs.scorers[name] = EmbeddingScorer.from_state_dict({"name": name, "k": 5, "tensors": t})
        return fs
