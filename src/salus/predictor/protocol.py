"""The evaluation protocol: the one place where per-step failure scores become metrics.

Every consumer (``salus evaluate``, ``salus report``, ``salus demo``, ``salus benchmark``) calls
:func:`method_metrics` on the same episodes. An episode's score over time is the running maximum of
its per-step score (SAFE, FAIL-Detect). Steps are 0-based: the score "after t steps" is index t-1.

Metrics (each ROC-AUC gives 0.5 to a score equal to elapsed time, which failed rollouts would
otherwise win because they are longer; tested in ``tests/predictor/test_protocol.py``; average
precision gives the failure rate, its chance level):

- **SAFE-comparable** (``safe``): ROC-AUC and AP of the running score at T = the shortest rollout
  of any task and outcome (SAFE's ``set_task_min_step`` takes each task's own; one T for all keeps
  the pooled ROC-AUC at 0.5 for elapsed time when tasks differ in length and failure rate), pooled
  over tasks and as the mean over tasks.
- **At-risk** (``at_risk``): at fixed elapsed times (1, 2, 3 s) only the episodes still running with
  no failure event yet; label = the episode fails later (timeouts included: they have no event).
- **Time-matched by lead** (``lead``): steps 1-5, 6-15 and 16-40 before an event failure (drop,
  miss, collision) against steps of same-task successes at the same elapsed time.
- **Per failure type** (``types``): ROC-AUC at T of each type's failures against the successes.
- **Alarms** (``alarms``) per alpha and per threshold kind: the one-sided functional conformal band
  (SAFE / FAIL-Detect: ``max_t (s_t - mu_t) / h_t``) and a constant threshold (split conformal on
  each calibration success's maximum), both calibrated on successes only. Realised FPR on test
  successes with a Wilson interval; event-failure recall with the alarm at least 0, 0.5 and 1 s
  before ``failure_step``; detection after the event separately; lead time (median, IQR) over event
  failures caught in time; timeouts on their own (recall by the 90th percentile of calibration
  success length), never in lead time or "before failure" recall.

- **Confound-free views** (``views``, :func:`view_metrics`): SAFE and at-risk ROC-AUC on
  unperturbed episodes and within each perturbation condition (perturbations are visible from step
  0), at-risk split into positives ending in an event vs in a timeout, and SAFE prediction (the
  running score after T-1 steps on episodes with no event before T), with the share of failures
  whose event came before T.

Intervals come from a bootstrap over episodes (:func:`bootstrap_auroc`, the same resamples for every
method, so differences are paired). Over split seeds, :func:`resample_counts` and
:func:`weighted_auroc` give one resample of episode ids shared by every seed, and
:func:`seed_interval` the interval from the spread across seeds (``evaluate.aggregate_seeds``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from salus.errors import InvalidInputError

from .conformal import FunctionalBand, band_status, fit_functional_bands
from .episodes import Episode

__all__ = [
    "EVENT_TYPES",
    "ProtocolConfig",
    "running_max",
    "score_at",
    "safe_times",
    "roc_auc",
    "average_precision",
    "safe_metrics",
    "at_risk_scores",
    "at_risk_auroc",
    "time_matched_auroc",
    "type_metrics",
    "constant_band",
    "fit_bands",
    "alarm_steps",
    "alarm_metrics",
    "wilson",
    "bootstrap_auroc",
    "ci95",
    "method_metrics",
    "condition",
    "view_samples",
    "view_metrics",
    "resample_counts",
    "weighted_auroc",
    "seed_interval",
    "wider",
    "lead_names",
]

EVENT_TYPES: tuple[str, ...] = ("drop", "miss", "collision")


@dataclass(frozen=True)
class ProtocolConfig:
    """What the protocol measures; every time in seconds (a robot at 10 Hz and one at 50 Hz are
    read at the same times). ``lead_bins_s``: the time-matched ROC-AUC's lead bins (lo, hi] in
    seconds before the event; the control steps k with lo < k / control_hz <= hi fall in a bin
    (:meth:`lead_steps`; at 20 Hz 1-5, 6-15, 16-40 steps, at 10 Hz 1-2, 3-7, 8-20)."""

    alphas: tuple[float, ...] = (0.05, 0.1, 0.2)
    at_risk_s: tuple[float, ...] = (1.0, 2.0, 3.0)
    lead_bins_s: tuple[tuple[float, float], ...] = ((0.0, 0.25), (0.25, 0.75), (0.75, 2.0))
    recall_leads_s: tuple[float, ...] = (0.0, 0.5, 1.0)
    event_types: tuple[str, ...] = EVENT_TYPES
    thresholds: tuple[str, ...] = ("band", "constant")
    control_hz: float = 20.0
    fit_fraction: float = 0.3  # calibration successes that estimate mu_t, h_t (SAFE: 30%)
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.alphas or any(not 0.0 < a < 1.0 for a in self.alphas):
            raise InvalidInputError(f"alphas must be in (0, 1), got {self.alphas}")
        if any(t <= 0 for t in self.at_risk_s) or any(t < 0 for t in self.recall_leads_s):
            raise InvalidInputError("at_risk_s must be > 0 and recall_leads_s >= 0 seconds")
        if not self.lead_bins_s or any(not 0 <= lo < hi for lo, hi in self.lead_bins_s):
            raise InvalidInputError(
                f"lead bins must be seconds (lo, hi] with 0 <= lo < hi, got {self.lead_bins_s}"
            )
        bad = set(self.thresholds) - {"band", "constant"}
        if bad:
            from salus.errors import InvalidNameError

            raise InvalidNameError("threshold kind", sorted(bad)[0], ("band", "constant"))
        if self.control_hz <= 0 or self.n_boot < 0:
            raise InvalidInputError("control_hz must be > 0 and n_boot >= 0")

    def lead_steps(self) -> dict[str, tuple[int, int]]:
        """Each lead bin's name (``"0.25-0.75s"``) -> its control steps (first, last): the steps k
        with lo < k / control_hz <= hi. Refused when a bin holds no step at this control rate."""
        out = {}
        for lo_s, hi_s in self.lead_bins_s:
            first = int(math.floor(lo_s * self.control_hz + 1e-9)) + 1
            last = int(math.floor(hi_s * self.control_hz + 1e-9))
            if last < first:
                raise InvalidInputError(
                    f"lead bin ({lo_s:g}, {hi_s:g}] s holds no control step at {self.control_hz:g} Hz; "
                    f"widen it to at least {1 / self.control_hz:g} s"
                )
            out[f"{lo_s:g}-{hi_s:g}s"] = (first, last)
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lead_names(protocol: Mapping[str, Any]) -> list[str]:
    """The lead bins' names in a written protocol (a report's ``protocol``): ``"0.25-0.75s"``, or
    ``"6-15"`` (control steps) for reports written before the bins were in seconds."""
    if "lead_bins_s" in protocol:
        return [f"{lo:g}-{hi:g}s" for lo, hi in protocol["lead_bins_s"]]
    return [f"{lo}-{hi}" for lo, hi in protocol.get("lead_bins") or ()]


# ---------------------------------------------------------------------------------------- basics
def running_max(scores: np.ndarray) -> np.ndarray:
    """Running maximum ``(T,)`` of a per-step score ``(T,)`` (NaN steps count as -inf)."""
    s = np.asarray(scores, dtype=np.float64)
    s = np.where(np.isfinite(s), s, -np.inf)
    out = np.maximum.accumulate(s)
    return np.where(np.isfinite(out), out, np.nan_to_num(out, neginf=-1e12))


def score_at(running: np.ndarray, T: int) -> float:
    """The running score after T steps (index T-1), or the last value if the episode is shorter."""
    return float(running[min(T, len(running)) - 1])


def safe_times(episodes: Sequence[Episode]) -> dict[str, int]:
    """T of each task: the shortest rollout among ``episodes``, of any task and outcome, the same for
    every task. SAFE's ``set_task_min_step`` takes each task's own shortest rollout; pooling tasks
    read at different times would rank a score of elapsed time by the tasks' lengths and failure
    rates (not 0.5), so every pooled metric reads all episodes at one T."""
    if not episodes:
        return {}
    common = min(ep.length for ep in episodes)
    return {task: common for task in sorted({ep.task for ep in episodes})}


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis with ties averaged (scipy's ``rankdata(method="average")``),
    float64, same shape; a row holding a NaN is all NaN (scipy's ``nan_policy="propagate"``).
    Numpy only: scipy's per-call overhead dominated the evaluation's many small rankings."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.size == 0:
        return arr.copy()
    rows = arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr.reshape(1, 1)
    r, n = rows.shape
    order = np.argsort(rows, axis=1, kind="mergesort")
    xs = np.take_along_axis(rows, order, axis=1)
    pos = np.broadcast_to(np.arange(n), (r, n))
    first = np.ones((r, n), dtype=bool)
    first[:, 1:] = xs[:, 1:] != xs[:, :-1]
    last = np.ones((r, n), dtype=bool)
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, n - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((r, n))
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=1)
    ranks[np.isnan(rows).any(axis=1)] = np.nan
    return ranks.reshape(arr.shape)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC (ties count one half); NaN if only one class is present or a score is NaN."""
    lab = np.asarray(labels).astype(bool)
    n_pos = int(lab.sum())
    n_neg = lab.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[lab].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (failure = positive; scikit-learn's ``average_precision_score``: the step
    integral of precision over recall at every distinct score); NaN if only one class is present
    or a score is NaN. Numpy only: scikit-learn's per-call checks dominated the evaluation."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.all() or not y.any() or np.isnan(s).any():
        return math.nan
    order = np.argsort(-s, kind="mergesort")  # descending; ties are grouped below
    s, hit = s[order], y[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # the last position of each distinct score
    tps = np.cumsum(hit)[last]
    fps = 1.0 + last - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    precision, recall = np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0]
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n (NaN, NaN when n = 0)."""
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_auroc(labels: np.ndarray, scores: np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Paired bootstrap ROC-AUCs ``(M, n_boot)`` of M score vectors ``(M, n)`` on the same episode
    resamples (ties count one half); NaN for resamples with a single class or a NaN score.

    Each resample is a count per episode; with the episodes sorted by score once per method, its
    Mann-Whitney U is the sum over distinct scores of (positives there) x (negatives below + half
    the negatives there): the same half-integer sum as the rank formula (ranks of the resampled
    scores, ties averaged), so the same numbers, without sorting every resample."""
    labels = np.asarray(labels).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    n = labels.shape[0]
    if n == 0 or n_boot == 0:
        return np.full((scores.shape[0], n_boot), np.nan)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    counts = np.bincount((idx + n * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * n)
    counts = counts.reshape(n_boot, n).astype(np.float64)  # (B, n) times each episode is drawn
    pos, neg = counts * labels, counts * ~labels
    n_pos = pos.sum(axis=1)
    n_neg = n - n_pos
    both = (n_pos > 0) & (n_neg > 0)
    out = np.empty((scores.shape[0], n_boot))
    with np.errstate(invalid="ignore", divide="ignore"):
        for m in range(scores.shape[0]):
            s = scores[m]
            order = np.argsort(s, kind="mergesort")
            xs = s[order]
            starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # first position of each distinct score
            pos_at = np.add.reduceat(pos[:, order], starts, axis=1)  # (B, G) positives per distinct score
            neg_at = np.add.reduceat(neg[:, order], starts, axis=1)
            below = np.cumsum(neg_at, axis=1) - neg_at
            u = (pos_at * (below + 0.5 * neg_at)).sum(axis=1)
            auc = np.where(both, u / (n_pos * n_neg), np.nan)
            nan = np.isnan(s)
            if nan.any():  # a resample that drew a NaN-scored episode has no ROC-AUC (as the ranks)
                auc[(counts[:, nan] > 0).any(axis=1)] = np.nan
            out[m] = auc
    return out


def ci95(samples: np.ndarray) -> tuple[float, float]:
    """2.5 and 97.5 percentiles ignoring NaN (NaN, NaN if none)."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(s, [2.5, 97.5])
    return (float(lo), float(hi))


def resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n)`` multiplicities of n items (episode ids) in ``n_boot`` bootstrap resamples of
    size n: one resample, to be shared by every consumer of these ids (every split seed)."""
    out = np.zeros((n_boot, n))
    if n == 0 or n_boot == 0:
        return out
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    np.add.at(out, (np.repeat(np.arange(n_boot), n), idx.ravel()), 1.0)
    return out


def weighted_auroc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUCs ``(M, B)`` of M score vectors ``(M, n)`` with B weight vectors ``(B, n)`` (episode
    multiplicities of a resample; ties count one half, as :func:`roc_auc`); NaN where a class has
    zero weight. With all weights 1 it equals :func:`roc_auc`."""
    lab = np.asarray(labels).astype(bool)
    sc = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    out = np.full((sc.shape[0], w.shape[0]), np.nan)
    if lab.size == 0:
        return out
    wp_all, wn_all = w * lab, w * ~lab
    tot_p, tot_n = wp_all.sum(axis=1), wn_all.sum(axis=1)
    ok = (tot_p > 0) & (tot_n > 0)
    for m in range(sc.shape[0]):
        order = np.argsort(sc[m], kind="stable")
        s = sc[m][order]
        wp, wn = wp_all[:, order], wn_all[:, order]
        cum = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(wn, axis=1)], axis=1)  # (B, n + 1)
        new = np.r_[True, s[1:] != s[:-1]]
        group = np.cumsum(new) - 1  # tie group of each sorted position
        starts = np.flatnonzero(new)
        start = starts[group]  # first position of the group
        last = np.append(starts[1:], s.size)[group]  # one past its last position
        below = cum[:, start]
        tied = cum[:, last] - below
        with np.errstate(invalid="ignore", divide="ignore"):
            out[m] = np.where(ok, (wp * (below + 0.5 * tied)).sum(axis=1) / (tot_p * tot_n), np.nan)
    return out


def seed_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Interval of the mean over split seeds from their spread: mean +- t(k-1) sd / sqrt(k)
    (NaN, NaN with fewer than two finite values)."""
    from scipy.stats import t as student_t

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return (math.nan, math.nan)
    half = float(student_t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return (float(v.mean()) - half, float(v.mean()) + half)


def wider(*intervals: Sequence[float]) -> tuple[float, float]:
    """The widest of the finite intervals (NaN, NaN if none is finite)."""
    finite = [(float(lo), float(hi)) for lo, hi in intervals if math.isfinite(lo) and math.isfinite(hi)]
    if not finite:
        return (math.nan, math.nan)
    return max(finite, key=lambda iv: iv[1] - iv[0])


# -------------------------------------------------------------------------------------- ranking
def safe_metrics(
    episodes: Sequence[Episode], running: Sequence[np.ndarray], times: Mapping[str, int]
) -> dict[str, Any]:
    """SAFE's ROC-AUC / AP of the running score at T per task, pooled and as the mean over tasks."""
    labels = np.array([ep.failed for ep in episodes], dtype=bool)
    at_t = np.array([score_at(r, times[ep.task]) for ep, r in zip(episodes, running, strict=True)])
    tasks = sorted({ep.task for ep in episodes})
    per_task = {}
    for task in tasks:
        m = np.array([ep.task == task for ep in episodes])
        per_task[task] = {"auroc": roc_auc(labels[m], at_t[m]), "ap": average_precision(labels[m], at_t[m])}
    finite = [v["auroc"] for v in per_task.values() if not math.isnan(v["auroc"])]
    finite_ap = [v["ap"] for v in per_task.values() if not math.isnan(v["ap"])]
    return {
        "n": int(len(episodes)),
        "n_failed": int(labels.sum()),
        "auroc": roc_auc(labels, at_t),
        "ap": average_precision(labels, at_t),
        "auroc_task_mean": float(np.mean(finite)) if finite else math.nan,
        "ap_task_mean": float(np.mean(finite_ap)) if finite_ap else math.nan,
        "per_task": per_task,
    }


def at_risk_scores(
    episodes: Sequence[Episode], running: Sequence[np.ndarray], step: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(episode positions, labels, scores) of the episodes at risk at ``step``: still running
    (``length > step``) with no failure event yet (success, timeout, or ``failure_step > step``);
    label = the episode fails later; score = running score at ``step`` (index ``step``)."""
    idx, lab, sc = [], [], []
    for k, (ep, r) in enumerate(zip(episodes, running, strict=True)):
        if ep.length <= step:
            continue
        if ep.failed and ep.failure_type != "timeout" and ep.failure_step <= step:
            continue
        idx.append(k)
        lab.append(ep.failed)
        sc.append(float(r[step]))
    return np.array(idx, dtype=int), np.array(lab, dtype=bool), np.array(sc, dtype=np.float64)


def at_risk_auroc(episodes: Sequence[Episode], running: Sequence[np.ndarray], step: int) -> dict[str, Any]:
    """ROC-AUC at one elapsed ``step`` over the episodes at risk then (see :func:`at_risk_scores`)."""
    _, lab, sc = at_risk_scores(episodes, running, step)
    return {"auroc": roc_auc(lab, sc), "n": int(lab.size), "n_failed": int(lab.sum())}


def _lead_matrix(
    episodes: Sequence[Episode], running: Sequence[np.ndarray], lo: int, hi: int, event_types: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``(A, V)``, each (n_event_failures, n_successes): for failure i and success j of the same
    task, A = summed comparison credit (1 above, 1/2 tie) over the failure's steps ``f - hi .. f - lo``
    at which j is still running, V = the number of such comparisons."""
    fails = [k for k, ep in enumerate(episodes) if ep.failed and ep.failure_type in event_types]
    succs = [k for k, ep in enumerate(episodes) if ep.success]
    A = np.zeros((len(fails), len(succs)))
    V = np.zeros((len(fails), len(succs)))
    if not fails or not succs:
        return A, V
    s_len = np.array([episodes[j].length for j in succs])
    s_task = np.array([episodes[j].task for j in succs])
    L = int(s_len.max())
    S = np.full((len(succs), L), np.nan)
    for c, j in enumerate(succs):
        S[c, : len(running[j])] = running[j]
    for r, i in enumerate(fails):
        ep = episodes[i]
        f = ep.failure_step
        steps = np.arange(max(0, f - hi), max(0, f - lo + 1))
        steps = steps[steps < min(ep.length, L)]
        if steps.size == 0:
            continue
        same = s_task == ep.task
        p = np.asarray(running[i])[steps][:, None]  # (s, 1)
        n = S[:, steps].T  # (s, n_succ)
        ok = np.isfinite(n) & same[None, :]
        credit = np.where(ok, (p > n) + 0.5 * (p == n), 0.0)
        A[r] = credit.sum(axis=0)
        V[r] = ok.sum(axis=0)
    return A, V


def _lead_auc(
    A: np.ndarray, V: np.ndarray, WF: np.ndarray | None = None, WS: np.ndarray | None = None
) -> np.ndarray:
    """Time-matched AUCs ``(B,)`` from the comparison matrices, one per weighting: the mean over
    failures (weights ``WF`` (B, failures)) of each failure's credit against the successes (weights
    ``WS`` (B, successes)); NaN where no weighted failure has a comparison. Without weights: the
    point estimate, ``(1,)``."""
    WF = np.ones((1, A.shape[0])) if WF is None else WF
    WS = np.ones((1, A.shape[1])) if WS is None else WS
    num, den = A @ WS.T, V @ WS.T  # (failures, B)
    ok = den > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(ok, num / np.where(ok, den, 1.0), 0.0)
        weight = (WF * ok.T).sum(axis=1)
        auc = (WF * ratio.T).sum(axis=1) / weight
    return np.where(weight > 0, auc, np.nan)


def time_matched_auroc(
    episodes: Sequence[Episode],
    running: Sequence[np.ndarray],
    lo: int,
    hi: int,
    *,
    event_types: Sequence[str] = EVENT_TYPES,
    n_boot: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """ROC-AUC of steps ``lo..hi`` before an event failure against steps of same-task successes at
    the same elapsed time; each failure weighs the same. ``n_boot`` > 0 adds a 95% bootstrap
    interval over failure and success episodes."""
    A, V = _lead_matrix(episodes, running, lo, hi, event_types)
    auc = float(_lead_auc(A, V)[0])
    out: dict[str, Any] = {"auroc": auc, "n_failed": int((V.sum(axis=1) > 0).sum()), "ci95": [math.nan] * 2}
    if n_boot and A.size:
        WF, WS = _resample_weights(A.shape[0], A.shape[1], n_boot, seed)
        out["ci95"] = list(ci95(_lead_auc(A, V, WF, WS)))
    return out


@functools.lru_cache(maxsize=32)
def _resample_weights(nf: int, ns: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap weights (times drawn) of nf failures ``(n_boot, nf)`` and ns successes
    ``(n_boot, ns)``, the draws in the order of one resample at a time. They depend only on the
    counts and the seed, so every method of a view shares them (computed once, read-only)."""
    rng = np.random.default_rng(seed)
    WF, WS = np.empty((n_boot, nf)), np.empty((n_boot, ns))
    for b in range(n_boot):
        WF[b] = np.bincount(rng.integers(0, nf, nf), minlength=nf)
        WS[b] = np.bincount(rng.integers(0, ns, ns), minlength=ns)
    WF.flags.writeable = WS.flags.writeable = False
    return WF, WS


def type_metrics(
    episodes: Sequence[Episode], running: Sequence[np.ndarray], times: Mapping[str, int], types: Sequence[str]
) -> dict[str, Any]:
    """Per failure type: ROC-AUC at T (per task, pooled) of that type's failures against successes."""
    at_t = np.array([score_at(r, times[ep.task]) for ep, r in zip(episodes, running, strict=True)])
    out = {}
    for t in types:
        m = np.array([ep.success or ep.failure_type == t for ep in episodes], dtype=bool)
        lab = np.array([ep.failure_type == t for ep in episodes], dtype=bool)
        out[t] = {"auroc": roc_auc(lab[m], at_t[m]), "n": int(lab.sum())}
    return out


# ------------------------------------------------------------------------------ confound views
def condition(episode: Episode) -> str:
    """An episode's perturbation condition: the sorted names of the perturbations it ran under
    (strength > 0), joined by ``+``; ``none`` for an unperturbed episode. Strengths are drawn per
    episode, so the condition is the perturbation kind, not its strength."""
    names = sorted({str(p.get("name")) for p in episode.perturbations if float(p.get("strength", 1.0)) > 0})
    return "+".join(names) if names else "none"


def _event_before(ep: Episode, step: int, event_types: Sequence[str]) -> bool:
    """The episode had a failure event (drop, miss, collision; never a timeout) before ``step``."""
    return ep.failed and ep.failure_type in event_types and ep.failure_step < step


def view_samples(
    episodes: Sequence[Episode],
    running: Sequence[np.ndarray],
    times: Mapping[str, int],
    config: ProtocolConfig,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every single-ROC-AUC view of the protocol as ``metric -> (positions, labels, scores)``
    (positions index ``episodes``; positions and labels do not depend on the scores, so every
    method of one test set has the same ones and their bootstraps are paired):

    - ``safe``: the running score at T per task (SAFE); ``at_risk_<t>s``: :func:`at_risk_scores`.
    - ``safe_unperturbed`` / ``at_risk_<t>s_unperturbed``: the same on unperturbed episodes only,
      and ``safe@<condition>`` / ``at_risk_<t>s@<condition>`` within each perturbation condition
      (:func:`condition`): perturbations are visible from step 0 and change the failure rate, so a
      score that only recognises the condition ranks well on the pooled metrics.
    - ``at_risk_<t>s_event`` / ``at_risk_<t>s_timeout``: at-risk positives that end in an event
      failure / in a timeout, each against the same negatives (the at-risk successes).
    - ``safe_prediction``: the running score after T-1 steps on the episodes with no event before
      T (timeouts have none), so an event at T-1 or earlier cannot be detected instead of predicted.
    """
    hz = config.control_hz
    conds = [condition(ep) for ep in episodes]
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def add(name: str, pos: Any, lab: Any, sc: Any) -> None:
        out[name] = (
            np.asarray(pos, dtype=int),
            np.asarray(lab, dtype=bool),
            np.asarray(sc, dtype=np.float64),
        )

    at_t = [score_at(r, times[ep.task]) for ep, r in zip(episodes, running, strict=True)]
    allpos = list(range(len(episodes)))
    failed = [ep.failed for ep in episodes]
    add("safe", allpos, failed, at_t)
    keep = [k for k in allpos if conds[k] == "none"]
    add("safe_unperturbed", keep, [failed[k] for k in keep], [at_t[k] for k in keep])
    for c in sorted(set(conds) - {"none"}):  # "none" is the unperturbed view
        keep = [k for k in allpos if conds[k] == c]
        add(f"safe@{c}", keep, [failed[k] for k in keep], [at_t[k] for k in keep])
    keep, pred = [], []
    for k, (ep, r) in enumerate(zip(episodes, running, strict=True)):
        T = times[ep.task]
        if T >= 2 and not _event_before(ep, T, config.event_types):
            keep.append(k)
            pred.append(score_at(r, T - 1))
    add("safe_prediction", keep, [failed[k] for k in keep], pred)
    for t in config.at_risk_s:
        name = f"at_risk_{t:g}s"
        pos, lab, sc = at_risk_scores(episodes, running, int(round(t * hz)))
        add(name, pos, lab, sc)
        unp = np.array([conds[k] == "none" for k in pos], dtype=bool)
        add(f"{name}_unperturbed", pos[unp], lab[unp], sc[unp])
        for c in sorted(set(conds) - {"none"}):  # "none" is the unperturbed view
            m = np.array([conds[k] == c for k in pos], dtype=bool)
            add(f"{name}@{c}", pos[m], lab[m], sc[m])
        timeout = np.array([episodes[k].failure_type == "timeout" for k in pos], dtype=bool)
        for end, m in (("event", ~lab | ~timeout), ("timeout", ~lab | timeout)):
            add(f"{name}_{end}", pos[m], lab[m], sc[m])
    return out


def view_metrics(
    episodes: Sequence[Episode],
    running: Sequence[np.ndarray],
    times: Mapping[str, int],
    config: ProtocolConfig,
) -> dict[str, Any]:
    """ROC-AUC (with n, n_failed) of every view of :func:`view_samples` but the plain ``safe`` and
    ``at_risk`` (already in :func:`safe_metrics`, :func:`at_risk_auroc`), the conditions present,
    and the share of failures whose event came before T (Wilson interval): the failures that SAFE's
    ROC-AUC at T may detect rather than predict."""
    samples = view_samples(episodes, running, times, config)
    plain = {"safe", *(f"at_risk_{t:g}s" for t in config.at_risk_s)}
    out: dict[str, Any] = {
        name: {"auroc": roc_auc(lab, sc), "n": int(lab.size), "n_failed": int(lab.sum())}
        for name, (_, lab, sc) in samples.items()
        if name not in plain
    }
    conds = [condition(ep) for ep in episodes]
    out["conditions"] = {c: conds.count(c) for c in sorted(set(conds))}
    n_failed = sum(ep.failed for ep in episodes)
    k = sum(_event_before(ep, times[ep.task], config.event_types) for ep in episodes)
    out["event_before_T"] = {
        "share": _frac(k, n_failed),
        "k": int(k),
        "n": int(n_failed),
        "ci95": list(wilson(k, n_failed)),
    }
    return out


# --------------------------------------------------------------------------------------- alarms
def constant_band(maxima: Sequence[float], alpha: float) -> FunctionalBand:
    """Split conformal constant threshold: the ``ceil((n+1)(1-alpha))``-th smallest of the
    calibration successes' maxima (infinite when that rank exceeds n)."""
    ranked = np.sort(np.asarray(maxima, dtype=np.float64))
    n = ranked.size
    rank = math.ceil((n + 1) * (1.0 - alpha))
    q = float(ranked[rank - 1]) if 1 <= rank <= n else math.inf
    return FunctionalBand(np.zeros(1), np.ones(1), q, float(alpha), 0, int(n), two_sided=False)


def fit_bands(
    calib_running: Sequence[np.ndarray], config: ProtocolConfig
) -> dict[str, dict[float, FunctionalBand]]:
    """Per threshold kind (``band``: one-sided functional band, ``constant``), one threshold per
    alpha, from the calibration successes' running scores."""
    out: dict[str, dict[float, FunctionalBand]] = {}
    if "band" in config.thresholds:
        out["band"] = fit_functional_bands(
            calib_running, config.alphas, two_sided=False, fit_fraction=config.fit_fraction, seed=config.seed
        )
    if "constant" in config.thresholds:
        maxima = [float(np.max(r)) for r in calib_running]
        out["constant"] = {float(a): constant_band(maxima, a) for a in config.alphas}
    return out


def alarm_steps(running: Sequence[np.ndarray], band: FunctionalBand) -> np.ndarray:
    """First alarm step of each episode (-1: none)."""
    return np.array([band.alarm_step(r) for r in running], dtype=int)


def _frac(k: int, n: int) -> float:
    return k / n if n else math.nan


def alarm_metrics(
    episodes: Sequence[Episode],
    running: Sequence[np.ndarray],
    band: FunctionalBand,
    config: ProtocolConfig,
    *,
    timeout_step: int,
) -> dict[str, Any]:
    """What a user of the monitor gets at one threshold (see the module docstring)."""
    a = alarm_steps(running, band)
    hz = config.control_hz
    succ = [k for k, ep in enumerate(episodes) if ep.success]
    events = [k for k, ep in enumerate(episodes) if ep.failed and ep.failure_type in config.event_types]
    timeouts = [k for k, ep in enumerate(episodes) if ep.failed and ep.failure_type == "timeout"]
    fp = int(sum(a[k] >= 0 for k in succ))
    out: dict[str, Any] = {
        "alpha": band.alpha,
        "threshold": band.half_width if math.isfinite(band.half_width) else math.inf,
        "finite": bool(math.isfinite(band.half_width)),
        "n_cal": band.n_cal,
        **{
            k: v
            for k, v in band_status(band, config.fit_fraction).items()
            if k in ("n_cal_needed", "n_successes", "successes_needed")
        },
        "n_success": len(succ),
        "n_event": len(events),
        "n_timeout": len(timeouts),
        "fpr": _frac(fp, len(succ)),
        "fpr_ci95": list(wilson(fp, len(succ))),
    }
    f = {k: episodes[k].failure_step for k in events}
    for lead in config.recall_leads_s:
        steps = int(round(lead * hz))
        k_ok = sum(0 <= a[k] <= f[k] - steps for k in events)
        out[f"event_recall_{lead:g}s"] = _frac(k_ok, len(events))
        out[f"event_recall_{lead:g}s_ci95"] = list(wilson(k_ok, len(events)))
    out["event_after"] = _frac(sum(a[k] > f[k] for k in events), len(events))
    out["event_any"] = _frac(sum(a[k] >= 0 for k in events), len(events))
    leads = np.array([f[k] - a[k] for k in events if 0 <= a[k] <= f[k]], dtype=float) / hz
    out["lead_s_median"] = float(np.median(leads)) if leads.size else math.nan
    out["lead_s_iqr"] = [float(v) for v in np.percentile(leads, [25, 75])] if leads.size else [math.nan] * 2
    out["lead_s"] = [float(v) for v in leads]
    out["timeout_recall"] = _frac(sum(0 <= a[k] <= timeout_step for k in timeouts), len(timeouts))
    out["timeout_step"] = int(timeout_step)
    per_type = {}
    for t in config.event_types:
        ks = [k for k in events if episodes[k].failure_type == t]
        per_type[t] = _frac(sum(0 <= a[k] <= f[k] for k in ks), len(ks))
    out["event_recall_by_type"] = per_type
    return out


# ------------------------------------------------------------------------------------ one method
def method_metrics(
    episodes: Sequence[Episode],
    running: Sequence[np.ndarray],
    times: Mapping[str, int],
    bands: Mapping[str, Mapping[float, FunctionalBand]],
    config: ProtocolConfig,
    *,
    timeout_step: int,
    failure_types: Sequence[str] = (*EVENT_TYPES, "timeout"),
) -> dict[str, Any]:
    """Every metric of the protocol for one method on one test set (running scores per episode)."""
    hz = config.control_hz
    out: dict[str, Any] = {"safe": safe_metrics(episodes, running, times)}
    out["at_risk"] = {
        f"{t:g}s": at_risk_auroc(episodes, running, int(round(t * hz))) for t in config.at_risk_s
    }
    out["lead"] = {
        name: time_matched_auroc(
            episodes,
            running,
            lo,
            hi,
            event_types=config.event_types,
            n_boot=config.n_boot // 5,
            seed=config.seed,
        )
        for name, (lo, hi) in config.lead_steps().items()
    }
    out["types"] = type_metrics(episodes, running, times, failure_types)
    out["views"] = view_metrics(episodes, running, times, config)
    out["alarms"] = {
        kind: {
            str(a): alarm_metrics(episodes, running, b, config, timeout_step=timeout_step)
            for a, b in by.items()
        }
        for kind, by in bands.items()
    }
    return out
