"""Snapshot baselines (per-step gradient-boosted trees and logistic regression on salus-risk's
inputs) and the running-max ablation (at-risk ROC-AUC of the instantaneous score)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from salus.predictor import EpisodeSet, synthetic_episodes
from salus.predictor.episodes import EpisodeSplit
from salus.predictor.evaluate import (
    COMPARATORS,
    SNAPSHOT_NAMES,
    MethodScores,
    evaluate_methods,
    snapshot_methods,
)
from salus.predictor.protocol import ProtocolConfig, at_risk_auroc, running_max


@pytest.fixture(scope="module")
def planted() -> tuple[EpisodeSet, EpisodeSplit]:
    es = synthetic_episodes(240, seed=3, informative=1.5)
    n = len(es)
    split = EpisodeSplit(
        tuple(range(0, 120)), tuple(range(120, 150)), tuple(range(150, 180)), tuple(range(180, n)), ()
    )
    return es, split


def test_snapshot_baselines_are_fixed_comparators_and_find_a_planted_signal(planted):
    es, split = planted
    idx = list(range(150, len(es)))
    methods = snapshot_methods(es, split, idx)
    assert [m.name for m in methods] == list(SNAPSHOT_NAMES)
    assert set(SNAPSHOT_NAMES) <= set(COMPARATORS)
    test = idx[30:]
    labels = np.array([es[i].failed for i in test])
    for m in methods:
        assert m.family == "snapshot"
        assert all(m.scores[i].shape == (es[i].length,) for i in idx)
        assert all(np.all((m.scores[i] >= 0) & (m.scores[i] <= 1)) for i in idx)
        # the drift is planted in signals 0-2 and the embedding: both classifiers find it
        res = at_risk_auroc([es[i] for i in test], [running_max(m.scores[i]) for i in test], 60)
        assert res["auroc"] > 0.75, (m.name, res)
        at_end = np.array([running_max(m.scores[i])[-1] for i in test])
        assert at_end[labels].mean() > at_end[~labels].mean()


def test_snapshot_baselines_never_see_calibration_or_test_labels(planted):
    es, split = planted
    idx = list(range(150, len(es)))
    flipped = EpisodeSet(
        [
            ep if i < 150 else dataclasses.replace(ep, success=True, failure_step=-1, failure_type="none")
            for i, ep in enumerate(es.episodes)
        ],
        signal_names=es.signal_names,
        baseline_names=es.baseline_names,
    )
    a = snapshot_methods(es, split, idx)
    b = snapshot_methods(flipped, split, idx)
    for ma, mb in zip(a, b, strict=True):
        for i in idx:
            np.testing.assert_array_equal(ma.scores[i], mb.scores[i])
    # while a change in the training labels does change them (the check can fail)
    relabel = EpisodeSet(
        [
            dataclasses.replace(
                ep,
                success=not ep.success,
                failure_step=-1 if ep.failed else ep.length - 1,
                failure_type="none" if ep.failed else "timeout",
            )
            if i < 40
            else ep
            for i, ep in enumerate(es.episodes)
        ],
        signal_names=es.signal_names,
        baseline_names=es.baseline_names,
    )
    c = snapshot_methods(relabel, split, idx)
    assert any(not np.array_equal(a[0].scores[i], c[0].scores[i]) for i in idx)


def test_snapshot_scores_are_causal(planted):
    """A step's score depends on that step alone: cutting the episode after it changes nothing."""
    es, split = planted
    i = 200
    ep = es[i]
    t = ep.length // 2
    cut = dataclasses.replace(
        ep,
        signals=ep.signals[: t + 1],
        valid=ep.valid[: t + 1],
        baselines=ep.baselines[: t + 1],
        embedding=ep.embedding[: t + 1],
        state=ep.state[: t + 1],
        hidden=ep.hidden[: t + 1],
        privileged=ep.privileged[: t + 1],
        failure_step=min(ep.failure_step, t) if ep.failed else -1,
        cache={},
    )
    eps = list(es.episodes)
    eps.append(cut)
    both = EpisodeSet(eps, signal_names=es.signal_names, baseline_names=es.baseline_names)
    full, part = snapshot_methods(both, split, [i, len(eps) - 1]), None
    part = {m.name: m.scores[len(eps) - 1] for m in full}
    for m in full:
        np.testing.assert_allclose(m.scores[i][: t + 1], part[m.name], rtol=1e-6, atol=1e-9)


def test_the_instantaneous_at_risk_view_reads_the_raw_score():
    """A score with one early spike in every success: under the running max it is ruined, the
    instantaneous view at 2 s still ranks."""
    es = synthetic_episodes(200, seed=5, informative=0.0)
    n = len(es)
    rng = np.random.default_rng(0)
    scores = {}
    for i in range(n):
        ep = es[i]
        s = np.where(ep.failed, 1.0, 0.0) + 0.1 * rng.normal(size=ep.length)
        if ep.success:
            s[5] = 10.0  # an early spike
        scores[i] = s
    split = EpisodeSplit(
        tuple(range(60)), tuple(range(60, 80)), tuple(range(80, 120)), tuple(range(120, n)), ()
    )
    ev = evaluate_methods(
        es, split, [MethodScores("spiky", "salus", scores)], config=ProtocolConfig(alphas=(0.2,), n_boot=20)
    )
    seen = ev.report["methods"][0]["seen"]
    assert seen["at_risk_instant"]["2s"]["auroc"] == pytest.approx(1.0)
    assert seen["at_risk"]["2s"]["auroc"] < 0.2
    eps = [es[i] for i in split.test_seen]
    want = at_risk_auroc(eps, [scores[i] for i in split.test_seen], 40)
    assert seen["at_risk_instant"]["2s"] == want
