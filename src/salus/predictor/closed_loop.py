"""Closed-loop value of an alarm: what stopping the robot or asking a person at the alarm buys.

For fresh episodes (seeds never used in training, validation or calibration) of the policy alone,
each method's alarm step at each alpha is its first step above the functional band calibrated on
the benchmark's calibration successes (the monitor's rule). The closed-loop episode with the
monitor is the policy alone up to that step (the monitor only watches), then:

- ``handover``: the scripted expert (the person) finishes the episode; simulated by
  :func:`salus.sim.handover.replay_handovers`. Assisted success = the episode ends in success and
  the handover came no later than the failure event (a handover after the event is a help request
  that saved nothing: it counts as a failure). The ceiling is the person in charge from step 0.
- ``stop``: the robot holds at the alarm and the episode ends *stopped*. Known without simulation
  from the policy-alone episode: a failure is *prevented* when the stop comes no later than its
  event (timeouts, which have no event, are counted apart), a success stopped is a *needless* stop.

Random help requests are the floor: an alarm with a constant per-step hazard, chosen so that the
expected fraction of a group's episodes with a request equals the asked rate (one uniform draw per
episode serves every hazard and group: common random numbers).

Equal cost (:func:`sweep_plans`, the ``equal_cost`` part of :func:`closed_loop_metrics`): methods
differ in how often they ask at a given alpha, so they are compared as curves. For each group
(pooled, seen, unseen, each task) and method, a constant threshold on the running max score is
swept: the thresholds are the group's episode maxima that give help rates nearest to
``SWEEP_RATES`` (alarm at the first step whose running max reaches the threshold); random
requests are swept over the hazards that give those rates on the group. Each curve is the
piecewise-linear path from the policy alone (no request) through its points in order of
aggressiveness; :func:`curve_at` reads it at ``FIXED_RATES`` and :func:`curve_area` integrates it
over help rates 0 to 1 (normalised: the mean success over that range). Stops use the same sweep:
failures prevented against needless stops. Thresholds are swept, never picked; the calibrated
alphas stay the operating points.

Intervals: Wilson for rates; differences (method minus random in the same group and at the same
rate, our validation pick minus each comparator) by a paired bootstrap over the group's episodes
(:func:`~salus.predictor.protocol.resample_counts`: one resample per group shared by every curve;
on a resample each fixed threshold gives its own rate and success).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from salus.errors import InvalidInputError

from .protocol import ci95, resample_counts, running_max, wilson

__all__ = [
    "CLOSED_LOOP_ALPHAS",
    "CLOSED_LOOP_COMPARATORS",
    "SWEEP_RATES",
    "FIXED_RATES",
    "RANDOM",
    "FreshEpisode",
    "SweepPoint",
    "episode_groups",
    "alarm_plan",
    "random_alarms",
    "threshold_sweep",
    "sweep_plans",
    "handover_steps",
    "curve_at",
    "curve_area",
    "closed_loop_metrics",
]

# Fixed in advance (never chosen on the fresh episodes): the alphas of the curve, and the methods
# besides our validation pick: the two published detectors that came closest to it in the open-loop
# benchmark (the hardest comparison; each method costs a few thousand simulated episodes).
CLOSED_LOOP_ALPHAS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)
CLOSED_LOOP_COMPARATORS: tuple[str, ...] = ("safe-lstm", "embedding:knn_cosine")
# The equal-cost sweep: help rates whose thresholds are simulated (per group; the bound on the
# counterfactual episodes), and the rates at which every curve is read.
SWEEP_RATES: tuple[float, ...] = tuple(k / 8 for k in range(1, 9))
FIXED_RATES: tuple[float, ...] = (0.25, 0.5)
RANDOM = "random"
BOOT = 1000


@dataclass(frozen=True)
class FreshEpisode:
    """One fresh policy-alone episode (its label is the ground truth of the counterfactuals)."""

    key: str
    task: str
    unseen: bool
    success: bool
    failure_step: int  # -1 for a success
    failure_type: str
    length: int

    @property
    def event(self) -> bool:
        """Failed with a physical event (drop, miss, collision); timeouts have none."""
        return not self.success and self.failure_type != "timeout"


def alarm_plan(
    evaluation: Any,
    indices: Sequence[int],
    methods: Sequence[str],
    alphas: Sequence[float],
    *,
    kind: str = "band",
) -> dict[str, dict[float, np.ndarray]]:
    """Per method and alpha, the first alarm step of each episode ``indices`` of ``evaluation``
    (an :class:`~salus.predictor.evaluate.Evaluation`), -1 when it never alarms."""
    by_name = {m.name: m for m in evaluation.methods}
    missing = [m for m in methods if m not in by_name]
    if missing:
        raise InvalidInputError(f"methods {missing} were not evaluated; evaluated: {sorted(by_name)}")
    out: dict[str, dict[float, np.ndarray]] = {}
    for name in methods:
        bands = evaluation.bands[name][kind]
        runs = [running_max(by_name[name].scores[i]) for i in indices]
        out[name] = {}
        for a in alphas:
            band = next((b for k, b in bands.items() if abs(float(k) - a) < 1e-12), None)
            if band is None:
                raise InvalidInputError(f"no {kind} threshold at alpha {a}; fitted: {sorted(bands)}")
            out[name][float(a)] = np.array([band.alarm_step(r) for r in runs], dtype=int)
    return out


def _hazard_for(rate: float, lengths: np.ndarray) -> float:
    """The per-step hazard h with mean(1 - (1 - h)^L) = rate (bisection)."""
    if rate <= 0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if float(np.mean(1 - (1 - mid) ** lengths)) < rate:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True)
class SweepPoint:
    """One point of a swept alarm: ``level`` is the threshold on the running max (a method) or
    the per-step hazard (random); ``alarms`` the first request step of every episode, -1 for none
    and for episodes outside the point's group."""

    level: float
    alarms: np.ndarray


