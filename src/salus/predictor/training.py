"""Training: episode-level splits, class-balanced losses, early stopping on validation loss,
seeded and reproducible, then functional conformal calibration on held-out successes.

Losses. Our models: focal loss (gamma from the config) on every (horizon, head) output with a
per-output positive weight ``alpha = clip(1 - positive rate, 0.5, 0.98)`` from the training steps.
SAFE-MLP: for a successful rollout ``relu(S_t)``, for a failed one ``relu(threshold - S_t)`` on the
accumulated score S_t at every step; SAFE-LSTM: binary cross-entropy of every step's score against
the rollout's label. SAFE's losses weight rollouts by inverse class frequency. The training-free
baselines (objective ``"baseline"``) are fitted as the evaluation fits their method
(``salus.predictor.baseline_models``), with no epochs.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from salus.errors import DatasetError, InvalidInputError

from .checkpoint import (
    FORMAT_VERSION,
    TrainedPredictor,
    embedding_features,
    embedding_source,
    episode_vector,
    signal_features,
)
from .config import DEFAULT_FAILURE_TYPES, FeaturesConfig, ModelConfig, SalusTreesConfig, TrainConfig
from .conformal import fit_functional_bands
from .episodes import Episode, EpisodeSet, EpisodeSplit, split_episodes, split_statistics
from .objectives import Objective, get_objective, pre_event_mask
from .protocol import running_max
from .registry import get_model_spec

__all__ = [
    "train_model",
    "EpochLog",
    "fit_normalization",
    "embedding_source_for",
    "calibrate",
    "seed_everything",
    "deterministic",
    "check_split_matches",
]


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float
    best: bool


def seed_everything(seed: int) -> None:
    """Seed torch and make its kernels deterministic (CPU)."""
    import torch

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """``seed_everything`` for the block, then restore torch's previous determinism setting."""
    import torch

    prev = torch.are_deterministic_algorithms_enabled()
    warn = torch.is_deterministic_algorithms_warn_only_enabled()
    seed_everything(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=warn)


def embedding_source_for(name: str, episodes: EpisodeSet) -> str:
    """The vector an ``embedding``-input model ``name`` reads from ``episodes``
    (``checkpoint.EMBEDDING_SOURCES``): SAFE's own feature ``hidden_mean`` for the SAFE models when
    every episode records it, else the observation embedding."""
    safe = get_model_spec(name).family == "safe"
    return "hidden_mean" if safe and episodes.has_hidden_mean else "obs_embedding"


def fit_normalization(
    episodes: Sequence[Episode],
    kind: str,
    max_rows: int = 20000,
    seed: int = 0,
    source: str = "obs_embedding",
) -> dict[str, Any]:
    """Per-feature mean and std over training steps (signals: valid, finite entries only; an
    ``embedding`` model: of the step key ``source``, recorded in the result)."""
    if kind == "signals":
        x = np.concatenate([ep.signals for ep in episodes]).astype(np.float64)
        ok = np.concatenate([ep.valid for ep in episodes]) & np.isfinite(x)
        cnt = ok.sum(axis=0)
        xs = np.where(ok, x, 0.0)
        mean = np.where(cnt > 0, xs.sum(axis=0) / np.maximum(cnt, 1), 0.0)
        var = np.where(ok, (x - mean) ** 2, 0.0).sum(axis=0) / np.maximum(cnt, 1)
        std = np.sqrt(var)
    else:
        vecs = [episode_vector(ep, source) for ep in episodes]
        if any(v is None for v in vecs):
            raise DatasetError(f"the dataset has no {source}; SAFE models need it")
        x = np.concatenate(vecs)  # type: ignore[arg-type]
        if len(x) > max_rows:
            x = x[np.random.default_rng(seed).choice(len(x), max_rows, replace=False)]
        x = np.nan_to_num(x.astype(np.float64))
        mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    norm = {"kind": kind, "mean": mean.astype(np.float32).tolist(), "std": std.astype(np.float32).tolist()}
    return norm if kind == "signals" else {**norm, "source": source}


def _features(ep: Episode, kind: str, norm: dict[str, Any]) -> np.ndarray:
    mean, std = np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
    if kind == "signals":
        return signal_features(ep.signals, ep.valid, mean, std)
    return embedding_features(episode_vector(ep, embedding_source(norm)), mean, std)  # type: ignore[arg-type]


