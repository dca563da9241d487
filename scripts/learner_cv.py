"""Cheap learner ideas for the per-step failure score, compared by cross-validation on training data.

For each split seed of a trained benchmark (the split is read from the checkpoints under
``MODELS/seed<S>/``), the training + validation episodes are cut into ``salus.predictor.selection``'s
5 folds (grouped by seed, stratified by outcome); every variant is fitted on four folds and scores
the fifth, and the pooled out-of-fold scores give the protocol's ROC-AUC at T (SAFE's view) and at
risk at 2 s (running max, as for every method). Calibration and test episodes are never read, so the
table can choose a design without touching a benchmark's test set (docs/predictor.md)::

    python scripts/learner_cv.py runs/benchmark/data.zarr runs/benchmark/models

Variants: ``trees`` is salus-trees' learner on its features (boosted trees of "this episode fails"
on every pre-event step, iterations chosen by the held-out fold's log-loss, as salus-trees chooses
them on validation); the others change one thing: the features (a task one-hot; the running mean and
max of every feature since the episode began; exponential averages; 48 or 128 principal components
of the embedding and hidden state instead of 16), the learner (logistic regression, C = 1 or 0.05;
the mean of the trees' and the logistic regression's log-odds) or the score (exponential average or
running mean of the per-step log-odds before the running max). Prints a markdown table (mean over
seeds, then each seed). Single-threaded; about a minute per seed and variant group.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Array = np.ndarray


def _logit(p: Array) -> Array:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def _history(x: Array) -> Array:
    """(T, D) -> (T, 3D): the features, their running mean and running max since the first step."""
    n = np.arange(1, len(x) + 1)[:, None]
    return np.concatenate([x, np.cumsum(x, 0) / n, np.maximum.accumulate(x, 0)], 1)


def _ema(z: Array, a: float) -> Array:
    """Exponential average along the first axis (causal), started at the first row."""
    out = np.empty_like(z)
    m = z[0]
    for t in range(len(z)):
        m = z[t] if t == 0 else (1 - a) * m + a * z[t]
        out[t] = m
    return out


def _ema_features(x: Array) -> Array:
    return np.concatenate([x, _ema(x, 0.1)], 1)


def _trees(x: Array, y: Array, xv: Array, yv: Array, seed: int) -> Callable[[Array], Array]:
    """salus-trees' learner at its default configuration (``SalusTreesConfig``), the iterations
    chosen by the log-loss on ``(xv, yv)``; returns per-step log-odds."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from salus.predictor.config import SalusTreesConfig

    cfg = SalusTreesConfig()
    clf = HistGradientBoostingClassifier(
        max_iter=cfg.trees,
        learning_rate=cfg.tree_lr,
        max_leaf_nodes=cfg.tree_leaves,
        min_samples_leaf=cfg.tree_min_leaf,
        l2_regularization=cfg.tree_l2,
        early_stopping=False,
        random_state=seed,
    ).fit(x, y)
    losses = []
    for p in clf.staged_predict_proba(xv):
        q = np.clip(p[:, 1], 1e-7, 1 - 1e-7)
        losses.append(float(-np.mean(np.where(yv, np.log(q), np.log(1 - q)))))
    best = int(np.argmin(losses))

    def predict(xe: Array) -> Array:
        for i, p in enumerate(clf.staged_predict_proba(xe)):
            if i == best:
                return _logit(p[:, 1])
        raise AssertionError("unreachable")

    return predict


def _logreg(c: float) -> Callable[..., Callable[[Array], Array]]:
    def fit(x: Array, y: Array, xv: Array, yv: Array, seed: int) -> Callable[[Array], Array]:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(x, y)
        return lambda xe: _logit(model.predict_proba(xe)[:, 1])

    return fit


# name -> (principal components, feature transform, task one-hot, learner)
FEATURE_VARIANTS: dict[str, tuple[int, Callable[[Array], Array], bool, Callable[..., Any]]] = {
    "trees": (16, lambda x: x, False, _trees),
    "trees + task one-hot": (16, lambda x: x, True, _trees),
    "trees + running mean/max of the features": (16, _history, False, _trees),
    "trees + exponential average of the features": (16, _ema_features, False, _trees),
    "trees, 48 components": (48, lambda x: x, False, _trees),
    "trees, 128 components": (128, lambda x: x, False, _trees),
    "logistic regression C=1": (16, lambda x: x, False, _logreg(1.0)),
    "logistic regression C=0.05": (16, lambda x: x, False, _logreg(0.05)),
}
# derived from the out-of-fold log-odds of the variants above: name -> function of {variant: (T,) log-odds}
SCORE_VARIANTS: dict[str, Callable[[dict[str, Array]], Array]] = {
    "mean log-odds of trees and logistic regression C=1": lambda z: (
        (z["trees"] + z["logistic regression C=1"]) / 2
    ),
    "trees, exponential average (0.2) of the log-odds": lambda z: _ema(z["trees"], 0.2),
    "trees, running mean of the log-odds": lambda z: (
        np.cumsum(z["trees"]) / np.arange(1, len(z["trees"]) + 1)
    ),
}


