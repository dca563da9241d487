"""The training-free baselines as predictor checkpoints, so that each runs live like any model.

Each model (registry objective ``"baseline"``, family ``"embedding"`` or ``"baseline"``) is one
method of the evaluation (``salus.predictor.evaluate``), named after it: the method's name after the
colon with ``-`` for ``_``.

| model | evaluation method |
|---|---|
| ``knn-cosine``, ``knn-euclidean``, ``mahalanobis`` | ``embedding:knn_cosine``, ... |
| ``rnd``, ``logpzo`` (FAIL-Detect's) | ``embedding:rnd``, ``embedding:logpzo`` |
| ``stac``, ``stac-single``, ``action-total-variance``, ``fiper-chunk-entropy`` | ``baseline:stac``, ... |

The fitting rule has one home, here, and the evaluation uses it too:

- embedding baselines (:func:`embedding_reference`): ``salus.signals.EmbeddingScorer`` fitted on the
  successful *training* episodes' finite embedding steps, at most :data:`EMBEDDING_MAX_FIT` of them
  sampled with the split seed;
- online baselines (:func:`baseline_fill`): the recorded score, non-finite steps (before a score
  has what it needs, e.g. two chunks for STAC) filled with its minimum over the training steps.

The networks have no trainable parameters; their buffers are the fitted state, saved in
``model.safetensors`` like any weights (SHA-256 recorded, validated at load): the scorer's own
``EmbeddingScorer.state_dict()`` tensors and its ``k`` (for ``rnd`` / ``logpzo``: the
standardisation and the weights of the small networks ``salus.signals.learned`` trained on the
reference with seed 0, the evaluation's fit; ``k`` unused); the online score's column in the dataset's
baseline vector and its fill value. Their per-step output is the baseline's score itself (higher =
more likely to fail; a distance or an MMD, not a probability), calibrated with the same functional
conformal band as every model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from salus.errors import CheckpointError, DatasetError, InvalidInputError, NotFittedError

from .config import ModelConfig
from .episodes import Episode, EpisodeSet
from .models import PredictorNet
from .registry import get_model_spec

__all__ = [
    "EMBEDDING_MAX_FIT",
    "EmbeddingBaselineNet",
    "OnlineBaselineNet",
    "baseline_fill",
    "embedding_reference",
    "fit_baseline",
]

EMBEDDING_MAX_FIT = 5000  # most success steps an embedding baseline is fitted on


def embedding_reference(
    train: Sequence[Episode], max_fit: int = EMBEDDING_MAX_FIT, seed: int = 0
) -> np.ndarray | None:
    """The embedding baselines' reference ``(N, E)`` float32: the finite embedding steps of the
    successful ``train`` episodes, at most ``max_fit`` sampled with ``seed``; None without any."""
    succ = [ep.embedding for ep in train if ep.success and ep.embedding is not None]
    if not succ:
        return None
    ref = np.concatenate(succ).astype(np.float32)
    ref = ref[np.isfinite(ref).all(axis=1)]
    if len(ref) > max_fit:
        ref = ref[np.random.default_rng(seed).choice(len(ref), max_fit, replace=False)]
    return ref


def baseline_fill(train: Sequence[Episode], column: int) -> float | None:
    """The value of an online baseline's non-finite steps: its minimum over the ``train`` episodes'
    steps (column ``column`` of their ``baselines``); None when no training step is finite."""
    cols = [ep.baselines[:, column] for ep in train if ep.baselines is not None]
    col = np.concatenate(cols) if cols else np.zeros(0, dtype=np.float32)
    finite = col[np.isfinite(col)]
    return float(finite.min()) if finite.size else None


class _BaselineNet(PredictorNet):
    """A per-step score without state or trainable parameters: ``(B, T, D) -> (B, T, 1)``."""

    def __init__(self, cfg: ModelConfig, in_dim: int) -> None:
        super().__init__()
        self.n_probs = 1
        self.in_dim = int(in_dim)
        self.method = get_model_spec(cfg.name).method
        self.score_name = self.method.partition(":")[2]

    def score_rows(self, x: Tensor) -> Tensor:
        """``(N, D) -> (N,)`` float32 scores."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return self.score_rows(x.reshape(b * t, d)).view(b, t, 1)

    def probs_from(self, raw: Tensor) -> Tensor:
        return raw  # the score itself


