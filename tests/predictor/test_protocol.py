"""The evaluation protocol's sanity checks (``salus.predictor.protocol``): a score equal to elapsed
time gets 0.5 on every time-honest metric, label peeking gets ~1, noise ~0.5, the realised FPR of
both threshold kinds is within sampling error of alpha, and the alarm bookkeeping keeps timeouts
out of lead time and "before failure" recall."""

from __future__ import annotations

import math

import numpy as np
import pytest

from salus.errors import InvalidInputError, InvalidNameError
from salus.predictor import Episode, FunctionalBand, fit_functional_bands, horizon_labels, synthetic_episodes
from salus.predictor.protocol import (
    ProtocolConfig,
    alarm_metrics,
    at_risk_auroc,
    bootstrap_auroc,
    ci95,
    constant_band,
    fit_bands,
    method_metrics,
    roc_auc,
    running_max,
    safe_metrics,
    safe_times,
    score_at,
    time_matched_auroc,
    type_metrics,
    view_metrics,
    wilson,
)


@pytest.fixture(scope="module")
def episodes():
    # Failed episodes are longer than successes, as real timeouts are.
    return synthetic_episodes(600, seed=3, n_baselines=0, embedding_dim=2).episodes


def _run(scores):
    return [running_max(s) for s in scores]


def _elapsed(episodes):
    return _run([np.arange(ep.length, dtype=float) for ep in episodes])


def _peek(episodes, seed=1):
    rng = np.random.default_rng(seed)
    return _run([float(ep.failed) + 0.1 * rng.random(ep.length) for ep in episodes])


def test_failed_rollouts_are_longer_so_elapsed_time_would_win_a_naive_metric(episodes):
    labels = np.array([ep.failed for ep in episodes])
    lengths = np.array([ep.length for ep in episodes], dtype=float)
    assert roc_auc(labels, lengths) > 0.9  # the confound every metric below must remove


def _palindrome_episodes():
    """Episodes laid out so that a score of elapsed time plus a distinct per-episode offset gets
    exactly 0.5 without a single tie: in offset order their kinds (success, or failure type and
    event step) read the same backwards, so every subset a metric takes by kind is balanced.
    Failed rollouts are longer (120 steps against 80) and every event (steps 10 and 70) comes
    before T = 80; at-risk at 1, 2, 3 s drops the step-10 events."""
    half = ["S", ("drop", 10), "S", ("miss", 70), ("timeout", 119), "S", ("collision", 10), "S", ("drop", 70)]
    half += ["S", ("miss", 10), ("collision", 70), "S", ("timeout", 119), "S"]
    kinds = half + half[::-1]
    sig = np.zeros((120, 12), np.float32)
    val = np.ones((120, 12), bool)
    episodes, scores = [], []
    for shift, task in ((0.0, "a"), (0.5, "b")):  # b's offsets interleave a's: no tie across tasks
        for k, kind in enumerate(kinds):
            if kind == "S":
                ep = Episode(sig[:80], val[:80], success=True, failure_step=-1, task=task)
            else:
                ep = Episode(sig, val, success=False, failure_step=kind[1], failure_type=kind[0], task=task)
            episodes.append(ep)
            offset = (k + 1 + shift) / (len(kinds) + 2)
            scores.append(np.arange(ep.length, dtype=float) + offset)  # strictly increasing
    return episodes, _run(scores)


