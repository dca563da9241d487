"""Published baseline scores against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from salus.errors import InvalidInputError, InvalidNameError, NotFittedError
from salus.signals import EMBEDDING_BASELINE_NAMES, ONLINE_BASELINE_NAMES, EmbeddingScorer, OnlineBaselines
from salus.signals.baselines import action_total_variance, fiper_chunk_entropy, mmd_rbf

from .helpers import internals

COL = {n: i for i, n in enumerate(ONLINE_BASELINE_NAMES)}


def test_action_total_variance_hand_value():
    s = np.zeros((1, 2, 3, 4))
    s[0, 0, :, 0] = 0.1
    s[0, 1, :, 0] = -0.1
    s[0, 0, 0, 1] = 0.3  # one position, one dimension: variance 0.0225 there
    expected = 0.01 + 0.0225 / 3
    assert action_total_variance(s)[0] == pytest.approx(expected)


def test_fiper_entropy_two_samples_hand_value():
    h, d = 0.1, 0.2
    s = np.zeros((1, 2, 1, 2))
    s[0, 1, 0, 0] = d
    # each sample's leave-one-out density is N(d; 0, h^2 I_2)
    expected = d**2 / (2 * h**2) + math.log(2 * math.pi * h**2)
    assert fiper_chunk_entropy(s, h)[0] == pytest.approx(expected)
    wide = s * 3
    assert fiper_chunk_entropy(wide, h)[0] > fiper_chunk_entropy(s, h)[0]


def test_mmd_hand_value():
    x, y = np.array([[0.0]]), np.array([[1.0]])
    # pooled off-diagonal median squared distance = 1: k(x, y) = exp(-1/2)
    assert mmd_rbf(x, y) == pytest.approx(2 - 2 * math.exp(-0.5))
    same = np.array([[0.0], [1.0]])
    assert mmd_rbf(same, same.copy()) == pytest.approx(0.0, abs=1e-12)


def test_online_baselines_stream_hand_values():
    ob = OnlineBaselines(1)
    c0 = np.zeros((4, 4))
    c1 = np.zeros((4, 4))
    c1[:, 0] = 0.2
    s0 = np.stack([c0, c0 + 0.1])[None]  # K = 2
    s1 = np.stack([c1, c1 + 0.1])[None]
    steps = [
        internals(action=c0[0], chunk=c0, chunk_id=0, chunk_offset=0, new_chunk=True, samples=s0),
        internals(action=c0[1], chunk=c0, chunk_id=0, chunk_offset=1, samples=s0),
        internals(action=c1[0], chunk=c1, chunk_id=1, chunk_offset=0, new_chunk=True, samples=s1),
        internals(action=c1[1], chunk=c1, chunk_id=1, chunk_offset=1, samples=s1),
    ]
    out = [ob.step(it) for it in steps]
    atv = COL["action_total_variance"]
    assert out[0].valid[0, atv] and out[0].values[0, atv] == pytest.approx(4 * 0.05**2, rel=1e-5)
    assert not out[1].valid[0, COL["stac"]] and not out[1].valid[0, COL["stac_single"]]
    # overlap of chunk 1 (from step 2) with chunk 0 (from step 0): 2 steps; only dim 0 differs by 0.2
    single = math.sqrt(0.2**2 / 4)
    assert out[2].values[0, COL["stac_single"]] == pytest.approx(single, rel=1e-5)
    assert out[3].values[0, COL["stac_single"]] == pytest.approx(single, rel=1e-5)  # held within the chunk
    x = s0[0, :, 2:4].reshape(2, -1).astype(np.float64)
    y = s1[0, :, 0:2].reshape(2, -1).astype(np.float64)
    assert out[2].values[0, COL["stac"]] == pytest.approx(mmd_rbf(x, y), rel=1e-5)
    assert out[2].values[0, COL["stac"]] > 0
    assert np.isfinite(np.concatenate([o.values for o in out])).all()


def test_online_baselines_without_samples_are_invalid_and_reset_per_env():
    ob = OnlineBaselines(2, names=["stac_single", "action_total_variance"])
    a = np.zeros((2, 4))
    out = ob.step(internals(action=a, chunk=np.zeros((2, 4, 4)), new_chunk=True))
    assert out.names == ("stac_single", "action_total_variance")
    assert out.values.shape == (2, 2) and not out.valid.any()
    ob.step(internals(action=a, chunk=np.ones((2, 4, 4)) * 0.5, chunk_id=1, new_chunk=True))
    ob.reset(1)
    out = ob.step(internals(action=a, chunk=np.ones((2, 4, 4)), chunk_id=2, new_chunk=True))
    assert out.valid[0, 0] and out.values[0, 0] == pytest.approx(0.5)
    assert not out.valid[1, 0]
    with pytest.raises(InvalidNameError, match="online baseline"):
        OnlineBaselines(1, names=["stac", "nope"])


def test_embedding_scorers_hand_values():
    ref = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    q = np.array([[0.0, 1.0], [np.nan, 0.0]])
    eu = EmbeddingScorer("knn_euclidean", k=2).fit(ref).score(q)
    assert eu[0] == pytest.approx((1.0 + 1.0) / 2)  # distances 1 (origin), 1 (0, 2)
    assert np.isnan(eu[1])
    co = EmbeddingScorer("knn_cosine", k=1).fit(ref[1:]).score(np.array([[1.0, 1.0]]))
    assert co[0] == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)
    ma = EmbeddingScorer("mahalanobis", shrinkage=0.0).fit(np.array([[1.0, 0], [-1, 0], [0, 2], [0, -2]]))
    assert ma.score(np.array([[1.0, 2.0]]))[0] == pytest.approx(2.0, rel=1e-5)
    for name in EMBEDDING_BASELINE_NAMES:
        scorer = EmbeddingScorer(name, k=1).fit(np.random.default_rng(0).normal(size=(20, 2)))
        again = EmbeddingScorer.from_state_dict(scorer.state_dict())
        np.testing.assert_allclose(again.score(q[:1]), scorer.score(q[:1]))
    with pytest.raises(NotFittedError):
        EmbeddingScorer("knn_cosine").score(q)
    with pytest.raises(InvalidNameError, match="embedding baseline"):
        EmbeddingScorer("nope")
    with pytest.raises(InvalidInputError, match=r"\(M, 2\)"):
        EmbeddingScorer("knn_euclidean").fit(ref).score(np.zeros((1, 3)))


def test_online_baselines_nan_samples_are_flagged_not_raised():
    from .helpers import random_stream

    rng = np.random.default_rng(5)
    ob = OnlineBaselines(2)
    for t, (it, _) in enumerate(random_stream(rng, 16, b=2, c=8, n_exec=4, k=4)):
        if t == 8:
            it.samples[0, 1, 2, 0] = np.nan
            it.chunk[0, 3, 1] = np.nan
        out = ob.step(it)
        assert np.isfinite(out.values).all()
        if t == 8:
            assert not out.valid[0].any() and out.valid[1].all()
