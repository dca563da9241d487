"""The evaluation protocol's sanity checks: metrics, running max at T, functional conformal bands."""

from __future__ import annotations

import math

import numpy as np
import pytest

from salus.errors import InvalidInputError
from salus.predictor import (
    Episode,
    FunctionalBand,
    alarm_metrics,
    fit_functional_bands,
    horizon_labels,
    protocol_times,
    ranking_metrics,
    running_max,
    synthetic_episodes,
)
from salus.predictor.metrics import score_at


@pytest.fixture(scope="module")
def episodes():
    # Failed episodes are longer than successes, as real timeouts are.
    return synthetic_episodes(600, seed=3, n_baselines=0, embedding_dim=2).episodes


def _run(scores):
    return [running_max(s) for s in scores]


def test_time_index_score_is_chance_at_T_but_not_over_all_steps(episodes):
    times = protocol_times(episodes)
    res = ranking_metrics(episodes, _run([np.arange(ep.length, dtype=float) for ep in episodes]), times)
    assert res["auroc_T"] == 0.5  # every episode has the same elapsed time at T
    # Over all steps the longer failed episodes make elapsed time look predictive: the confound.
    assert res["auroc_all"] > 0.6


def test_random_noise_score_is_chance(episodes):
    rng = np.random.default_rng(0)
    res = ranking_metrics(
        episodes, _run([rng.random(ep.length) for ep in episodes]), protocol_times(episodes)
    )
    assert res["auroc_T"] == pytest.approx(0.5, abs=0.07)


def test_label_peeking_score_is_near_perfect(episodes):
    rng = np.random.default_rng(1)
    scores = [float(ep.failed) + 0.1 * rng.random(ep.length) for ep in episodes]
    res = ranking_metrics(episodes, _run(scores), protocol_times(episodes))
    assert res["auroc_T"] > 0.99 and res["ap_T"] > 0.99 and res["auroc_all"] > 0.99


def test_protocol_times_are_the_shortest_success(episodes):
    shortest = min(ep.length for ep in episodes if ep.success)
    assert set(protocol_times(episodes).values()) == {shortest}
    for task, T in protocol_times(episodes, per_task=True).items():
        assert min(ep.length for ep in episodes if ep.task == task and ep.success) == T


def test_running_max_and_score_at_shorter_episode():
    r = running_max(np.array([0.1, 0.5, 0.2, np.nan, 0.7]))
    np.testing.assert_allclose(r, [0.1, 0.5, 0.5, 0.5, 0.7])
    assert score_at(r, 2) == 0.5
    assert score_at(r, 100) == 0.7  # shorter than T: its last value


def _random_walks(n, rng, lo=40, hi=80):
    return [np.cumsum(rng.normal(0.0, 1.0, int(rng.integers(lo, hi)))) for _ in range(n)]


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_conformal_fpr_on_fresh_successes_is_within_sampling_error(alpha):
    rng = np.random.default_rng(int(alpha * 100))
    calib, fresh = _random_walks(400, rng), _random_walks(2000, rng)
    one = fit_functional_bands(calib, [alpha], two_sided=False, seed=1)[alpha]
    fpr_one = np.mean([one.alarm_step(s) >= 0 for s in fresh])
    # Exchangeability gives E[P(alarm)] in [alpha - 1/(n+1), alpha]; given one calibration set the
    # alarm rate is Beta-distributed (variance ~ alpha(1-alpha)/(n+2)), plus binomial test noise.
    sd = math.sqrt(alpha * (1 - alpha) * (1 / len(fresh) + 1 / (one.n_cal + 2)))
    assert abs(fpr_one - alpha) < 3.5 * sd + 1.0 / (one.n_cal + 1)
    two = fit_functional_bands(calib, [alpha], two_sided=True, seed=1)[alpha]
    fpr_two = np.mean([two.alarm_step(s) >= 0 for s in fresh])
    assert fpr_two <= alpha + 3.5 * sd  # the two-sided (SAFE) band is conservative for upward alarms
    assert two.half_width >= one.half_width


