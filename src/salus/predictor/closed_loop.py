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

Random help requests at the same rate are the floor: an alarm with a constant per-step hazard,
chosen so that the expected fraction of episodes with a request equals the method's.

Intervals: Wilson for rates; the gap to random (same rate) by a paired bootstrap over episodes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from salus.errors import InvalidInputError

from .protocol import ci95, running_max, wilson

__all__ = [
    "CLOSED_LOOP_ALPHAS",
    "CLOSED_LOOP_COMPARATORS",
    "RANDOM",
    "FreshEpisode",
    "alarm_plan",
    "random_alarms",
    "handover_steps",
    "closed_loop_metrics",
]

# Fixed in advance (never chosen on the fresh episodes): the alphas of the curve, and the methods
# besides our validation pick: the two published detectors that came closest to it in the open-loop
# benchmark (the hardest comparison; each method costs a few thousand simulated episodes).
CLOSED_LOOP_ALPHAS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)
CLOSED_LOOP_COMPARATORS: tuple[str, ...] = ("safe-lstm", "embedding:knn_cosine")
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


def random_alarms(lengths: Sequence[int], rates: Sequence[float], seed: int = 0) -> dict[float, np.ndarray]:
    """Random help requests: for each target rate, each episode's first request of a constant-hazard
    process (-1: none before the episode ends), seeded. One uniform draw per episode serves every
    rate (common random numbers), so the floor's curve is monotone in the rate."""
    L = np.asarray(lengths, dtype=np.int64)
    u = np.random.default_rng(np.random.SeedSequence([int(seed), 0xA551])).random(len(L))
    out: dict[float, np.ndarray] = {}
    for r in rates:
        h = _hazard_for(float(r), L.astype(float))
        if h <= 0:
            out[float(r)] = np.full(len(L), -1)
            continue
        t = np.floor(np.log1p(-u) / math.log1p(-h)).astype(np.int64) if h < 1 else np.zeros(len(L), np.int64)
        out[float(r)] = np.where(t < L, t, -1)
    return out


def handover_steps(plans: Mapping[str, Mapping[float, np.ndarray]], n: int) -> list[set[int]]:
    """Per episode, every distinct handover step any plan asks for, plus 0 (the ceiling)."""
    steps: list[set[int]] = [{0} for _ in range(n)]
    for by_alpha in plans.values():
        for a in by_alpha.values():
            for i, t in enumerate(a.tolist()):
                if t >= 0:
                    steps[i].add(int(t))
    return steps


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
        ok = handover[(ep.key, int(t))]
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


def closed_loop_metrics(
    episodes: Sequence[FreshEpisode],
    plans: Mapping[str, Mapping[float, np.ndarray]],
    handover: Mapping[tuple[str, int], bool],
    *,
    random_for: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The closed-loop tables: per method and alpha, pooled and per task (see the module docstring).

    ``handover[(key, t)]``: did the episode succeed with the person from step t (t = 0: the ceiling).
    ``plans[RANDOM]`` (keyed by the same alphas) holds random requests at the help rates of the
    method ``random_for``, whose pooled entries then carry ``vs_random``: the assisted-success gap
    at the same alpha, with a paired 95% bootstrap interval over episodes.
    """
    if not episodes:
        raise InvalidInputError("closed-loop metrics need at least one fresh episode")
    n = len(episodes)
    groups: dict[str, np.ndarray] = {"pooled": np.ones(n, dtype=bool)}
    groups["seen"] = np.array([not e.unseen for e in episodes])
    groups["unseen"] = np.array([e.unseen for e in episodes])
    for task in sorted({e.task for e in episodes}):
        groups[task] = np.array([e.task == task for e in episodes])
    groups = {g: sel for g, sel in groups.items() if sel.any()}
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
    if random_for is not None and RANDOM in rows_by and random_for in rows_by:
        idx = np.random.default_rng(seed).integers(0, n, size=(BOOT, n))
        for a, rows in rows_by[random_for].items():
            rand = rows_by[RANDOM].get(a)
            if rand is None:
                continue
            diff = rows["assisted"].astype(float) - rand["assisted"].astype(float)
            out["methods"][random_for][f"{a:g}"]["pooled"]["vs_random"] = {
                "delta": float(diff.mean()),
                "ci95": list(ci95(diff[idx].mean(axis=1))),
            }
    return out
