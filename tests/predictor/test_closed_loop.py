"""Closed-loop metrics on hand-made episodes: late help is not a save, stops are counted against the
failure event, timeouts stay apart, random requests realise the asked rate, fresh test episodes
keep the split's training, validation and calibration."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from salus.errors import InvalidInputError
from salus.predictor import synthetic_episodes
from salus.predictor.closed_loop import (
    RANDOM,
    FreshEpisode,
    closed_loop_metrics,
    handover_steps,
    random_alarms,
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


def test_gap_to_random_is_paired_at_the_same_alpha() -> None:
    plans = {"m": {0.1: np.array([5, 20, 40, 20])}, RANDOM: {0.1: np.array([-1, -1, -1, 20])}}
    out = closed_loop_metrics(EPS, plans, HANDOVER, random_for="m")
    vs = out["methods"]["m"]["0.1"]["pooled"]["vs_random"]
    assert vs["delta"] == pytest.approx((2 - 1) / 4)
    assert vs["ci95"][0] <= vs["delta"] <= vs["ci95"][1]
    assert "vs_random" not in out["methods"][RANDOM]["0.1"]["pooled"]
    assert handover_steps(plans, 4) == [{0, 5}, {0, 20}, {0, 40}, {0, 20}]
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