class EmbeddingBaselineNet(_BaselineNet):
    """kNN cosine / Euclidean or Mahalanobis distance of the observation embedding (input: the raw
    embedding; the checkpoint's normalisation is the identity) to the fitted reference, or
    FAIL-Detect's RND / logpZO score of it (``salus.signals.learned``)."""

    def __init__(self, cfg: ModelConfig, in_dim: int, n_horizons: int = 1, n_types: int = 0) -> None:
        super().__init__(cfg, in_dim)
        self.scorer: Any = None  # salus.signals.EmbeddingScorer once fitted or loaded

    def fit(self, reference: np.ndarray) -> EmbeddingBaselineNet:
        from salus.signals import EmbeddingScorer

        self._use(EmbeddingScorer(self.score_name).fit(reference))
        return self

    def _use(self, scorer: Any) -> None:
        """Keep ``scorer`` and mirror its ``state_dict()`` in buffers (its tensors under their own
        names, dotted names in sub-modules, and ``k``): what ``model.safetensors`` holds."""
        if scorer.dim != self.in_dim:
            raise CheckpointError(
                f"{self.method}: the fitted reference has embeddings of width {scorer.dim}, the model reads {self.in_dim}"
            )
        state = scorer.state_dict()
        for key, value in {**state["tensors"], "k": np.asarray(state["k"], dtype=np.int64)}.items():
            *path, leaf = key.split(".")
            owner: nn.Module = self
            for part in path:
                if part not in owner._modules:
                    owner.add_module(part, nn.Module())
                owner = owner.get_submodule(part)
            owner.register_buffer(leaf, torch.from_numpy(np.array(value)))
        self.scorer = scorer

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Restore the scorer with ``EmbeddingScorer.from_state_dict`` (the reference's size is the
        data's, so the buffers take the saved shapes); ``CheckpointError`` if it is malformed."""
        from salus.signals import EmbeddingScorer

        tensors = {k: np.asarray(v.detach().cpu().numpy()) for k, v in state_dict.items()}
        k = tensors.pop("k", None)
        if k is None or k.shape != () or k.dtype.kind not in "iu":
            raise CheckpointError(f"{self.method}: the weights lack the scorer's neighbour count 'k'")
        ref = tensors.get("reference")
        if ref is not None and (ref.ndim != 2 or ref.shape[0] < 1):
            raise CheckpointError(f"{self.method}: the reference must be (N >= 1, E), got {ref.shape}")
        try:
            scorer = EmbeddingScorer.from_state_dict(
                {"name": self.score_name, "k": int(k), "tensors": tensors}
            )
        except InvalidInputError as exc:
            raise CheckpointError(f"{self.method}: the scorer's state is malformed: {exc}") from None
        self._use(scorer)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def score_rows(self, x: Tensor) -> Tensor:
        if self.scorer is None:
            raise NotFittedError(f"{self.method} is not fitted: fit(reference) or load a checkpoint")
        return torch.from_numpy(self.scorer.score(x.detach().cpu().numpy()))


class OnlineBaselineNet(_BaselineNet):
    """An online baseline score as recorded (input: the dataset's baseline vector, NaN where a
    score is invalid): column ``column``, non-finite steps at ``fill``."""

    column: Tensor  # () int64: the score's column in the dataset's baseline vector
    fill: Tensor  # () float64: its minimum over the training steps

    def __init__(self, cfg: ModelConfig, in_dim: int, n_horizons: int = 1, n_types: int = 0) -> None:
        super().__init__(cfg, in_dim)
        self.register_buffer("column", torch.zeros((), dtype=torch.int64))
        self.register_buffer("fill", torch.zeros((), dtype=torch.float64))

    def fit(self, column: int, fill: float) -> OnlineBaselineNet:
        self.column.fill_(int(column))
        self.fill.fill_(float(fill))
        self._check()
        return self

    def _check(self) -> None:
        if not 0 <= int(self.column) < self.in_dim:
            raise CheckpointError(
                f"{self.method}: column {int(self.column)} is outside the {self.in_dim} baseline scores"
            )

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._check()
        return out

    def score_rows(self, x: Tensor) -> Tensor:
        v = x[:, int(self.column)].to(torch.float64)
        return torch.where(torch.isfinite(v), v, self.fill).to(torch.float32)


def fit_baseline(
    config: ModelConfig, episodes: EpisodeSet, train: Sequence[Episode], seed: int
) -> tuple[_BaselineNet, dict[str, Any], dict[str, Any]]:
    """Fit the training-free model ``config.name`` on the ``train`` episodes as the evaluation
    fits its method; returns ``(network, normalization, metadata)``. ``DatasetError`` names what
    the dataset lacks."""
    from salus.signals import ONLINE_BASELINE_NAMES

    spec = get_model_spec(config.name)
    family, _, score = spec.method.partition(":")
    what = f"{config.name} ({spec.method})"
    if family == "embedding":
        ref = embedding_reference(train, seed=seed)
        if ref is None or len(ref) < 2:
            raise DatasetError(
                f"{what} needs successful training episodes with finite observation embeddings"
            )
        emb = EmbeddingBaselineNet(config, ref.shape[1]).fit(ref)
        norm = {"kind": "embedding", "mean": [0.0] * ref.shape[1], "std": [1.0] * ref.shape[1]}
        info = {
            "method": spec.method,
            "reference_steps": len(ref),
            "max_fit": EMBEDDING_MAX_FIT,
            "seed": seed,
        }
        return emb, norm, {"baseline": info}
    names = tuple(episodes.baseline_names)
    if score not in names:
        recorded = ", ".join(names) if names else "none"
        raise DatasetError(
            f"{what} needs the online baseline {score!r} recorded per step (step key 'baselines'); "
            f"the dataset records {recorded}"
        )
    live = [n for n in names if n not in ONLINE_BASELINE_NAMES]
    if live:
        raise DatasetError(
            f"{what}: the dataset's baselines {live} are not online baselines the monitor computes "
            f"({', '.join(ONLINE_BASELINE_NAMES)}); it could not run live"
        )
    column = names.index(score)
    fill = baseline_fill(train, column)
    if fill is None:
        raise DatasetError(
            f"{what}: no training step has a finite {score!r} (K >= 2 policy samples are needed for the "
            "sample-based scores, a re-plan before the chunk is used up for STAC)"
        )
    online = OnlineBaselineNet(config, len(names)).fit(column, fill)
    info = {"method": spec.method, "column": column, "fill": fill}
    return (
        online,
        {"kind": "baselines", "mean": [], "std": []},
        {"baseline": info, "baseline_names": list(names)},
    )