def test_elapsed_time_is_exactly_chance_without_ties_on_every_time_honest_metric():
    episodes, run = _palindrome_episodes()
    times = safe_times(episodes)
    assert times == {"a": 80, "b": 80}
    labels = np.array([ep.failed for ep in episodes])
    assert roc_auc(labels, np.array([ep.length for ep in episodes], dtype=float)) == 1.0  # the confound
    at_t = np.array([score_at(r, times[ep.task]) for ep, r in zip(episodes, run, strict=True)])
    assert np.unique(at_t).size == at_t.size  # no ties at T: 0.5 must come from the content
    res = safe_metrics(episodes, run, times)
    assert res["auroc"] == 0.5 and res["auroc_task_mean"] == 0.5
    for step in (20, 40, 60):
        r = at_risk_auroc(episodes, run, step)
        assert r["auroc"] == 0.5 and r["n_failed"] == 2 * 10  # the step-10 events are out
    for lo, hi in ((1, 5), (6, 15), (16, 40)):
        assert time_matched_auroc(episodes, run, lo, hi)["auroc"] == 0.5
    for t, v in type_metrics(episodes, run, times, ("drop", "miss", "collision", "timeout")).items():
        assert v["auroc"] == 0.5, t
    views = view_metrics(episodes, run, times, ProtocolConfig())
    for key in ("safe_unperturbed", "safe_prediction", "at_risk_2s_event", "at_risk_2s_timeout"):
        assert views[key]["auroc"] == 0.5, key
    # a metric that read each episode at its own end (failures are longer) would not give 0.5
    ends = np.array([r[-1] for r in run])
    assert roc_auc(labels, ends) == 1.0


def test_label_peeking_is_near_perfect_on_every_metric(episodes):
    run = _peek(episodes)
    times = safe_times(episodes)
    assert safe_metrics(episodes, run, times)["auroc"] > 0.99
    assert at_risk_auroc(episodes, run, 40)["auroc"] > 0.99
    assert time_matched_auroc(episodes, run, 6, 15)["auroc"] > 0.99


def test_time_matched_intervals_share_the_resamples_of_a_view(episodes):
    """Every method of a view gets the same bootstrap resamples (they depend on the counts and the
    seed only; drawn once): a method's interval is the same whether it is scored first or not, and
    scoring another method on the view draws nothing new."""
    from salus.predictor.protocol import _resample_weights

    rng = np.random.default_rng(5)
    noisy = _run([rng.random(ep.length) for ep in episodes])
    first = time_matched_auroc(episodes, noisy, 6, 15, n_boot=200, seed=3)
    _resample_weights.cache_clear()
    peek = time_matched_auroc(episodes, _peek(episodes), 6, 15, n_boot=200, seed=3)
    again = time_matched_auroc(episodes, noisy, 6, 15, n_boot=200, seed=3)
    info = _resample_weights.cache_info()
    assert again["ci95"] == first["ci95"] and info.misses == 1 and info.hits == 1
    assert peek["ci95"][0] > 0.95 and first["ci95"][0] < 0.5 < first["ci95"][1]


def test_random_noise_is_chance(episodes):
    rng = np.random.default_rng(0)
    run = _run([rng.random(ep.length) for ep in episodes])
    assert safe_metrics(episodes, run, safe_times(episodes))["auroc"] == pytest.approx(0.5, abs=0.07)
    assert at_risk_auroc(episodes, run, 40)["auroc"] == pytest.approx(0.5, abs=0.08)


def test_safe_times_are_the_shortest_rollout_of_any_task_and_outcome(episodes):
    times = safe_times(episodes)
    assert set(times) == {ep.task for ep in episodes}
    assert set(times.values()) == {min(ep.length for ep in episodes)}


def test_pooled_safe_gives_elapsed_time_chance_when_tasks_differ_in_length_and_failure_rate():
    """Task a: short rollouts, mostly failures; task b: longer rollouts, mostly successes. Read at
    each task's own shortest rollout (SAFE's per-task rule), a score of elapsed time would rank
    b's episodes above a's and score far from 0.5 pooled; read at one T it is exactly chance."""
    sig, val = np.zeros((140, 12), np.float32), np.ones((140, 12), bool)
    episodes = []
    for task, n_fail, n_succ, lo in (("a", 6, 2, 40), ("b", 2, 6, 90)):
        episodes += [
            Episode(sig[:lo], val[:lo], success=True, failure_step=-1, task=task) for _ in range(n_succ)
        ]
        episodes += [
            Episode(
                sig[: lo + 30],
                val[: lo + 30],
                success=False,
                failure_step=lo + 29,
                failure_type="timeout",
                task=task,
            )
            for _ in range(n_fail)
        ]
    run = _run([np.arange(ep.length, dtype=float) for ep in episodes])
    per_task_T = {"a": 40, "b": 90}  # SAFE's set_task_min_step
    old = safe_metrics(episodes, run, per_task_T)
    assert old["auroc"] < 0.3  # the confound the common T removes
    res = safe_metrics(episodes, run, safe_times(episodes))
    assert safe_times(episodes) == {"a": 40, "b": 40}
    assert res["auroc"] == 0.5 and res["auroc_task_mean"] == 0.5


