"""SAFE's evaluation protocol on per-step failure scores.

An episode's score over time is the running maximum of its per-step score. Ranking metrics:
ROC-AUC and average precision of that score at a fixed time T (by default the length of the
shortest successful rollout, so that a score which merely grows with elapsed time gets 0.5; an
episode shorter than T uses its last value), and over all steps (every step of every
episode, labelled with its episode's outcome). Alarm metrics at a functional conformal band
(calibrated on held-out successes): TPR, FPR, balanced accuracy, detection time and lead time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .conformal import FunctionalBand
from .episodes import Episode

__all__ = [
    "running_max",
    "score_at",
    "protocol_times",
    "roc_auc",
    "average_precision",
    "ranking_metrics",
    "alarm_metrics",
    "bootstrap_auroc",
    "ci95",
]


def running_max(scores: np.ndarray) -> np.ndarray:
    """Running maximum ``(T,)`` of a per-step score ``(T,)`` (NaN steps count as -inf)."""
    s = np.asarray(scores, dtype=np.float64)
    s = np.where(np.isfinite(s), s, -np.inf)
    out = np.maximum.accumulate(s)
    return np.where(np.isfinite(out), out, np.nan_to_num(out, neginf=-1e12))


def score_at(running: np.ndarray, T: int) -> float:
    """The running score after T steps (index T-1), or the last value if the episode is shorter."""
    return float(running[min(T, len(running)) - 1])


def protocol_times(episodes: Sequence[Episode], *, per_task: bool = False) -> dict[str, int]:
    """T per task: the length of the shortest successful rollout among ``episodes`` (the shortest
    rollout if none succeeded). By default one T for every task, so that a score equal to elapsed
    time is exactly uninformative when results are pooled over tasks; ``per_task=True`` uses each
    task's own shortest success (tasks without a success fall back to the global T)."""
    succ = [ep.length for ep in episodes if ep.success]
    fallback = min(succ) if succ else min(ep.length for ep in episodes)
    out: dict[str, int] = {}
    for task in sorted({ep.task for ep in episodes}):
        lens = [ep.length for ep in episodes if ep.task == task and ep.success]
        out[task] = min(lens) if (lens and per_task) else fallback
    return out


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC (ties count one half); NaN if only one class is present."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(int)
    if labels.min(initial=1) == labels.max(initial=0) or len(np.unique(labels)) < 2:
        return math.nan
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (failure = positive); NaN if only one class is present."""
    from sklearn.metrics import average_precision_score

    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) < 2:
        return math.nan
    return float(average_precision_score(labels, np.asarray(scores, dtype=np.float64)))


def ranking_metrics(
    episodes: Sequence[Episode], running: Sequence[np.ndarray], times: Mapping[str, int]
) -> dict[str, Any]:
    """ROC-AUC / AP at the protocol time T, and over all steps, of running scores ``(T_i,)``."""
    labels = np.array([ep.failed for ep in episodes], dtype=int)
    at_t = np.array([score_at(r, times[ep.task]) for ep, r in zip(episodes, running, strict=True)])
    if len(episodes):
        all_scores = np.concatenate([np.asarray(r, dtype=np.float64) for r in running])
        all_labels = np.concatenate([np.full(len(r), lab) for r, lab in zip(running, labels, strict=True)])
    else:
        all_scores = all_labels = np.zeros(0)
    return {
        "n": int(len(episodes)),
        "n_failed": int(labels.sum()),
        "auroc_T": roc_auc(labels, at_t),
        "ap_T": average_precision(labels, at_t),
        "auroc_all": roc_auc(all_labels, all_scores),
        "ap_all": average_precision(all_labels, all_scores),
    }


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def alarm_metrics(
    episodes: Sequence[Episode], running: Sequence[np.ndarray], band: FunctionalBand, hz: float
) -> dict[str, Any]:
    """Alarms of running scores against ``band``.

    TPR: failed episodes with an alarm at any step; ``tpr_before``: alarm at or before
    ``failure_step``. FPR: successful episodes with an alarm. Detection time: the alarm step
    (mean over detected failures, steps and seconds). Lead time: ``failure_step - alarm step``
    over failures detected at or before ``failure_step``.
    """
    det_steps: list[float] = []
    leads: list[float] = []
    tp = tp_before = fp = 0
    n_fail = sum(ep.failed for ep in episodes)
    n_succ = len(episodes) - n_fail
    for ep, r in zip(episodes, running, strict=True):
        step = band.alarm_step(r)
        if step < 0:
            continue
        if ep.success:
            fp += 1
            continue
        tp += 1
        det_steps.append(step)
        if step <= ep.failure_step:
            tp_before += 1
            leads.append(ep.failure_step - step)
    tpr = tp / n_fail if n_fail else math.nan
    fpr = fp / n_succ if n_succ else math.nan
    return {
        "alpha": band.alpha,
        "tpr": tpr,
        "tpr_before": tp_before / n_fail if n_fail else math.nan,
        "fpr": fpr,
        "balanced_accuracy": 0.5 * (tpr + 1.0 - fpr) if n_fail and n_succ else math.nan,
        "detection_step": _mean(det_steps),
        "detection_s": _mean(det_steps) / hz if det_steps else math.nan,
        "lead_steps": _mean(leads),
        "lead_s": _mean(leads) / hz if leads else math.nan,
        "n_failed": int(n_fail),
        "n_success": int(n_succ),
    }


def bootstrap_auroc(labels: np.ndarray, scores: np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Paired bootstrap ROC-AUCs ``(M, n_boot)`` of M score vectors ``(M, n)`` on the same episode
    resamples (rank formula, ties averaged); NaN for resamples with a single class."""
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    n = labels.shape[0]
    if n == 0:
        return np.full((scores.shape[0], n_boot), np.nan)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    lab = labels[idx]  # (B, n)
    n_pos = lab.sum(axis=1)
    n_neg = n - n_pos
    out = np.empty((scores.shape[0], n_boot))
    with np.errstate(invalid="ignore", divide="ignore"):
        for m in range(scores.shape[0]):
            ranks = rankdata(scores[m][idx], axis=1)
            u = (ranks * lab).sum(axis=1) - n_pos * (n_pos + 1) / 2.0
            out[m] = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
    return out


def ci95(samples: np.ndarray) -> tuple[float, float]:
    """2.5 and 97.5 percentiles ignoring NaN (NaN, NaN if none)."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(s, [2.5, 97.5])
    return (float(lo), float(hi))