def test_conformal_band_is_infinite_when_too_few_calibration_rollouts():
    rng = np.random.default_rng(0)
    band = fit_functional_bands(_random_walks(6, rng), [0.05], seed=0)[0.05]  # n_cal = 3 < 1/alpha
    assert math.isinf(band.half_width)
    assert band.alarm_step(np.full(50, 1e9)) == -1
    again = FunctionalBand.from_dict(band.to_dict())
    assert math.isinf(again.half_width)


def test_conformal_band_rank_and_roundtrip():
    # Constant trajectories: mu = mean of fit part, nonconformity = |c - mu| / h with constant h.
    trajs = [np.full(10, float(c)) for c in range(21)]
    bands = fit_functional_bands(trajs, [0.1, 0.5], modulation="constant", fit_fraction=0.5, seed=0)
    b = bands[0.1]
    assert b.n_fit + b.n_cal == 21
    assert np.allclose(b.h, 1.0)
    back = FunctionalBand.from_dict(b.to_dict())
    np.testing.assert_allclose(back.upper(15), b.upper(15))
    assert bands[0.5].half_width <= b.half_width
    with pytest.raises(InvalidInputError):
        fit_functional_bands(trajs[:1], [0.1])
    with pytest.raises(InvalidInputError):
        fit_functional_bands(trajs, [1.5])


def test_alarm_metrics_detection_and_lead_time():
    band = FunctionalBand(mu=np.zeros(5), h=np.ones(5), half_width=1.0, alpha=0.1, n_fit=1, n_cal=1)
    sig, val = np.zeros((10, 12), np.float32), np.ones((10, 12), bool)
    fail = Episode(sig, val, success=False, failure_step=8, failure_type="drop")
    late = Episode(sig, val, success=False, failure_step=2, failure_type="miss")
    ok = Episode(sig, val, success=True, failure_step=-1)
    quiet = Episode(sig, val, success=True, failure_step=-1)
    scores = [
        np.r_[np.zeros(3), np.full(7, 2.0)],
        np.r_[np.zeros(6), np.full(4, 2.0)],
        np.full(10, 5.0),
        np.zeros(10),
    ]
    m = alarm_metrics([fail, late, ok, quiet], _run(scores), band, hz=20.0)
    assert m["tpr"] == 1.0 and m["tpr_before"] == 0.5 and m["fpr"] == 0.5
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    assert m["detection_step"] == pytest.approx((3 + 6) / 2)
    assert m["lead_steps"] == 5 and m["lead_s"] == pytest.approx(0.25)


def test_horizon_labels_match_the_dataset_definition():
    sig, val = np.zeros((20, 12), np.float32), np.ones((20, 12), bool)
    ep = Episode(sig, val, success=False, failure_step=12, failure_type="collision")
    y = horizon_labels(ep, (1, 5), ("drop", "collision"))
    # t <= f < t + h, and 1 after the failure.
    assert np.flatnonzero(y[:, 0, 0]).tolist() == list(range(12, 20))
    assert np.flatnonzero(y[:, 1, 0]).tolist() == list(range(8, 20))
    np.testing.assert_array_equal(y[:, :, 2], y[:, :, 0])
    assert y[:, :, 1].sum() == 0
    ok = Episode(sig, val, success=True, failure_step=-1)
    assert horizon_labels(ok, (5,), ("drop",)).sum() == 0


def test_bootstrap_auroc_is_paired_and_centred():
    from salus.predictor.metrics import bootstrap_auroc, ci95, roc_auc

    rng = np.random.default_rng(4)
    labels = rng.random(150) < 0.4
    good = labels + rng.normal(0, 0.8, 150)
    boot = bootstrap_auroc(labels, np.stack([good, good, rng.random(150)]), n_boot=400, seed=0)
    assert boot.shape == (3, 400)
    np.testing.assert_array_equal(boot[0], boot[1])  # same resamples for every method
    lo, hi = ci95(boot[0])
    assert lo < roc_auc(labels, good) < hi and hi - lo < 0.25
    assert np.nanmean(boot[2]) == pytest.approx(0.5, abs=0.08)