def test_at_risk_keeps_only_running_episodes_without_an_event():
    sig, val = np.zeros((30, 12), np.float32), np.ones((30, 12), bool)
    early = Episode(sig, val, success=False, failure_step=5, failure_type="drop")  # event before t
    timeout = Episode(sig, val, success=False, failure_step=29, failure_type="timeout")  # no event
    short = Episode(sig[:8], val[:8], success=True, failure_step=-1)  # ended before t
    ok = Episode(sig, val, success=True, failure_step=-1)
    res = at_risk_auroc(
        [early, timeout, short, ok], _run([np.zeros(30), np.ones(30), np.ones(8), np.zeros(30)]), 10
    )
    assert res["n"] == 2 and res["n_failed"] == 1 and res["auroc"] == 1.0


def test_time_matched_compares_same_task_successes_at_the_same_elapsed_time():
    sig, val = np.zeros((40, 12), np.float32), np.ones((40, 12), bool)
    fail = Episode(sig, val, success=False, failure_step=30, failure_type="miss", task="a")
    same = Episode(sig, val, success=True, failure_step=-1, task="a")
    other = Episode(sig, val, success=True, failure_step=-1, task="b")
    t = np.arange(40, dtype=float)
    # The failure's score equals the same-task success's at every step: chance, whatever task b does.
    res = time_matched_auroc([fail, same, other], [t, t.copy(), t + 100], 1, 5)
    assert res["auroc"] == 0.5 and res["n_failed"] == 1
    res = time_matched_auroc([fail, same], [t + 1, t], 6, 15, n_boot=50)
    assert res["auroc"] == 1.0 and res["ci95"][0] == 1.0


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_both_thresholds_realise_alpha_on_fresh_successes(alpha):
    rng = np.random.default_rng(int(alpha * 100))

    def walks(n):
        return [
            np.maximum.accumulate(np.cumsum(rng.normal(0, 1, int(rng.integers(40, 80))))) for _ in range(n)
        ]

    calib, fresh = walks(400), walks(2000)
    cfg = ProtocolConfig(alphas=(alpha,))
    bands = fit_bands(calib, cfg)
    for kind, by in bands.items():
        b = by[alpha]
        fpr = np.mean([b.alarm_step(s) >= 0 for s in fresh])
        sd = math.sqrt(alpha * (1 - alpha) * (1 / len(fresh) + 1 / (b.n_cal + 2)))
        assert abs(fpr - alpha) < 3.5 * sd + 1.0 / (b.n_cal + 1), kind
    assert bands["band"][alpha].two_sided is False  # SAFE / FAIL-Detect: the one-sided upper band


def test_constant_band_is_split_conformal_on_maxima():
    b = constant_band(np.arange(1, 20, dtype=float), 0.1)  # n = 19: rank ceil(20 * 0.9) = 18
    assert b.half_width == 18.0 and b.alarm_step(np.array([1.0, 18.0, 18.5])) == 2
    assert math.isinf(constant_band([1.0, 2.0], 0.05).half_width)


