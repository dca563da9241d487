"""The Monte-Carlo ceiling with the real collector, simulator and built-in policy on a tiny dataset:
the plain replay reproduces each recorded outcome and the observation at the fork, the K
continuations draw different noise, a killed run resumes to the same result, 1 and 2 workers give
the same bits, the ROC-AUC is the protocol's, and bad input is refused with the reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from salus.collect import CollectConfig
from salus.collect.collector import collect
from salus.data import SalusDataset
from salus.errors import DatasetError, InvalidInputError, InvalidNameError
from salus.predictor import ceiling_replay as mc
from salus.predictor.ceiling_replay import CeilingConfig, continuation_seeds, run_ceiling, summarize

EPISODES, MAX_STEPS, SEED = 3, 20, 0
TIME_S = 0.4  # step 8 at 20 Hz
K = 2


def _config(**kw) -> CeilingConfig:
    return CeilingConfig(**{"times_s": (TIME_S,), "k": K, "sample": EPISODES, "seed": 5, "n_boot": 50, **kw})


@pytest.fixture(scope="module")
def tiny(policy_spec, tmp_path_factory) -> Path:
    """A tiny real dataset: the built-in policy in our simulator, three tasks; the first episode with
    action noise (its world noise is re-seeded at the fork), the others unperturbed."""
    from salus.collect import PerturbationMix

    mix = PerturbationMix.from_obj(
        [{"weight": 1, "perturb": {}}, {"weight": 1, "perturb": {"action_noise": 0.8}}]
    )
    path = tmp_path_factory.mktemp("ceiling") / "tiny.zarr"
    collect(
        CollectConfig(policy=policy_spec, episodes=EPISODES, max_steps=MAX_STEPS, seed=SEED, mix=mix), path
    )
    return path


@pytest.fixture(scope="module")
def first(tiny, tmp_path_factory):
    """One uninterrupted serial run."""
    out = tmp_path_factory.mktemp("first")
    return run_ceiling(tiny, out, _config()), out


def _records(out: Path) -> dict[str, dict]:
    from salus.collect.jobs import read_records

    return {r["key"]: r for r in read_records(out / mc.RECORDS_FILE, lambda r: "key" in r)}


def _digests(out: Path) -> dict[tuple[str, int], list[str]]:
    return {
        (key, s["step"]): [c["actions_sha1"] for c in s["continuations"]]
        for key, r in _records(out).items()
        for s in r["steps"]
    }


def _p_fail(result) -> dict[str, float]:
    return {e["key"]: e["p_fail"] for t in result.times.values() for e in t["episodes"]}


def _without_stage(out: Path) -> dict:
    d = json.loads((out / mc.CEILING_FILE).read_text())
    d.pop("stage")
    return d


def test_the_plain_replay_reproduces_the_recording_and_the_fork_sees_the_recorded_observation(tiny, first):
    result, out = first
    ds = SalusDataset(tiny)
    recs = _records(out)
    assert len(recs) == EPISODES and result.replay_mismatches == []
    step = int(round(TIME_S * 20))
    for i in range(len(ds)):
        rec = recs[f"ep{int(ds.episode_index[i])}"]
        assert rec["replay_matches"] is True
        assert (rec["replay"]["success"], rec["replay"]["failure_step"], rec["replay"]["failure_type"]) == (
            bool(ds.success[i]),
            int(ds.failure_step[i]),
            str(ds.failure_type[i]),
        )
        assert rec["replay"]["length"] == int(ds.lengths[i])
        assert [s["step"] for s in rec["steps"]] == [step]
        assert rec["steps"][0]["state_match"] is True  # the policy sees the recorded observation at t
    # the action-noise episode is in the sample (its world noise is re-seeded at the fork)
    assert any(e["perturbations"] == ["action_noise"] for e in result.times["0.4s"]["episodes"])


def test_p_fail_is_a_share_and_the_continuations_draw_different_noise(tiny, first):
    result, out = first
    ds = SalusDataset(tiny)
    rows = result.times["0.4s"]["episodes"]
    assert len(rows) == EPISODES
    for r in rows:
        assert 0.0 <= r["p_fail"] <= 1.0 and r["p_fail"] == r["n_fail"] / K
    for key, rec in _records(out).items():
        conts = rec["steps"][0]["continuations"]
        assert len(conts) == K
        assert len({c["actions_sha1"] for c in conts}) == K, key  # different policy noise, different actions
        seeds = [c["policy_seed"] for c in conts]
        assert len(set(seeds)) == K and rec["seed"] not in seeds  # never the recording's own seed
        assert all(c["length"] > 8 for c in conts)
    assert set(int(s) for s in ds.seed) == {r["seed"] for r in _records(out).values()}
    v = result.times["0.4s"]["views"]["all"]
    assert v["n"] == EPISODES and 0.0 <= v["mean_p_fail"] <= 1.0
    # seeds are a pure function of (seed, episode, step, k), distinct from the episode's seed
    assert continuation_seeds(5, 123, 8, 4) == continuation_seeds(5, 123, 8, 4)
    assert continuation_seeds(5, 123, 8, 4) != continuation_seeds(6, 123, 8, 4)


def test_a_killed_run_resumes_to_the_same_result_and_a_finished_one_simulates_nothing(
    tiny, first, tmp_path, monkeypatch
):
    _, out = first
    lines = (out / mc.RECORDS_FILE).read_text().splitlines()
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    # killed mid-write of the second record: one finished, one torn line
    (resumed / mc.RECORDS_FILE).write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    calls: list[str] = []
    real = mc.run_ceiling_job

    def counted(job):
        calls.append(job.key)
        return real(job)

    monkeypatch.setattr(mc, "run_ceiling_job", counted)
    notes: list[str] = []
    run_ceiling(tiny, resumed, _config(), say=notes.append)
    assert sorted(calls) == sorted(set(_records(out)) - {json.loads(lines[0])["key"]})
    assert any("ignored 1 line" in n for n in notes)
    assert _without_stage(resumed) == _without_stage(out)
    assert _digests(resumed) == _digests(out)
    calls.clear()
    run_ceiling(tiny, resumed, _config())
    assert calls == [] and _without_stage(resumed) == _without_stage(out)
    # other settings reuse nothing but lose nothing: the earlier records stay in the file
    before = (resumed / mc.RECORDS_FILE).read_text()
    run_ceiling(tiny, resumed, _config(k=1, sample=1))
    assert len(calls) == 1 and (resumed / mc.RECORDS_FILE).read_text().startswith(before)


def test_one_and_two_workers_give_the_same_bits(tiny, first, tmp_path):
    result, out = first
    two = run_ceiling(tiny, tmp_path / "two", _config(workers=2))
    assert _p_fail(two) == _p_fail(result)
    assert _digests(tmp_path / "two") == _digests(out)
    assert _without_stage(tmp_path / "two")["times"] == _without_stage(out)["times"]


def test_the_roc_auc_is_the_protocols(monkeypatch):
    rows = [
        {"failed": f, "p_fail": p, "task": "push", "group": "all", "perturbed": False, "push_pending": pend}
        for f, p, pend in [
            (False, 0.1, False),
            (True, 0.9, False),
            (True, 0.5, False),
            (False, 0.5, False),
            (True, 0.0, True),
        ]
    ]
    views = summarize({"2s": rows}, n_boot=200, seed=0, split=False)["2s"]
    # pairs (pos, neg): 0.9>0.1, 0.9>0.5, 0.5>0.1, 0.5=0.5 (half) -> 3.5 / 4; the pending push apart
    assert views["all"]["auroc"] == pytest.approx(0.875) and views["all"]["n"] == 4
    assert views["with_push_pending"]["n"] == 5
    assert views["with_push_pending"]["auroc"] == pytest.approx(3.5 / 6)
    lo, hi = views["all"]["ci95"]
    assert 0.0 <= lo <= 0.875 <= hi <= 1.0
    split_rows = [
        dict(r, group=g) for r, g in zip(rows, ["seen", "seen", "unseen", "unseen", "seen"], strict=True)
    ]
    by_group = summarize({"2s": split_rows}, n_boot=0, seed=0, split=True)["2s"]
    assert (by_group["seen"]["n"], by_group["unseen"]["n"]) == (2, 2)  # the pending push apart
    assert by_group["seen"]["auroc"] == 1.0 and by_group["unseen"]["auroc"] == 0.5  # a tie counts half
    assert "seen" not in views
    from salus.predictor import protocol

    monkeypatch.setattr(protocol, "roc_auc", lambda labels, scores: 0.123)
    planted = summarize({"2s": rows}, n_boot=10, seed=0, split=False)["2s"]
    assert planted["all"]["auroc"] == 0.123 and planted["task:push"]["auroc"] == 0.123


def test_share_of_gap_closed_reads_ceiling_json(first):
    from salus.predictor.ceiling import ceiling_auroc, gap_closed, load_ceiling, share_of_gap_closed

    result, out = first
    c = load_ceiling(out)
    from salus.predictor.protocol import roc_auc

    rows = c["times"]["0.4s"]["episodes"]
    expected = roc_auc(np.array([r["failed"] for r in rows]), np.array([r["p_fail"] for r in rows]))
    np.testing.assert_equal(ceiling_auroc(c, 0.4, "all"), expected)  # NaN (one class) is written as null
    np.testing.assert_equal(result.auroc("0.4s"), expected)
    assert np.isnan(ceiling_auroc(c, 3.0, "all")) and np.isnan(ceiling_auroc(c, 0.4, "seen"))  # not measured
    assert share_of_gap_closed(0.8, 0.7, 0.9) == pytest.approx(0.5)
    assert share_of_gap_closed(0.6, 0.7, 0.9) == pytest.approx(-0.5)
    assert np.isnan(share_of_gap_closed(0.8, 0.9, 0.85))  # no gap to close
    fake = {"times": {"2s": {"views": {"all": {"auroc": 0.9}}}}}
    g = gap_closed(fake, {"ours": 0.85, "safe": 0.7, "stac": 0.75}, ["safe", "stac"], time=2.0)
    assert g["best_baseline"] == "stac" and g["share"]["ours"] == pytest.approx(2 / 3)
    assert g["share"]["stac"] == pytest.approx(0.0)
    with pytest.raises(DatasetError, match="salus ceiling"):
        load_ceiling(out / "nothing")


def _signals_only(path: Path, collect_attrs: dict) -> Path:
    """A dataset of two episodes without recorded actions."""
    from salus.data import DatasetWriter, EpisodeRecord

    with DatasetWriter(path, {"env": {"control_hz": 20.0}, "collect": collect_attrs}) as writer:
        for seed in (1, 2):
            steps = {"signals": np.zeros((30, 12), np.float32), "signal_valid": np.ones((30, 12), bool)}
            writer.append(EpisodeRecord(steps, True, -1, "none", "push", seed, []))
    return path


def test_bad_input_is_refused_with_the_reason(tiny, tmp_path):
    with pytest.raises(InvalidInputError, match="k must be an integer >= 1, got 0"):
        CeilingConfig(k=0)
    with pytest.raises(InvalidInputError, match="seconds > 0"):
        CeilingConfig(times_s=(0.0,))
    with pytest.raises(InvalidInputError, match="split seed"):
        CeilingConfig(holdout_tasks=("push",))
    with pytest.raises(
        InvalidInputError, match=r"beyond every episode .* allowed: times whose step is in \[1, 19\]"
    ):
        run_ceiling(tiny, tmp_path / "o", _config(times_s=(5.0,)))
    with pytest.raises(InvalidNameError, match="builtin"):
        run_ceiling(tiny, tmp_path / "o", _config(policy="no_such_policy"))

    no_actions = _signals_only(tmp_path / "noact.zarr", {"policy": "builtin", "episodes": 2, "seed": 0})
    with pytest.raises(DatasetError, match="no step key 'action'"):
        run_ceiling(no_actions, tmp_path / "o", _config())
    gym = _signals_only(
        tmp_path / "gym.zarr", {"policy": "builtin", "episodes": 2, "env": "gym_pusht/PushT-v0"}
    )
    with pytest.raises(InvalidInputError, match="the ceiling needs our simulator"):
        run_ceiling(gym, tmp_path / "o", _config())
    copy = tmp_path / "copy.zarr"
    shutil.copytree(tiny, copy)
    from salus.data import DatasetWriter

    with DatasetWriter(copy) as writer:
        collect_attrs = dict(writer.attrs["collect"])
        writer.update_attrs({"collect": {**collect_attrs, "env": "gym_pusht/PushT-v0"}})
    with pytest.raises(InvalidInputError, match="the ceiling needs our simulator"):
        run_ceiling(copy, tmp_path / "o", _config())
    # a step beyond the recorded episode is refused by the worker itself
    job = mc.CeilingJob(
        "x", "push", 0, (), np.zeros((5, 4), np.float32), (False, 4, "timeout"), (7,), 2, 0, "builtin"
    )
    with pytest.raises(InvalidInputError, match=r"\[1, 5\)"):
        mc.run_ceiling_job(job)


def test_world_noise_is_reseeded_from_the_fork_on():
    from salus.sim import make_env
    from salus.sim.perturbations import reseed_noise

    def after(seed: int | None) -> np.ndarray:
        env = make_env(
            "push", render=False, max_steps=10, perturbations=[("action_noise", 0.8), ("mass", 0.5)]
        )
        try:
            env.reset(seed=3)
            env.step(np.zeros(4, np.float32))
            if seed is not None:
                assert reseed_noise(env, seed) == ["action_noise"]  # mass draws nothing after reset
            for _ in range(3):
                obs, *_ = env.step(np.zeros(4, np.float32))
            return np.asarray(obs["state"])
        finally:
            env.close()

    recorded = after(None)
    np.testing.assert_array_equal(after(None), recorded)  # the episode's own stream replays
    np.testing.assert_array_equal(after(1), after(1))
    assert not np.array_equal(after(1), recorded) and not np.array_equal(after(1), after(2))
    with pytest.raises(InvalidInputError, match="seed"):
        reseed_noise(make_env("push", render=False), -1)


def test_the_ceiling_at_T_continues_from_the_step_the_prediction_view_reads(tiny, first, tmp_path):
    """``at_T``: key "T", step T - 2 (T the shortest rollout), whose score the SAFE-prediction
    view reads; the seconds' times are unchanged and resumed from the first run's records."""
    from salus.jobs.ceiling import parse_times as _times
    from salus.predictor.ceiling import time_key, view_metric
    from salus.predictor.episodes import episodes_from_dataset

    _, out = first
    shutil.copytree(out, tmp_path / "o")
    result = run_ceiling(tiny, tmp_path / "o", _config(at_T=True))
    lengths = [ep.length for ep in episodes_from_dataset(SalusDataset(tiny), embeddings=False).episodes]
    assert result.times["T"]["step"] == mc.prediction_step(episodes_from_dataset(SalusDataset(tiny)).episodes)
    assert result.times["T"]["step"] == min(lengths) - 2
    assert result.times["0.4s"] == first[0].times["0.4s"]
    assert (
        time_key("T") == "T" and view_metric("T") == "safe_prediction" and view_metric("2s") == "at_risk_2s"
    )
    assert _times("1,2,T") == ((1.0, 2.0), True) and _times("0.5") == ((0.5,), False)
    with pytest.raises(InvalidInputError, match="seconds > 0 or T"):
        _times("1,U")