def episode_groups(episodes: Sequence[FreshEpisode]) -> dict[str, np.ndarray]:
    """The reporting groups as masks over ``episodes``: pooled, seen, unseen, each task (non-empty)."""
    n = len(episodes)
    groups: dict[str, np.ndarray] = {"pooled": np.ones(n, dtype=bool)}
    groups["seen"] = np.array([not e.unseen for e in episodes], dtype=bool)
    groups["unseen"] = np.array([e.unseen for e in episodes], dtype=bool)
    for task in sorted({e.task for e in episodes}):
        groups[task] = np.array([e.task == task for e in episodes], dtype=bool)
    return {g: sel for g, sel in groups.items() if sel.any()}


def _uniforms(n: int, seed: int) -> np.ndarray:
    """One uniform draw per episode: the random requests' common random numbers."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0xA551])).random(n)


def random_alarms(
    lengths: Sequence[int], rates: Sequence[float], seed: int = 0, *, within: np.ndarray | None = None
) -> dict[float, np.ndarray]:
    """Random help requests: for each target rate, each episode's first request of a constant-hazard
    process (-1: none before the episode ends), seeded. One uniform draw per episode serves every
    rate (common random numbers), so the floor's curve is monotone in the rate. ``within`` (a mask):
    the hazard gives the rate on those episodes; the others get -1 (their draws are unchanged)."""
    L = np.asarray(lengths, dtype=np.int64)
    sel = np.ones(len(L), dtype=bool) if within is None else np.asarray(within, dtype=bool)
    u = _uniforms(len(L), seed)
    out: dict[float, np.ndarray] = {}
    for r in rates:
        h = _hazard_for(float(r), L[sel].astype(float))
        out[float(r)] = _first_request(u, L, h, sel)
    return out


def _first_request(u: np.ndarray, L: np.ndarray, h: float, sel: np.ndarray) -> np.ndarray:
    if h <= 0:
        return np.full(len(L), -1)
    t = np.floor(np.log1p(-u) / math.log1p(-h)).astype(np.int64) if h < 1 else np.zeros(len(L), np.int64)
    return np.where((t < L) & sel, t, -1)


def threshold_sweep(
    runs: Sequence[np.ndarray], within: np.ndarray, rates: Sequence[float]
) -> list[SweepPoint]:
    """A constant threshold on the running max, swept over the episodes ``within`` (a mask): for
    each target rate, the episode maximum whose count of episodes reaching it is nearest to
    rate * n (the higher threshold on a tie); an episode requests help at the first step whose
    running max reaches it. Points in increasing rate, distinct thresholds; the others get -1."""
    sel = np.asarray(within, dtype=bool)
    idx = np.flatnonzero(sel)
    maxima = np.array([float(runs[int(i)][-1]) if len(runs[int(i)]) else -np.inf for i in idx])
    if maxima.size == 0:
        return []
    levels = np.unique(maxima)[::-1]  # descending
    reach = np.array([(maxima >= v).sum() for v in levels])  # increasing
    out: list[SweepPoint] = []
    for q in sorted(float(r) for r in rates):
        c = float(levels[int(np.argmin(np.abs(reach - q * len(idx))))])
        if out and out[-1].level == c:
            continue
        alarms = np.full(len(runs), -1)
        for i in idx:
            hit = np.flatnonzero(np.asarray(runs[int(i)]) >= c)
            alarms[i] = int(hit[0]) if hit.size else -1
        out.append(SweepPoint(c, alarms))
    return out


def sweep_plans(
    runs: Mapping[str, Sequence[np.ndarray]],
    episodes: Sequence[FreshEpisode],
    rates: Sequence[float] = SWEEP_RATES,
    seed: int = 0,
) -> dict[str, dict[str, list[SweepPoint]]]:
    """The equal-cost sweep, per method (``runs``: each episode's running max score) and for
    :data:`RANDOM`, per group of :func:`episode_groups`: thresholds (hazards for random) at the
    group's help ``rates``."""
    groups = episode_groups(episodes)
    lengths = np.array([e.length for e in episodes], dtype=np.int64)
    out: dict[str, dict[str, list[SweepPoint]]] = {
        name: {g: threshold_sweep(r, sel, rates) for g, sel in groups.items()} for name, r in runs.items()
    }
    u = _uniforms(len(episodes), seed)
    out[RANDOM] = {}
    for g, sel in groups.items():
        pts: list[SweepPoint] = []
        for q in sorted(float(r) for r in rates):
            h = _hazard_for(q, lengths[sel].astype(float))
            if not pts or pts[-1].level != h:
                pts.append(SweepPoint(h, _first_request(u, lengths, h, sel)))
        out[RANDOM][g] = pts
    return out


def handover_steps(
    plans: Mapping[str, Mapping[Any, np.ndarray]],
    episodes: Sequence[FreshEpisode],
    sweeps: Mapping[str, Mapping[str, Sequence[SweepPoint]]] | None = None,
) -> list[set[int]]:
    """Per episode, every distinct handover step any plan or sweep point asks for, plus 0 (the
    ceiling). A step after the episode's failure event is left out: that request is late, a
    failure whatever the person does, so it needs no simulation."""
    arrays = [a for by in plans.values() for a in by.values()]
    for by_group in (sweeps or {}).values():
        arrays += [p.alarms for pts in by_group.values() for p in pts]
    steps: list[set[int]] = [{0} for _ in episodes]
    for a in arrays:
        for i, t in enumerate(np.asarray(a).tolist()):
            ep = episodes[i]
            if t >= 0 and not (ep.event and t > ep.failure_step):
                steps[i].add(int(t))
    return steps


def curve_at(x: np.ndarray, y: np.ndarray, q: Any) -> np.ndarray:
    """Value of piecewise-linear curves at help rate ``q`` (a number or one per curve).

    ``x``, ``y``: ``(B, P)``, each row's points in order of aggressiveness (x non-decreasing; the
    first point the no-request origin at x = 0). Between points: linear; where several points
    share an x, the last (most aggressive) one; past the last point: its value (flat)."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    qq = np.broadcast_to(np.asarray(q, dtype=np.float64), (x.shape[0],))
    rows = np.arange(x.shape[0])
    i = np.maximum((x <= qq[:, None]).sum(axis=1) - 1, 0)
    j = np.minimum(i + 1, x.shape[1] - 1)
    x0, x1, y0, y1 = x[rows, i], x[rows, j], y[rows, i], y[rows, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(x1 > x0, (y1 - y0) / (x1 - x0), 0.0)
    return np.where(j > i, y0 + (qq - x0) * slope, y0)


def curve_area(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Area under each curve (rows as in :func:`curve_at`) over help rates 0 to 1, flat past its
    last point: the mean success over that range."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    xe = np.concatenate([np.clip(x, 0.0, 1.0), np.ones((x.shape[0], 1))], axis=1)
    ye = np.concatenate([y, y[:, -1:]], axis=1)
    return np.trapezoid(ye, xe, axis=1)


def _rate(k: int, n: int) -> dict[str, Any]:
    return {"k": int(k), "n": int(n), "rate": k / n if n else math.nan, "ci95": list(wilson(int(k), int(n)))}


def _episode_rows(
    episodes: Sequence[FreshEpisode], alarms: np.ndarray, handover: Mapping[tuple[str, int], bool]
) -> dict[str, np.ndarray]:
    """Per-episode 0/1 outcomes of one alarm plan (arrays over the episodes)."""
    n = len(episodes)
    r = {
        k: np.zeros(n, dtype=bool)
        for k in (
            "help",
            "assisted",
            "save",
            "late",
            "harm",
            "needless",
            "prevented",
            "stopped_timeout",
            "missed",
        )
    }
    for i, (ep, t) in enumerate(zip(episodes, alarms.tolist(), strict=True)):
        alarmed = t >= 0
        late = alarmed and ep.event and t > ep.failure_step
        r["help"][i] = alarmed
        r["late"][i] = late
        if not alarmed:
            r["assisted"][i] = ep.success
            r["missed"][i] = not ep.success
            continue
        ok = False if late else handover[(ep.key, int(t))]  # a late request is not simulated
        r["assisted"][i] = ok and not late
        r["save"][i] = (not ep.success) and ok and not late
        r["harm"][i] = ep.success and not ok
        r["needless"][i] = ep.success
        r["prevented"][i] = ep.event and not late
        r["stopped_timeout"][i] = (not ep.success) and not ep.event
        r["missed"][i] = late
    return r


def _summary(
    episodes: Sequence[FreshEpisode], rows: Mapping[str, np.ndarray], sel: np.ndarray
) -> dict[str, Any]:
    n = int(sel.sum())
    succ = np.array([e.success for e in episodes]) & sel
    ev = np.array([e.event for e in episodes]) & sel
    to = np.array([(not e.success) and not e.event for e in episodes]) & sel
    return {
        "n": n,
        "help_rate": _rate(int(rows["help"][sel].sum()), n),
        "success": _rate(int(rows["assisted"][sel].sum()), n),
        "saves": int(rows["save"][sel].sum()),
        "late_help": int((rows["late"] & rows["help"])[sel].sum()),
        "harmed": int(rows["harm"][sel].sum()),
        "needless_help": _rate(int(rows["needless"][sel].sum()), int(succ.sum())),
        "stop": {
            "prevented": _rate(int(rows["prevented"][sel].sum()), int(ev.sum())),
            "stopped_timeouts": _rate(int(rows["stopped_timeout"][sel].sum()), int(to.sum())),
            "needless": _rate(int(rows["needless"][sel].sum()), int(succ.sum())),
            "missed_events": _rate(int((rows["missed"] & ev)[sel].sum()), int(ev.sum())),
            "late": int((rows["late"])[sel].sum()),
        },
    }


def _curves(
    episodes: Sequence[FreshEpisode],
    points: Sequence[SweepPoint],
    handover: Mapping[tuple[str, int], bool],
    sel: np.ndarray,
    w: np.ndarray,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The handover and stop curves of one sweep on one group, with the origin first: ``(x, y)``
    of shape ``(1 + B, 1 + P)`` for the weight rows ``w`` ``(1 + B, n_group)`` (row 0: all ones)."""
    eps = [e for e, s in zip(episodes, sel.tolist(), strict=True) if s]
    succ = np.array([e.success for e in eps], dtype=float)
    ev = np.array([e.event for e in eps], dtype=float)
    rows = [_episode_rows(eps, p.alarms[sel], handover) for p in points]

    def frac(hits: list[np.ndarray], base: np.ndarray) -> np.ndarray:
        m = np.stack([np.asarray(h, dtype=float) * base for h in hits], axis=1)  # (n, K)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (w @ m) / (w @ base)[:, None]

    ones = np.ones(len(eps))
    zero = np.zeros((w.shape[0], 1))
    alone = frac([succ], ones)
    return {
        "handover": (
            np.concatenate([zero, frac([r["help"] for r in rows], ones)], axis=1),
            np.concatenate([alone, frac([r["assisted"] for r in rows], ones)], axis=1),
        ),
        "stop": (
            np.concatenate([zero, frac([r["help"] for r in rows], succ)], axis=1),
            np.concatenate([zero, frac([r["prevented"] for r in rows], ev)], axis=1),
        ),
    }


def _stat(samples: np.ndarray) -> dict[str, Any]:
    """Row 0 the estimate, the rest bootstrap replicates."""
    return {"value": float(samples[0]), "ci95": list(ci95(samples[1:]))}


def _diff(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    d = a - b
    return {"delta": float(d[0]), "ci95": list(ci95(d[1:]))}


def _equal_cost(
    episodes: Sequence[FreshEpisode],
    sweeps: Mapping[str, Mapping[str, Sequence[SweepPoint]]],
    handover: Mapping[tuple[str, int], bool],
    groups: Mapping[str, np.ndarray],
    selected: str | None,
    rates: Sequence[float],
    seed: int,
) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]]]:
    """Per kind (handover, stop), group and curve: points, area, values at ``rates``, method minus
    random and ``selected`` minus each comparator (paired bootstrap). Also the per-group weights
    and random's curves, for the operating points' gap to random."""
    out: dict[str, Any] = {"handover": {}, "stop": {}}
    random_curves: dict[str, tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]] = {}
    for g, sel in groups.items():
        n = int(sel.sum())
        w = np.concatenate([np.ones((1, n)), resample_counts(n, BOOT, seed)], axis=0)
        curves = {name: _curves(episodes, by_group[g], handover, sel, w) for name, by_group in sweeps.items()}
        if RANDOM in curves:
            random_curves[g] = (w, curves[RANDOM])
        for kind in ("handover", "stop"):
            stats = {}
            for name, c in curves.items():
                x, y = c[kind]
                stats[name] = {"area": curve_area(x, y), **{f"{q:g}": curve_at(x, y, q) for q in rates}}
            table: dict[str, Any] = {}
            for name, st in stats.items():
                x, y = curves[name][kind]
                levels = [p.level for p in sweeps[name][g]]
                entry: dict[str, Any] = {
                    "points": {"level": [math.inf, *levels], "x": x[0].tolist(), "y": y[0].tolist()},
                    **{k: _stat(v) for k, v in st.items()},
                }
                if name != RANDOM and RANDOM in stats:
                    entry["vs_random"] = {k: _diff(v, stats[RANDOM][k]) for k, v in st.items()}
                if name == selected:
                    entry["vs_methods"] = {
                        m: {k: _diff(v, other[k]) for k, v in st.items()}
                        for m, other in stats.items()
                        if m not in (selected, RANDOM)
                    }
                table[name] = entry
            out[kind][g] = table
    return out, random_curves