def test_alarm_metrics_keep_timeouts_out_of_lead_time_and_recall():
    band = FunctionalBand(
        mu=np.zeros(5), h=np.ones(5), half_width=1.0, alpha=0.1, n_fit=1, n_cal=1, two_sided=False
    )
    sig, val = np.zeros((40, 12), np.float32), np.ones((40, 12), bool)
    caught = Episode(sig, val, success=False, failure_step=30, failure_type="drop")  # alarm at 10
    late = Episode(sig, val, success=False, failure_step=5, failure_type="miss")  # alarm at 20
    timeout = Episode(sig, val, success=False, failure_step=39, failure_type="timeout")  # alarm at 3
    ok = Episode(sig, val, success=True, failure_step=-1)  # false alarm at 0
    quiet = Episode(sig, val, success=True, failure_step=-1)

    def at(k):
        return np.r_[np.zeros(k), np.full(40 - k, 2.0)]

    scores = _run([at(10), at(20), at(3), at(0), np.zeros(40)])
    m = alarm_metrics([caught, late, timeout, ok, quiet], scores, band, ProtocolConfig(), timeout_step=35)
    assert m["n_event"] == 2 and m["n_timeout"] == 1
    assert m["fpr"] == 0.5 and m["fpr_ci95"][0] < 0.5 < m["fpr_ci95"][1]
    assert m["event_recall_0s"] == 0.5 and m["event_recall_0.5s"] == 0.5 and m["event_recall_1s"] == 0.5
    assert m["event_after"] == 0.5 and m["event_any"] == 1.0
    assert m["lead_s"] == [1.0] and m["lead_s_median"] == 1.0  # (30 - 10) steps at 20 Hz; no timeout
    assert m["timeout_recall"] == 1.0
    assert m["event_recall_by_type"] == {
        "drop": 1.0,
        "miss": 0.0,
        "collision": pytest.approx(math.nan, nan_ok=True),
    }


