"""Closed-loop metrics on hand-made episodes: late help is not a save, stops are counted against the
failure event, timeouts stay apart, random requests realise the asked rate and are matched per
group, the equal-cost curves (a perfect score dominates random, elapsed time does not beat it, the
analytic random area, interpolation at fixed rates), fresh test episodes keep the split's
training, validation and calibration."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from salus.errors import InvalidInputError
from salus.predictor import synthetic_episodes
from salus.predictor.closed_loop import (
    RANDOM,
    SWEEP_RATES,
    FreshEpisode,
    closed_loop_metrics,
    curve_area,
    curve_at,
    handover_steps,
    random_alarms,
    sweep_plans,
    threshold_sweep,
)
from salus.predictor.episodes import EpisodeSplit
from salus.predictor.evaluate import with_fresh_test

EPS = [
    FreshEpisode("a", "push", False, True, -1, "none", 50),  # success
    FreshEpisode("b", "push", False, False, 30, "drop", 80),  # event at 30
    FreshEpisode("c", "stack", True, False, 79, "timeout", 80),  # timeout: no event
    FreshEpisode("d", "stack", True, False, 10, "miss", 80),  # event at 10
]
# did the person succeed from step t (t = 0: the ceiling)
HANDOVER = {
    ("a", 0): True,
    ("a", 5): False,  # a handover that lost a success
    ("b", 0): True,
    ("b", 20): True,  # in time: a save
    ("c", 0): True,
    ("c", 40): True,  # a timeout helped
    ("d", 0): False,
    ("d", 20): True,  # after the event at 10: late, not a save although the person finished it
}


def test_late_help_is_not_a_save_and_stops_count_against_the_event() -> None:
    plans = {"m": {0.1: np.array([5, 20, 40, 20]), 0.2: np.array([-1, -1, -1, -1])}}
    out = closed_loop_metrics(EPS, plans, HANDOVER)
    r = out["methods"]["m"]["0.1"]["pooled"]
    assert r["help_rate"]["rate"] == 1.0
    assert r["success"]["k"] == 2  # b saved, c helped; a lost; d late
    assert r["saves"] == 2 and r["late_help"] == 1 and r["harmed"] == 1
    assert r["needless_help"]["k"] == 1 and r["needless_help"]["n"] == 1
    st = r["stop"]
    assert (st["prevented"]["k"], st["prevented"]["n"]) == (1, 2)  # b stopped in time; d too late
    assert (st["stopped_timeouts"]["k"], st["stopped_timeouts"]["n"]) == (1, 1)
    assert st["missed_events"]["k"] == 1 and st["late"] == 1
    none = out["methods"]["m"]["0.2"]["pooled"]  # no alarm: the policy alone
    assert none["success"]["k"] == 1 and none["help_rate"]["rate"] == 0.0 and none["saves"] == 0
    assert out["policy_alone"]["pooled"]["k"] == 1 and out["ceiling"]["pooled"]["k"] == 3
    assert out["methods"]["m"]["0.1"]["unseen"]["n"] == 2 and "stack" in out["methods"]["m"]["0.1"]
    lo, hi = r["success"]["ci95"]
    assert lo < 0.5 < hi


def _synthetic(n: int = 600, seed: int = 0, *, unseen_worse: bool = False):
    """Hand-made counterfactuals: successes stay successes with the person; a failure is saved by a
    handover at least 10 steps before its event (timeouts: 20 steps before the end)."""
    rng = np.random.default_rng(seed)
    eps, handover = [], {}
    for i in range(n):
        task = ("push", "stack", "lift")[i % 3]
        unseen = task == "lift"
        success = bool(rng.random() < (0.2 if unseen and unseen_worse else 0.5))
        length = int(rng.integers(60, 140))  # whatever the outcome: elapsed time says nothing
        kind = "none" if success else ("drop" if rng.random() < 0.6 else "timeout")
        fail = -1 if success else (int(rng.integers(length // 2, length)) if kind == "drop" else length - 1)
        ep = FreshEpisode(f"e{i}", task, unseen, success, fail, kind, length)
        eps.append(ep)
        deadline = length - 1 if success else (fail - 10 if kind == "drop" else length - 21)
        handover.update({(ep.key, t): t <= deadline for t in range(length)})
    return eps, handover


def test_per_group_random_is_matched_at_each_groups_own_rate() -> None:
    eps, handover = _synthetic(unseen_worse=True)
    unseen = np.array([e.unseen for e in eps])
    k = np.arange(len(eps))
    # the method asks in a quarter of the seen episodes and three quarters of the unseen ones
    alarms = np.where(np.where(unseen, k % 4 != 0, k % 4 == 0), 5, -1)
    sweeps = sweep_plans({}, eps, seed=1)
    out = closed_loop_metrics(eps, {"m": {0.1: alarms}}, handover, sweeps=sweeps, seed=1)
    ec = out["equal_cost"]["handover"]
    for g, rate in (("seen", np.mean(alarms[~unseen] >= 0)), ("unseen", np.mean(alarms[unseen] >= 0))):
        vs = out["methods"]["m"]["0.1"][g]["vs_random"]
        assert vs["rate"] == pytest.approx(rate)  # the group's own rate, not the pooled 0.42
        pts = ec[g][RANDOM]["points"]
        ref = curve_at(np.array(pts["x"]), np.array(pts["y"]), rate)[0]
        assert vs["random_success"] == pytest.approx(ref)
        succ = out["methods"]["m"]["0.1"][g]["success"]["rate"]
        assert vs["delta"] == pytest.approx(succ - ref) and vs["ci95"][0] <= vs["delta"] <= vs["ci95"][1]
        # random's sweep in the group realises the group's rates (hazards matched on the group)
        assert np.max(np.abs(np.array(pts["x"][1:]) - np.array(SWEEP_RATES))) < 0.1
    assert abs(out["methods"]["m"]["0.1"]["seen"]["vs_random"]["rate"] - 0.25) < 0.01
    assert abs(out["methods"]["m"]["0.1"]["unseen"]["vs_random"]["rate"] - 0.75) < 0.01
    assert RANDOM not in out["methods"]


def test_a_perfect_score_dominates_random_and_elapsed_time_does_not_beat_it() -> None:
    eps, handover = _synthetic()
    perfect = [np.full(e.length, 0.0 if e.success else 1.0) for e in eps]
    elapsed = [np.arange(e.length, dtype=float) for e in eps]
    sweeps = sweep_plans({"perfect": perfect, "elapsed": elapsed}, eps, seed=2)
    steps = handover_steps({}, eps, sweeps)
    assert all(not (e.event and max(s) > e.failure_step) for e, s in zip(eps, steps, strict=True))  # no late
    assert max(len(s) for s in steps) <= 1 + 3 * len(SWEEP_RATES) * 3  # bounded: groups x rates x curves
    out = closed_loop_metrics(eps, {}, handover, sweeps=sweeps, selected="perfect", seed=2)
    ec = out["equal_cost"]
    for g in ("pooled", "seen", "unseen", "push"):
        cur = ec["handover"][g]
        grid = np.linspace(0, 1, 41)
        curves = {m: (np.array(cur[m]["points"]["x"]), np.array(cur[m]["points"]["y"])) for m in cur}
        p, r = (np.array([curve_at(*curves[m], q)[0] for q in grid]) for m in ("perfect", RANDOM))
        assert (p >= r - 1e-9).all() and p.mean() > r.mean() + 0.05
        assert cur["perfect"]["vs_random"]["area"]["ci95"][0] > 0
        assert cur["perfect"]["vs_methods"]["elapsed"]["area"]["ci95"][0] > 0
        stop = ec["stop"][g]["perfect"]
        assert stop["0.25"]["value"] == 1.0 and stop["vs_random"]["area"]["ci95"][0] > 0
        for key in ("area", "0.25", "0.5"):  # elapsed time at equal cost: no win over random
            assert cur["elapsed"]["vs_random"][key]["ci95"][0] <= 0
            assert ec["stop"][g]["elapsed"]["vs_random"][key]["ci95"][0] <= 0


def test_random_area_equals_the_analytic_value() -> None:
    # equal lengths, no events, every handover saves: success = alone + (1 - alone) * rate
    rng = np.random.default_rng(5)
    n, alone = 6000, 0.4
    eps = [
        FreshEpisode(f"e{i}", "push", False, s, -1 if s else 99, "none" if s else "timeout", 100)
        for i, s in enumerate(rng.random(n) < alone)
    ]
    handover = {(e.key, t): True for e in eps for t in range(100)}
    sweeps = sweep_plans({}, eps, rates=np.linspace(0.05, 1, 20), seed=0)
    out = closed_loop_metrics(eps, {}, handover, sweeps=sweeps, seed=0)
    a0 = out["policy_alone"]["pooled"]["rate"]
    area = out["equal_cost"]["handover"]["pooled"][RANDOM]["area"]
    assert area["value"] == pytest.approx(a0 + (1 - a0) / 2, abs=0.01)
    assert area["ci95"][0] <= a0 + (1 - a0) / 2 <= area["ci95"][1]
    half = out["equal_cost"]["handover"]["pooled"][RANDOM]["0.5"]["value"]
    assert half == pytest.approx(a0 + (1 - a0) * 0.5, abs=0.015)


def test_curves_are_read_by_interpolation_at_fixed_rates() -> None:
    x = np.array([[0.0, 0.2, 0.2, 0.6, 0.8]])
    y = np.array([[0.4, 0.5, 0.6, 0.8, 0.9]])
    assert curve_at(x, y, 0.1)[0] == pytest.approx(0.45)
    assert curve_at(x, y, 0.2)[0] == pytest.approx(0.6)  # a tie: the most aggressive point
    assert curve_at(x, y, 0.25)[0] == pytest.approx(0.6 + 0.05 * 0.5)
    assert curve_at(x, y, 0.5)[0] == pytest.approx(0.75)
    assert curve_at(x, y, 0.9)[0] == pytest.approx(0.9)  # flat past the last point
    both = curve_at(np.vstack([x, x]), np.vstack([y, y]), np.array([0.25, 0.5]))
    assert both == pytest.approx([0.625, 0.75])
    # area: 0.2 * 0.45 + 0 (vertical) + 0.4 * 0.7 + 0.2 * 0.85 + 0.2 * 0.9
    assert curve_area(x, y)[0] == pytest.approx(0.09 + 0.28 + 0.17 + 0.18)
    assert curve_area(np.array([[0.0, 1.0]]), np.array([[0.0, 1.0]]))[0] == pytest.approx(0.5)


def test_thresholds_are_swept_over_the_groups_maxima() -> None:
    runs = [np.array([0.1, 0.5, 0.5, 0.9]), np.array([0.2, 0.3]), np.array([0.0, 0.7, 0.7]), np.array([0.6])]
    within = np.array([True, True, True, False])
    pts = threshold_sweep(runs, within, (1 / 3, 2 / 3, 1.0))
    assert [p.level for p in pts] == [0.9, 0.7, 0.3]
    assert pts[1].alarms.tolist() == [3, -1, 1, -1]  # first step reaching 0.7; outside the group: -1
    assert pts[2].alarms.tolist() == [1, 1, 1, -1]
    plans = {"m": {0.1: np.array([5, 20, 40, 20])}}
    assert handover_steps(plans, EPS) == [{0, 5}, {0, 20}, {0, 40}, {0}]  # d's event is at 10: late
    with pytest.raises(InvalidInputError):
        closed_loop_metrics([], plans, HANDOVER)


def test_random_requests_realise_the_rate_and_grow_with_it() -> None:
    lengths = np.random.default_rng(0).integers(30, 150, size=4000)
    rates = [0.0, 0.1, 0.4, 0.8]
    got = random_alarms(lengths, rates, seed=3)
    prev = None
    for r in rates:
        a = got[r]
        assert abs(np.mean(a >= 0) - r) < 0.03
        assert ((a < lengths) | (a == -1)).all()
        if prev is not None:  # common random numbers: a higher rate never asks later
            both = (prev >= 0) & (a >= 0)
            assert (a[both] <= prev[both]).all() and (a[prev >= 0] >= 0).all()
        prev = a
    assert (random_alarms(lengths, [0.4], seed=3)[0.4] == got[0.4]).all()  # seeded


def test_fresh_test_episodes_keep_training_validation_and_calibration() -> None:
    bench = synthetic_episodes(40, seed=1)
    fresh = synthetic_episodes(12, seed=2)
    tasks = bench.tasks
    split = EpisodeSplit(
        train=tuple(i for i in range(20) if bench[i].task != tasks[0]),
        val=(20, 21),
        calib=(22, 23, 24),
        test_seen=(30,),
        test_unseen=(31,),
    )
    combined, new = with_fresh_test(bench, split, fresh)
    assert len(combined) == 52 and (new.train, new.val, new.calib) == (split.train, split.val, split.calib)
    assert sorted(new.test_seen + new.test_unseen) == list(range(40, 52))
    assert all(combined[i].task == tasks[0] for i in new.test_unseen)
    assert all(combined[i].task != tasks[0] for i in new.test_seen)
    other = replace(fresh, signal_names=tuple(f"x{i}" for i in range(12)))
    with pytest.raises(InvalidInputError, match="signal_names"):
        with_fresh_test(bench, split, other)


def test_fresh_episodes_must_be_collected_alike_with_new_seeds(tmp_path) -> None:
    from salus.data import SalusDataset
    from salus.monitor.assist import check_fresh

    from .helpers import write_dataset

    bench = SalusDataset(write_dataset(tmp_path / "b.zarr", synthetic_episodes(10, seed=1)))
    same = SalusDataset(write_dataset(tmp_path / "s.zarr", synthetic_episodes(10, seed=1)))
    with pytest.raises(InvalidInputError, match="also occur in the benchmark"):
        check_fresh(bench, same)
    eps = synthetic_episodes(10, seed=1)
    for k, ep in enumerate(eps.episodes):
        ep.seed = 10_000 + k
    fresh = SalusDataset(write_dataset(tmp_path / "f.zarr", eps))
    check_fresh(bench, fresh)  # same collection, new seeds: accepted
    other = write_dataset(tmp_path / "o.zarr", eps, collect={"policy": "builtin:other", "seed": 0})
    with pytest.raises(InvalidInputError, match="policy: benchmark 'synthetic', fresh 'builtin:other'"):
        check_fresh(bench, SalusDataset(other))


def test_the_handover_cache_simulates_only_new_steps(tmp_path, monkeypatch) -> None:
    from salus.monitor import assist
    from salus.sim.handover import HandoverJob

    ran: list[tuple[int, ...]] = []

    def fake(job):
        ran.append(job.steps)
        return [{"step": s, "success": s < 30} for s in job.steps]

    monkeypatch.setattr(assist, "_run_job", fake)
    job = HandoverJob("e0", "push", 1, (), np.zeros((50, 4), np.float32), (-1, 0, 10))
    path = tmp_path / "handovers.jsonl"
    assist._run_jobs([job], path, 1, None)
    done = assist._run_jobs([replace(job, steps=(-1, 0, 10, 35))], path, 1, None)  # the sweep adds 35
    assert ran == [(-1, 0, 10), (35,)]
    assert sorted(o["step"] for o in done["e0"]) == [-1, 0, 10, 35]
    assert assist._load_done(path)["e0"] == done["e0"]  # the last record holds every step
    assist._run_jobs([replace(job, steps=(0, 35))], path, 1, None)
    assert len(ran) == 2
