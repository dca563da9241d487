"""Choosing our model (the headline, ``Monitor.load``'s default, the demo's), by a rule fixed
before any test score.

The rule (``SELECTION_RULE``): the ``salus``-family model with the best ROC-AUC at T (SAFE's
time, the protocol's running max) on episodes none of them trained on. With at least
``CV_BELOW`` validation episodes those are the validation episodes (the trained checkpoints are
scored on them). With fewer, one validation set is too small to rank models (a 15-episode
validation set picked a model at chance on a user's robot), so the models are compared by
``CV_FOLDS``-fold cross-validation over the training and validation episodes: each fold's episodes
(grouped by seed, stratified by outcome) are scored by the model retrained on the other folds
(early-stopped on the fold itself, as the deployed model is on validation), and the pooled
out-of-fold scores are ranked. Calibration and test episodes are never used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from salus.errors import InvalidInputError, InvalidNameError

from .episodes import EpisodeSet, EpisodeSplit, split_statistics
from .protocol import roc_auc, running_max, safe_times, score_at

__all__ = ["SELECTION_RULES", "CV_FOLDS", "CV_BELOW", "selection_rule", "cv_folds", "select_model"]

SELECTION_RULES = ("auto", "validation", "cross-validation")
CV_FOLDS = 5
CV_BELOW = 60  # validation episodes below which "auto" cross-validates
SELECTION_RULE = (
    f"best ROC-AUC at T among the salus models: on the validation episodes when there are >= {CV_BELOW}, "
    f"else pooled out-of-fold scores of {CV_FOLDS}-fold cross-validation over training + validation "
    "episodes (grouped by seed, stratified by outcome)"
)


def selection_rule(rule: str, n_val: int) -> str:
    """``"validation"`` or ``"cross-validation"``: what ``rule`` (``SELECTION_RULES``) means with
    ``n_val`` validation episodes."""
    if rule not in SELECTION_RULES:
        raise InvalidNameError("selection rule", rule, SELECTION_RULES)
    if rule == "auto":
        return "validation" if n_val >= CV_BELOW else "cross-validation"
    return rule


def cv_folds(
    episodes: EpisodeSet, indices: Sequence[int], k: int = CV_FOLDS, seed: int = 0
) -> list[tuple[int, ...]]:
    """``k`` folds of ``indices``: episodes sharing a seed stay together; seeds are dealt round-robin
    per outcome (failed first) in a seeded random order, so each fold has both outcomes."""
    if k < 2:
        raise InvalidInputError(f"cross-validation needs k >= 2 folds, got {k}")
    groups: dict[int, list[int]] = {}
    for i in indices:
        groups.setdefault(episodes[i].seed, []).append(i)
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    turn = 0
    for failed in (True, False):
        keys = sorted(s for s, m in groups.items() if any(episodes[i].failed for i in m) == failed)
        for s in (keys[j] for j in rng.permutation(len(keys))):
            folds[turn % k].extend(groups[s])
            turn += 1
    if any(not f for f in folds):
        raise InvalidInputError(f"{len(groups)} episode seeds cannot fill {k} cross-validation folds")
    return [tuple(sorted(f)) for f in folds]


def _auroc_at_t(episodes: EpisodeSet, scores: Mapping[int, np.ndarray], times: Mapping[str, int]) -> float:
    idx = sorted(scores)
    labels = np.array([episodes[i].failed for i in idx], dtype=bool)
    at_t = np.array([score_at(running_max(scores[i]), times[episodes[i].task]) for i in idx])
    return roc_auc(labels, at_t)


def _out_of_fold(
    episodes: EpisodeSet, split: EpisodeSplit, config: Any, train_config: Any, folds: Sequence[Sequence[int]]
) -> dict[int, np.ndarray]:
    from .training import train_model

    pool = set(split.train) | set(split.val)
    out: dict[int, np.ndarray] = {}
    for fold in folds:
        rest = tuple(sorted(pool - set(fold)))
        sub = EpisodeSplit(rest, tuple(fold), split.calib, (), ())
        view = split_statistics(episodes, sub)  # the fold's model sees statistics of its own training part
        model = train_model(view, config, train_config, split=sub)
        out.update(zip(fold, model.episode_scores([view[i] for i in fold]), strict=True))
    return out


def select_model(
    episodes: EpisodeSet,
    split: EpisodeSplit,
    trained: Sequence[Any],
    *,
    rule: str = "auto",
    k: int = CV_FOLDS,
) -> dict[str, Any]:
    """Our model among the ``salus``-family predictors in ``trained`` (``TrainedPredictor``s of one
    split), by the rule above; returns ``{"selected", "rule", "scores": {name: ROC-AUC at T},
    "n_episodes", "val_auroc_T"}`` (``val_auroc_T``: the validation ROC-AUC, always recorded)."""
    from .evaluate import predictor_methods, select_on_validation
    from .registry import get_model_spec

    ours = [p for p in trained if get_model_spec(p.name).family == "salus" and not p.meta.get("label")]
    episodes = split_statistics(episodes, split)  # the signals the checkpoints were trained on
    times = safe_times(episodes.episodes)
    methods = predictor_methods(ours, episodes, list(split.val))
    val = select_on_validation(episodes, split, methods, times)
    used = selection_rule(rule, len(split.val))
    out: dict[str, Any] = {"rule": used, "rule_text": SELECTION_RULE, "val_auroc_T": val["val_auroc_T"]}
    if used == "validation":
        n = val["n_val"]
        return {**out, "selected": val["selected"], "scores": val["val_auroc_T"], "n_episodes": n, "n_val": n}
    if len(ours) <= 1:  # nothing to rank: the only candidate (or none), no retraining
        only = ours[0].name if ours else None
        return {
            **out,
            "rule": "only candidate",
            "selected": only,
            "scores": val["val_auroc_T"],
            "n_episodes": 0,
        }
    seed = int(_train_config(ours[0]).seed)
    folds = cv_folds(episodes, (*split.train, *split.val), k, seed)
    scores = {}
    for p in ours:
        oof = _out_of_fold(episodes, split, p.config, _train_config(p), folds)
        scores[p.name] = _auroc_at_t(episodes, oof, times)
    finite = {n: v for n, v in scores.items() if not math.isnan(v)}
    pick = max(finite, key=lambda n: finite[n]) if finite else None
    return {**out, "selected": pick, "scores": scores, "n_episodes": sum(len(f) for f in folds), "folds": k}


def _train_config(predictor: Any) -> Any:
    from .config import TrainConfig

    return TrainConfig.from_dict(predictor.meta["train_config"])