def test_method_metrics_values_are_the_protocol_functions(episodes):
    run = _peek(episodes)
    calib = [r for r, ep in zip(run, episodes, strict=True) if ep.success][:100]
    cfg = ProtocolConfig(n_boot=50)
    times = safe_times(episodes)
    bands = fit_bands(calib, cfg)
    res = method_metrics(episodes, run, times, bands, cfg, timeout_step=90)
    assert set(res) == {"safe", "at_risk", "lead", "types", "alarms", "views"}
    assert res["safe"] == safe_metrics(episodes, run, times)
    assert res["safe"]["auroc"] > 0.99 and res["safe"]["n"] == len(episodes)
    assert res["safe"]["n_failed"] == sum(ep.failed for ep in episodes)
    for key, step in (("1s", 20), ("2s", 40), ("3s", 60)):
        assert res["at_risk"][key] == at_risk_auroc(episodes, run, step)
        assert res["at_risk"][key]["auroc"] > 0.99
    assert cfg.lead_steps() == {"0-0.25s": (1, 5), "0.25-0.75s": (6, 15), "0.75-2s": (16, 40)}  # at 20 Hz
    assert ProtocolConfig(control_hz=10.0).lead_steps() == {
        "0-0.25s": (1, 2),
        "0.25-0.75s": (3, 7),
        "0.75-2s": (8, 20),
    }
    with pytest.raises(InvalidInputError, match=r"lead bin \(0, 0.25\] s holds no control step at 2 Hz"):
        ProtocolConfig(control_hz=2.0).lead_steps()
    for name, (lo, hi) in cfg.lead_steps().items():
        expect = time_matched_auroc(episodes, run, lo, hi, n_boot=cfg.n_boot // 5, seed=cfg.seed)
        assert res["lead"][name] == expect
    assert res["types"] == type_metrics(episodes, run, times, ("drop", "miss", "collision", "timeout"))
    assert set(res["alarms"]) == {"band", "constant"} and set(res["alarms"]["band"]) == {"0.05", "0.1", "0.2"}
    for kind, by in bands.items():
        for a, b in by.items():
            got = res["alarms"][kind][str(a)]
            want = alarm_metrics(episodes, run, b, cfg, timeout_step=90)
            assert got["fpr"] == want["fpr"] and got["event_recall_0.5s"] == want["event_recall_0.5s"]
            assert got["lead_s"] == want["lead_s"] and got["timeout_recall"] == want["timeout_recall"]
            assert got["alpha"] == a and got["n_success"] == sum(ep.success for ep in episodes)
    assert res["alarms"]["band"]["0.2"]["event_any"] > 0.9  # the peeking score alarms on failures
    assert res["views"]["safe_prediction"]["auroc"] > 0.99


def test_wilson_interval():
    lo, hi = wilson(10, 100)
    assert lo < 0.1 < hi and hi - lo < 0.14
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_running_max_and_score_at_shorter_episode():
    r = running_max(np.array([0.1, 0.5, 0.2, np.nan, 0.7]))
    np.testing.assert_allclose(r, [0.1, 0.5, 0.5, 0.5, 0.7])
    assert score_at(r, 2) == 0.5
    assert score_at(r, 100) == 0.7  # shorter than T: its last value


def test_conformal_band_is_infinite_when_too_few_calibration_rollouts():
    rng = np.random.default_rng(0)
    walks = [np.cumsum(rng.normal(0.0, 1.0, 50)) for _ in range(6)]
    band = fit_functional_bands(walks, [0.05], seed=0)[0.05]  # n_cal = 3 < 1/alpha
    assert math.isinf(band.half_width)
    assert band.alarm_step(np.full(50, 1e9)) == -1
    assert math.isinf(FunctionalBand.from_dict(band.to_dict()).half_width)


def test_conformal_band_rank_and_roundtrip():
    trajs = [np.full(10, float(c)) for c in range(21)]
    bands = fit_functional_bands(trajs, [0.1, 0.5], modulation="constant", fit_fraction=0.5, seed=0)
    b = bands[0.1]
    assert b.n_fit + b.n_cal == 21 and np.allclose(b.h, 1.0)
    np.testing.assert_allclose(FunctionalBand.from_dict(b.to_dict()).upper(15), b.upper(15))
    assert bands[0.5].half_width <= b.half_width
    with pytest.raises(InvalidInputError):
        fit_functional_bands(trajs[:1], [0.1])
    with pytest.raises(InvalidInputError):
        fit_functional_bands(trajs, [1.5])


def test_protocol_config_refuses_bad_values():
    with pytest.raises(InvalidInputError):
        ProtocolConfig(alphas=(1.5,))
    with pytest.raises(InvalidNameError, match="band, constant"):
        ProtocolConfig(thresholds=("band", "median"))


def test_horizon_labels_match_the_dataset_definition():
    sig, val = np.zeros((20, 12), np.float32), np.ones((20, 12), bool)
    ep = Episode(sig, val, success=False, failure_step=12, failure_type="collision")
    y = horizon_labels(ep, (1, 5), ("drop", "collision"))
    assert np.flatnonzero(y[:, 0, 0]).tolist() == list(range(12, 20))
    assert np.flatnonzero(y[:, 1, 0]).tolist() == list(range(8, 20))
    np.testing.assert_array_equal(y[:, :, 2], y[:, :, 0])
    assert y[:, :, 1].sum() == 0


def test_bootstrap_auroc_is_paired_and_centred():
    rng = np.random.default_rng(4)
    labels = rng.random(150) < 0.4
    good = labels + rng.normal(0, 0.8, 150)
    boot = bootstrap_auroc(labels, np.stack([good, good, rng.random(150)]), n_boot=400, seed=0)
    assert boot.shape == (3, 400)
    np.testing.assert_array_equal(boot[0], boot[1])  # same resamples for every method
    lo, hi = ci95(boot[0])
    assert lo < roc_auc(labels, good) < hi and hi - lo < 0.25
    assert np.nanmean(boot[2]) == pytest.approx(0.5, abs=0.08)


def test_average_precision_is_scikit_learns():
    """The numpy average precision gives scikit-learn's numbers (ties, many or few positives), and
    NaN where it has none to give (one class, a NaN score)."""
    from sklearn.metrics import average_precision_score

    from salus.predictor.protocol import average_precision

    rng = np.random.default_rng(3)
    for k in range(60):
        n = int(rng.integers(2, 80))
        y = np.r_[True, False, rng.random(n) < rng.random()]
        s = rng.integers(0, 5, y.size) / 4.0 if k % 2 else rng.random(y.size)
        assert average_precision(y, s) == pytest.approx(average_precision_score(y.astype(int), s), abs=1e-12)
    assert np.isnan(average_precision(np.ones(4, bool), np.arange(4.0)))
    assert np.isnan(average_precision(np.array([1, 0, 1], bool), np.array([0.2, np.nan, 0.4])))


def test_bootstrap_auroc_is_the_roc_auc_of_each_resample():
    """The definition: resample b draws episodes idx[b] (the generator's draws, in order) and its
    value is roc_auc (ranks, ties averaged) of those labels and scores; the counting formula gives
    the very same numbers, also with ties, a NaN score and single-class resamples."""
    rng = np.random.default_rng(7)
    n, n_boot = 23, 60
    labels = rng.random(n) < 0.3
    scores = np.stack([rng.integers(0, 4, n) / 3.0, rng.random(n), rng.random(n)])
    scores[2, 5] = np.nan
    boot = bootstrap_auroc(labels, scores, n_boot=n_boot, seed=11)
    idx = np.random.default_rng(11).integers(0, n, size=(n_boot, n))
    for m in range(3):
        want = [roc_auc(labels[i], scores[m][i]) for i in idx]
        np.testing.assert_array_equal(boot[m], want)
    assert np.isnan(boot[2]).any() and not np.isnan(boot[2]).all()


def test_average_ranks_equal_scipy_and_the_vectorised_bootstrap_equals_the_loop():
    """The numpy ranking (ties averaged, a NaN row stays NaN) is scipy's rankdata; the time-matched
    bootstrap scores every resample at once with the values of one resample at a time."""
    from scipy.stats import rankdata

    from salus.predictor.protocol import _lead_auc, average_ranks

    def one_resample(A, V, wf, ws):  # the definition: mean over weighted failures of credit / comparisons
        num, den = A @ ws, V @ ws
        ok = den > 0
        return math.nan if wf[ok].sum() == 0 else float((wf[ok] * num[ok] / den[ok]).sum() / wf[ok].sum())

    rng = np.random.default_rng(0)
    for trial in range(200):
        x = rng.integers(0, 6, size=(int(rng.integers(1, 5)), int(rng.integers(1, 30)))).astype(float)
        if trial % 4 == 0:
            x[0, -1] = np.nan
        if trial % 5 == 0:
            x[-1, 0] = np.inf
        np.testing.assert_allclose(average_ranks(x), rankdata(x, axis=1))
        np.testing.assert_allclose(average_ranks(x[-1]), rankdata(x[-1]))
    assert math.isnan(roc_auc(np.array([0, 1, 1]), np.array([0.1, np.nan, 0.3])))
    assert average_ranks(np.zeros(0)).shape == (0,) and average_ranks(np.zeros((3, 0))).shape == (3, 0)
    for _ in range(50):
        nf, ns = int(rng.integers(1, 8)), int(rng.integers(1, 10))
        V = rng.integers(0, 4, (nf, ns)).astype(float)
        A = np.minimum(rng.random((nf, ns)) * 3, V)
        WF, WS = rng.integers(0, 3, (40, nf)).astype(float), rng.integers(0, 3, (40, ns)).astype(float)
        loop = np.array([one_resample(A, V, WF[b], WS[b]) for b in range(40)])
        np.testing.assert_allclose(_lead_auc(A, V, WF, WS), loop)
        np.testing.assert_allclose(_lead_auc(A, V), [one_resample(A, V, np.ones(nf), np.ones(ns))])


def test_cross_policy_table_over_seeds():
    from salus.predictor.tables import transfer_lines

    def row(name, base):
        cell = lambda v: {"mean": v, "min": v - 0.01, "max": v + 0.01, "ci95_of_mean": [v - 0.05, v + 0.05]}  # noqa: E731
        return {
            "name": name,
            **{f"{g}/{m}": cell(base) for g in ("seen", "unseen") for m in ("safe", "at_risk_2s")},
        }

    agg = {"methods": [row("salus-mlp", 0.8), row("knn", 0.7), row("transfer:builtin:salus-mlp", 0.6)]}
    lines = transfer_lines([], agg)
    assert lines[0] == "## Cross-policy check" and "mean over seeds" in lines[2]
    assert any(line.startswith("| salus-mlp | this policy | 0.800 (0.750-0.850)") for line in lines)
    assert any(line.startswith("| salus-mlp | builtin | 0.600 (0.550-0.650)") for line in lines)
    assert transfer_lines([], {"methods": [row("salus-mlp", 0.8)]}) == []  # nothing transferred: no table