def _split_of(models: Path, seed_dir: str) -> Any:
    from salus.predictor.checkpoint import TrainedPredictor, is_checkpoint_dir
    from salus.predictor.config import TrainConfig

    d = models / seed_dir
    first = next(p for p in sorted(d.iterdir()) if p.is_dir() and is_checkpoint_dir(p))
    return TrainConfig.from_dict(TrainedPredictor.load(first).meta["train_config"])


def _groups(eps: Sequence[Any]) -> tuple[str, ...]:
    from salus.predictor.features import GROUP_STEP_KEYS
    from salus.predictor.registry import get_model_spec

    wanted = get_model_spec("salus-trees").feature_groups
    return tuple(
        g for g in wanted if all(getattr(e, GROUP_STEP_KEYS.get(g, "signals")) is not None for e in eps)
    )


def run_seed(episodes: Any, tcfg: Any, say: Callable[[str], None]) -> dict[str, tuple[float, float]]:
    """``{variant: (ROC-AUC at T, at-risk ROC-AUC at 2 s)}`` of one split seed's out-of-fold scores."""
    from salus.predictor.episodes import EpisodeSplit, split_episodes, split_statistics
    from salus.predictor.features import FeatureSpace
    from salus.predictor.objectives import pre_event_mask
    from salus.predictor.protocol import at_risk_auroc, roc_auc, running_max, safe_times, score_at
    from salus.predictor.selection import cv_folds

    split = split_episodes(episodes, tcfg.split)
    view = split_statistics(episodes, split)
    pool = sorted({*split.train, *split.val})
    folds = cv_folds(view, pool, 5, tcfg.seed)
    tasks = list(episodes.tasks)
    groups = _groups([episodes[i] for i in pool])
    oof: dict[str, dict[int, Array]] = {name: {} for name in FEATURE_VARIANTS}
    for k, fold in enumerate(folds):
        rest = tuple(sorted(set(pool) - set(fold)))
        fold_view = split_statistics(episodes, EpisodeSplit(rest, tuple(fold), split.calib, (), ()))
        train, held = [fold_view[i] for i in rest], [fold_view[i] for i in fold]
        spaces: dict[int, Any] = {}
        for name, (pca, transform, onehot, learner) in FEATURE_VARIANTS.items():
            if pca not in spaces:
                spaces[pca] = FeatureSpace(groups, pca=pca, seed=tcfg.seed).fit(train)
            space = spaces[pca]

            def feats(
                ep: Any, space: Any = space, transform: Any = transform, onehot: bool = onehot
            ) -> Array:
                x = transform(space.transform(ep))
                if not onehot:
                    return x
                hot = np.zeros((ep.length, len(tasks)), np.float32)
                hot[:, tasks.index(ep.task)] = 1.0
                return np.concatenate([x, hot], 1)

            def steps(eps: Sequence[Any], feats: Any = feats) -> tuple[Array, Array]:
                keep = [pre_event_mask(e).astype(bool) for e in eps]
                x = np.concatenate([feats(e)[m] for e, m in zip(eps, keep, strict=True)])
                y = np.concatenate([np.full(int(m.sum()), e.failed) for e, m in zip(eps, keep, strict=True)])
                return x, y

            (x, y), (xv, yv) = steps(train), steps(held)
            predict = learner(x, y, xv, yv, tcfg.seed)
            for i, ep in zip(fold, held, strict=True):
                oof[name][i] = predict(feats(ep))
        say(f"  fold {k + 1}/{len(folds)}")
    for name, fn in SCORE_VARIANTS.items():
        oof[name] = {i: fn({v: oof[v][i] for v in FEATURE_VARIANTS}) for i in pool}
    times = safe_times(view.episodes)
    chosen = [view[i] for i in pool]
    labels = np.array([e.failed for e in chosen])
    out = {}
    for name, scores in oof.items():
        runs = [running_max(scores[i]) for i in pool]
        at_t = np.array([score_at(r, times[e.task]) for r, e in zip(runs, chosen, strict=True)])
        out[name] = (roc_auc(labels, at_t), at_risk_auroc(chosen, runs, 40)["auroc"])
    return out


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from salus.data import SalusDataset
    from salus.predictor.episodes import episodes_from_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("models", type=Path, help="the benchmark's models folder (seed<S>/ directories)")
    ap.add_argument("--seeds", default="0,1,2,3")
    args = ap.parse_args()
    episodes = episodes_from_dataset(SalusDataset(args.data), embeddings=True)
    per_seed = {}
    for s in args.seeds.split(","):
        print(f"seed {s}", flush=True)
        per_seed[s] = run_seed(episodes, _split_of(args.models, f"seed{s}"), lambda m: print(m, flush=True))
    seeds = list(per_seed)
    print(
        f"\n| variant | CV ROC-AUC at T (mean) | CV at-risk 2 s (mean) | at T per seed {', '.join(seeds)} |"
    )
    print("|---|---|---|---|")
    for name in per_seed[seeds[0]]:
        vals = np.array([per_seed[s][name] for s in seeds])
        each = ", ".join(f"{v:.3f}" for v in vals[:, 0])
        print(f"| {name} | {vals[:, 0].mean():.3f} | {vals[:, 1].mean():.3f} | {each} |")


if __name__ == "__main__":
    main()