def closed_loop_metrics(
    episodes: Sequence[FreshEpisode],
    plans: Mapping[str, Mapping[float, np.ndarray]],
    handover: Mapping[tuple[str, int], bool],
    *,
    sweeps: Mapping[str, Mapping[str, Sequence[SweepPoint]]] | None = None,
    selected: str | None = None,
    fixed_rates: Sequence[float] = FIXED_RATES,
    seed: int = 0,
) -> dict[str, Any]:
    """The closed-loop tables: per method and alpha, pooled, seen/unseen and per task (see the
    module docstring), and with ``sweeps`` (:func:`sweep_plans`) the equal-cost curves.

    ``handover[(key, t)]``: did the episode succeed with the person from step t (t = 0: the
    ceiling); steps after an episode's failure event are never looked up (late). With ``sweeps``
    holding :data:`RANDOM`, every method's operating point in every group carries ``vs_random``:
    its success minus random's curve of that group read at the method's own help rate in that
    group, with a paired 95% bootstrap interval over the group's episodes.
    """
    if not episodes:
        raise InvalidInputError("closed-loop metrics need at least one fresh episode")
    n = len(episodes)
    groups = episode_groups(episodes)
    alone = np.array([e.success for e in episodes])
    ceiling = np.array([handover[(e.key, 0)] for e in episodes])
    out: dict[str, Any] = {
        "n_episodes": n,
        "policy_alone": {g: _rate(int(alone[sel].sum()), int(sel.sum())) for g, sel in groups.items()},
        "ceiling": {g: _rate(int(ceiling[sel].sum()), int(sel.sum())) for g, sel in groups.items()},
        "methods": {},
    }
    rows_by: dict[str, dict[float, dict[str, np.ndarray]]] = {}
    for name, by_alpha in plans.items():
        rows_by[name] = {a: _episode_rows(episodes, alarms, handover) for a, alarms in by_alpha.items()}
        out["methods"][name] = {
            f"{a:g}": {g: _summary(episodes, rows, sel) for g, sel in groups.items()}
            for a, rows in rows_by[name].items()
        }
    if sweeps is None:
        return out
    rates = tuple(float(q) for q in fixed_rates)
    out["equal_cost"], random_curves = _equal_cost(episodes, sweeps, handover, groups, selected, rates, seed)
    out["equal_cost"]["fixed_rates"] = list(rates)
    out["equal_cost"]["levels"] = {
        name: {g: [p.level for p in pts] for g, pts in by_group.items()} for name, by_group in sweeps.items()
    }
    for name, rows_alpha in rows_by.items():
        for a, rows in rows_alpha.items():
            for g, (w, rc) in random_curves.items():
                sel = groups[g]
                help_b = w @ rows["help"][sel].astype(float) / sel.sum()
                succ_b = w @ rows["assisted"][sel].astype(float) / sel.sum()
                rx, ry = rc["handover"]
                rand_b = curve_at(rx, ry, help_b)
                out["methods"][name][f"{a:g}"][g]["vs_random"] = {
                    "rate": float(help_b[0]),
                    "random_success": float(rand_b[0]),
                    **_diff(succ_b, rand_b),
                }
    return out
