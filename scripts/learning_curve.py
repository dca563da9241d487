"""Is more data the lever? The per-step learners' validation ROC-AUC against training episodes.

On a large collection that no benchmark number comes from, a fixed evaluation set of seen-task
episodes (``--eval`` of them, whole seeds, outcomes in proportion) is set aside once; nested training
sets of growing size are drawn from the rest (seeded, the same draw order for every size, so each
set contains the smaller ones). Each learner is fitted on a training set (its iterations early-stopped
on a tenth of it) and scores the evaluation set: the protocol's ROC-AUC at T (SAFE's view) and at
risk at 2 s, running max. With no test set of a benchmark involved, the curve can steer the
predictor's design (docs/predictor.md)::

    python scripts/learning_curve.py runs/scale/data.zarr --sizes 100,200,400,800,1600 --eval 400

Learners: boosted trees on salus-trees' features (the learner salus-trees ships), logistic
regression (C = 0.05) on the same features, and kNN cosine on the observation embedding (training
free: its reference is the training set's successful steps). Several draws (``--draws``) give the
spread. Prints a markdown table. Single-threaded.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from learner_cv import _trees  # the same learner (scripts/ is on the path when run)


def _draw(episodes: Any, pool: Sequence[int], n: int, rng: np.random.Generator) -> list[int]:
    """``n`` episodes of ``pool``, failures and successes in proportion, in a seeded order."""
    failed = [i for i in pool if episodes[i].failed]
    ok = [i for i in pool if not episodes[i].failed]
    rng.shuffle(failed)
    rng.shuffle(ok)
    nf = round(n * len(failed) / len(pool))
    return sorted(failed[:nf] + ok[: n - nf])


def _steps(eps: Sequence[Any], feats: Any) -> tuple[np.ndarray, np.ndarray]:
    from salus.predictor.objectives import pre_event_mask

    keep = [pre_event_mask(e).astype(bool) for e in eps]
    x = np.concatenate([feats(e)[m] for e, m in zip(eps, keep, strict=True)])
    y = np.concatenate([np.full(int(m.sum()), e.failed) for e, m in zip(eps, keep, strict=True)])
    return x, y


def _metrics(eps: Sequence[Any], scores: Sequence[np.ndarray], times: dict[str, int]) -> tuple[float, float]:
    from salus.predictor.protocol import at_risk_auroc, roc_auc, running_max, score_at

    runs = [running_max(s) for s in scores]
    labels = np.array([e.failed for e in eps])
    at_t = np.array([score_at(r, times[e.task]) for r, e in zip(runs, eps, strict=True)])
    return roc_auc(labels, at_t), at_risk_auroc(eps, runs, 40)["auroc"]


def fit_and_score(
    episodes: Any, train: list[int], evaluate: list[int], seed: int
) -> dict[str, tuple[float, float]]:
    """``{learner: (ROC-AUC at T, at-risk 2 s)}`` on ``evaluate`` of learners fitted on ``train``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from salus.predictor.episodes import EpisodeSplit, split_statistics
    from salus.predictor.features import FeatureSpace
    from salus.predictor.protocol import safe_times
    from salus.predictor.registry import get_model_spec
    from salus.signals import EmbeddingScorer

    rng = np.random.default_rng(seed)
    inner = set(_draw(episodes, train, max(2, len(train) // 10), rng))
    fit_idx = [i for i in train if i not in inner]
    view = split_statistics(
        episodes, EpisodeSplit(tuple(fit_idx), tuple(sorted(inner)), (), tuple(evaluate), ())
    )
    fit, stop, ev = [view[i] for i in fit_idx], [view[i] for i in sorted(inner)], [view[i] for i in evaluate]
    times = safe_times(view.episodes)
    space = FeatureSpace(get_model_spec("salus-trees").feature_groups, seed=seed).fit(fit)
    (x, y), (xv, yv) = _steps(fit, space.transform), _steps(stop, space.transform)
    out = {}
    trees = _trees(x, y, xv, yv, seed)  # log-odds: the same ranking as the probabilities
    scores = [trees(space.transform(e)) for e in ev]
    out["boosted trees (salus-trees' learner)"] = _metrics(ev, scores, times)
    logreg = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000)).fit(
        np.concatenate([x, xv]), np.concatenate([y, yv])
    )
    out["logistic regression"] = _metrics(
        ev, [logreg.predict_proba(space.transform(e))[:, 1] for e in ev], times
    )
    ref = np.concatenate([e.embedding for e in fit + stop if e.success])
    ref = ref[np.random.default_rng(seed).choice(len(ref), min(len(ref), 2000), replace=False)]
    knn = EmbeddingScorer("knn_cosine").fit(ref)
    out["kNN cosine (training free)"] = _metrics(
        ev, [knn.score(e.embedding).astype(np.float64) for e in ev], times
    )
    return out


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from salus.data import SalusDataset
    from salus.predictor.episodes import episodes_from_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--sizes", default="100,200,400,800,1600")
    ap.add_argument("--eval", type=int, default=400, help="episodes of the fixed evaluation set")
    ap.add_argument("--draws", type=int, default=2, help="training-set draws per size")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    episodes = episodes_from_dataset(SalusDataset(args.data), embeddings=True)
    everything = list(range(len(episodes)))
    evaluate = _draw(episodes, everything, args.eval, np.random.default_rng(args.seed))
    rest = [i for i in everything if i not in set(evaluate)]
    sizes = [int(s) for s in args.sizes.split(",")]
    if max(sizes) > len(rest):
        raise SystemExit(f"the largest size {max(sizes)} exceeds the {len(rest)} episodes left for training")
    n_fail = sum(episodes[i].failed for i in evaluate)
    print(
        f"{len(episodes)} episodes; evaluation set {len(evaluate)} ({n_fail} failed); training from {len(rest)}"
    )
    rows: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for d in range(args.draws):
        order = np.random.default_rng(args.seed + 1 + d).permutation(rest).tolist()
        for n in sizes:
            train = sorted(order[:n])  # nested: each size contains the smaller ones of this draw
            for name, v in fit_and_score(episodes, train, evaluate, args.seed + d).items():
                rows.setdefault((name, n), []).append(v)
                print(f"draw {d} n={n} {name}: at T {v[0]:.3f}, at-risk 2 s {v[1]:.3f}", flush=True)
    names = list(dict.fromkeys(k[0] for k in rows))
    print("\n| learner | " + " | ".join(f"n={n}: at T / at-risk 2 s" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name in names:
        cells = []
        for n in sizes:
            v = np.array(rows[(name, n)])
            cells.append(f"{v[:, 0].mean():.3f} / {v[:, 1].mean():.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