def _pad(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    L = max(len(a) for a in arrays)
    out = np.zeros((len(arrays), L, *arrays[0].shape[1:]), dtype=np.float32)
    mask = np.zeros((len(arrays), L), dtype=np.float32)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
        mask[i, : len(a)] = 1.0
    return out, mask


def pre_event_steps(
    episodes: Sequence[Episode], featurize: Callable[[Episode], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-step samples of "this episode fails": the features ``(N, D)`` of every pre-event step
    (:func:`pre_event_mask`) of ``episodes`` and the episode's outcome ``(N,)`` for each."""
    xs, ys = [], []
    for ep in episodes:
        keep = pre_event_mask(ep).astype(bool)
        xs.append(featurize(ep)[keep])
        ys.append(np.full(int(keep.sum()), ep.failed))
    return np.concatenate(xs), np.concatenate(ys)


class _Batcher:
    """Features, targets and step masks of a list of episodes (``objectives.Objective``), padded
    per batch."""

    def __init__(
        self,
        episodes: Sequence[Episode],
        featurize: Callable[[Episode], np.ndarray],
        objective: Objective,
        horizons: Sequence[int],
        types: Sequence[str],
    ):
        self.x = [featurize(ep) for ep in episodes]
        self.y = [objective.targets(ep, horizons, types) for ep in episodes]
        self.step_mask = [objective.step_mask(ep) for ep in episodes]
        self.label = np.array([float(ep.failed) for ep in episodes], dtype=np.float32)

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, idx: Sequence[int]) -> tuple[Any, Any, Any, Any]:
        import torch

        x, _ = _pad([self.x[i] for i in idx])
        y, _ = _pad([self.y[i] for i in idx])
        mask, _ = _pad([self.step_mask[i] for i in idx])
        return (
            torch.from_numpy(x),
            torch.from_numpy(y),
            torch.from_numpy(mask),
            torch.from_numpy(self.label[list(idx)]),
        )


def calibrate(predictor: TrainedPredictor, episodes: Sequence[Episode], tcfg: TrainConfig) -> dict[str, Any]:
    """Functional conformal bands of the running-max score on the calibration successes."""
    succ = [ep for ep in episodes if ep.success]
    if len(succ) < 2:
        raise DatasetError(
            f"conformal calibration needs >= 2 successful calibration episodes, got {len(succ)}"
        )
    traj = [running_max(s) for s in predictor.episode_scores(succ)]
    c = tcfg.conformal
    bands = fit_functional_bands(
        traj,
        c.alphas,
        modulation=c.modulation,
        two_sided=c.two_sided,
        fit_fraction=c.fit_fraction,
        seed=tcfg.seed,
    )
    return {**c.to_dict(), "bands": {str(a): b.to_dict() for a, b in bands.items()}}


def _fit_network(
    model_config: ModelConfig,
    tcfg: TrainConfig,
    train_eps: Sequence[Episode],
    val_eps: Sequence[Episode],
    featurize: Callable[[Episode], np.ndarray],
    types: Sequence[str],
    on_epoch: Callable[[EpochLog], None] | None,
) -> tuple[Any, list[dict[str, float]], int, float, int]:
    """A torch network trained by epochs, early-stopped on the validation loss; returns
    ``(model, history, best_epoch, best_val_loss, in_dim)``."""
    import torch

    objective = get_objective(model_config.objective_name)
    if objective.loss is None:
        raise InvalidInputError(f"objective {objective.name!r} is not fitted by epochs of a loss")
    train = _Batcher(train_eps, featurize, objective, tcfg.horizons, types)
    val = _Batcher(val_eps, featurize, objective, tcfg.horizons, types)
    in_dim = train.x[0].shape[1]

    from .models import build_model

    with deterministic(tcfg.seed):
        model = build_model(model_config, in_dim, len(tcfg.horizons), len(types))
        opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
        loss_fn = objective.loss(model_config, tcfg, train.y, train.step_mask, train.label)
        rng = np.random.default_rng(tcfg.seed)
        best, best_state, best_epoch, bad = math.inf, copy.deepcopy(model.state_dict()), 0, 0
        history: list[dict[str, float]] = []
        for epoch in range(1, tcfg.max_epochs + 1):
            model.train()
            order = [int(i) for i in rng.permutation(len(train))]
            total, count = 0.0, 0
            for start in range(0, len(order), tcfg.batch_episodes):
                x, y, mask, label = train.batch(order[start : start + tcfg.batch_episodes])
                loss = loss_fn(model(x), y, mask, label)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
                total += float(loss.detach()) * float(mask.sum())
                count += int(mask.sum())
            model.eval()
            vtotal, vcount = 0.0, 0
            with torch.no_grad():
                for start in range(0, len(val), 64):
                    x, y, mask, label = val.batch(range(start, min(start + 64, len(val))))
                    vtotal += float(loss_fn(model(x), y, mask, label)) * float(mask.sum())
                    vcount += int(mask.sum())
            tl, vl = total / max(count, 1), vtotal / max(vcount, 1)
            improved = vl < best - 1e-6
            if improved:
                best, best_state, best_epoch, bad = vl, copy.deepcopy(model.state_dict()), epoch, 0
            else:
                bad += 1
            history.append({"epoch": epoch, "train_loss": tl, "val_loss": vl})
            if on_epoch is not None:
                on_epoch(EpochLog(epoch, tl, vl, improved))
            if bad >= tcfg.patience:
                break
        model.load_state_dict(best_state)
        model.eval()
    return model, history, best_epoch, best, in_dim


def _fit_trees(
    model_config: ModelConfig,
    tcfg: TrainConfig,
    train_eps: Sequence[Episode],
    val_eps: Sequence[Episode],
    featurize: Callable[[Episode], np.ndarray],
    on_epoch: Callable[[EpochLog], None] | None,
) -> tuple[Any, list[dict[str, float]], int, float, int]:
    """``salus-trees``: gradient-boosted trees of "this episode fails" on every pre-event step of
    the training episodes (each step one sample), the number of boosting iterations chosen by the
    log-loss on the validation episodes' pre-event steps; the "epochs" of the history are boosting
    iterations. Returns ``(model, history, best_iterations, best_val_loss, in_dim)``."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from .models import build_model

    x, y = pre_event_steps(train_eps, featurize)
    xv, yv = pre_event_steps(val_eps, featurize)
    cfg = model_config
    if not isinstance(cfg, SalusTreesConfig):
        raise InvalidInputError(
            f"the boosted-trees objective needs a SalusTreesConfig, {cfg.name} has {type(cfg).__name__}"
        )
    clf = HistGradientBoostingClassifier(
        max_iter=cfg.trees,
        learning_rate=cfg.tree_lr,
        max_leaf_nodes=cfg.tree_leaves,
        min_samples_leaf=cfg.tree_min_leaf,
        l2_regularization=cfg.tree_l2,
        early_stopping=False,
        random_state=tcfg.seed,
    ).fit(x, y)
    eps = 1e-7
    losses = []
    for p in clf.staged_predict_proba(xv):
        q = np.clip(p[:, 1], eps, 1 - eps)
        losses.append(float(-np.mean(np.where(yv, np.log(q), np.log(1 - q)))))
    best_n = int(np.argmin(losses)) + 1
    history = [{"epoch": n, "train_loss": math.nan, "val_loss": v} for n, v in enumerate(losses, start=1)]
    if on_epoch is not None:  # one report per fit: the "epochs" of trees are boosting iterations
        on_epoch(EpochLog(len(losses), math.nan, losses[best_n - 1], True))
    from .models import SalusTrees

    model = build_model(cfg, int(x.shape[1]), 1, 0)
    if not isinstance(model, SalusTrees):
        raise InvalidInputError(
            f"the boosted-trees objective needs a SalusTrees network, {cfg.name} has {type(model).__name__}"
        )
    model.load_sklearn(clf, best_n)
    model.eval()
    return model, history, best_n, losses[best_n - 1], int(x.shape[1])


def train_model(
    episodes: EpisodeSet,
    model_config: ModelConfig,
    train_config: TrainConfig | None = None,
    *,
    split: EpisodeSplit | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> TrainedPredictor:
    """Train one predictor on ``split.train``, early-stop on ``split.val``, calibrate on
    ``split.calib`` successes. Same data and seeds -> the same weights and numbers."""

    started = time.perf_counter()
    tcfg = train_config or TrainConfig()
    split = split or split_episodes(episodes, tcfg.split)
    episodes = split_statistics(episodes, split)  # statistics of recorded signals from split.train only
    if not split.val:
        raise DatasetError("the split has no validation episodes; use more episodes or a larger val_fraction")

    name, kind = model_config.name, model_config.input_kind
    train_eps = [episodes[i] for i in split.train]
    val_eps = [episodes[i] for i in split.val]
    if not any(ep.failed for ep in train_eps) or not any(ep.success for ep in train_eps):
        raise DatasetError("training episodes need both successes and failures")
    n_cal = sum(episodes[i].success for i in split.calib)
    if n_cal < 2:
        raise DatasetError(
            f"the calibration split holds {n_cal} successful episodes; the conformal band needs >= 2 "
            f"(and >= 1/alpha - 1 for a finite band). Collect more episodes or raise the calibration fraction."
        )
    if kind == "embedding" and not (
        episodes.has_embedding or embedding_source_for(name, episodes) != "obs_embedding"
    ):
        raise DatasetError(f"{name} needs obs_embedding in every episode")
    extra = sorted({ep.failure_type for ep in train_eps if ep.failed} - set(DEFAULT_FAILURE_TYPES))
    types = (*DEFAULT_FAILURE_TYPES, *extra)
    feature_space = None
    objective = get_objective(model_config.objective_name)
    baseline_meta: dict[str, Any] = {}
    if objective.fit == "baseline":  # training-free: fitted as the evaluation fits the method
        from .baseline_models import fit_baseline

        model, norm, baseline_meta = fit_baseline(model_config, episodes, train_eps, tcfg.seed)
        history: list[dict[str, float]] = []
        best_epoch, best, in_dim = 0, math.nan, model.in_dim
    else:
        if kind == "features":
            from .features import FeatureSpace

            if not isinstance(model_config, FeaturesConfig):
                raise InvalidInputError(
                    f"{name} reads features but is configured by {type(model_config).__name__}, not a FeaturesConfig"
                )
            feature_space = FeatureSpace(model_config.groups, pca=model_config.pca, seed=tcfg.seed).fit(
                train_eps
            )
            norm = {"kind": "features", "mean": [], "std": []}
            featurize: Callable[[Episode], np.ndarray] = feature_space.transform
        else:
            source = embedding_source_for(name, episodes) if kind == "embedding" else "obs_embedding"
            norm = fit_normalization(train_eps, kind, tcfg.max_embedding_fit, tcfg.seed, source)

            def featurize(ep: Episode) -> np.ndarray:
                return _features(ep, kind, norm)

        if objective.fit == "trees":
            model, history, best_epoch, best, in_dim = _fit_trees(
                model_config, tcfg, train_eps, val_eps, featurize, on_epoch
            )
        else:
            model, history, best_epoch, best, in_dim = _fit_network(
                model_config, tcfg, train_eps, val_eps, featurize, types, on_epoch
            )
        if feature_space is not None:
            feature_space.forget_training_cache()
    score_index = objective.score_index(tcfg)
    horizons = list(tcfg.horizons) if objective.records_horizons else []  # a baseline: one score
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": {"name": name, "config": model_config.to_dict(), "in_dim": in_dim},
        "input_kind": kind,
        "signal_names": list(episodes.signal_names),
        "normalization": norm,
        "extractor_statistics": dict(episodes.extractor_statistics),
        "horizons": horizons,
        "horizons_s": [h / episodes.control_hz for h in horizons],
        "failure_types": list(types),
        "score_index": score_index,
        # our models' time ramp per step (checkpoint.ramped); published baselines keep their score
        "score_ramp": tcfg.score_ramp_s / episodes.control_hz
        if get_model_spec(name).family in ("salus", "oracle")
        else 0.0,
        "control_hz": episodes.control_hz,
        "robot": None if episodes.robot is None else episodes.robot.to_dict(),
        "conformal": {},
        "split": split.to_dict(),
        "train_config": tcfg.to_dict(),
        "training": {
            "seconds": round(time.perf_counter() - started, 2),
            "best_epoch": best_epoch,
            "epochs_run": len(history),
            "best_val_loss": best,
            "history": history,
        },
        "dataset": {
            "fingerprint": episodes.fingerprint(),
            "source": episodes.source,
            "n_episodes": len(episodes),
        },
    }
    meta.update(baseline_meta)
    columns = objective.prob_columns(tcfg)
    if columns is not None:
        meta["prob_columns"] = columns
    predictor = TrainedPredictor(model=model, config=model_config, meta=meta, feature_space=feature_space)
    predictor.meta["conformal"] = calibrate(predictor, [episodes[i] for i in split.calib], tcfg)
    return predictor


def check_split_matches(predictor: TrainedPredictor, episodes: EpisodeSet) -> EpisodeSplit:
    """The checkpoint's split, after checking it was made on this dataset."""
    from salus.errors import CheckpointError

    if "split" not in predictor.meta or "dataset" not in predictor.meta:
        raise CheckpointError(f"checkpoint {predictor.name} records no split/dataset; it cannot be evaluated")
    fp = predictor.meta["dataset"].get("fingerprint")
    if fp != episodes.fingerprint():
        raise InvalidInputError(
            f"checkpoint {predictor.name} was trained on another dataset (fingerprint {fp}, "
            f"this one {episodes.fingerprint()}); evaluate on the dataset it was trained on"
        )
    return EpisodeSplit.from_dict(predictor.meta["split"])
