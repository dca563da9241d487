"""FAIL-Detect's RND and logpZO on the observation embedding (``salus.signals.learned``, used through
``EmbeddingScorer("rnd" | "logpzo")``): the formulas by hand, that fitting on successes ranks
shifted embeddings above held-out successes, determinism for a seed, the state round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from salus.errors import CheckpointError, InvalidInputError, NotFittedError
from salus.signals import EmbeddingScorer
from salus.signals.learned import FlowModel, LearnedConfig, RNDModel

torch.set_num_threads(1)
LEARNED = ("rnd", "logpzo")


def _successes(n: int, seed: int = 1, dim: int = 16) -> np.ndarray:
    """Success-like embeddings: a curved 4-D family in ``dim`` dimensions plus noise (one fixed
    family whatever ``seed``, which draws the points)."""
    mix = np.random.default_rng(0).normal(size=(4, dim))
    rng = np.random.default_rng(seed)
    return (np.tanh(rng.normal(size=(n, 4))) @ mix + 0.2 * rng.normal(size=(n, dim))).astype(np.float32)


def _auroc(neg: np.ndarray, pos: np.ndarray) -> float:
    """P(a positive scores above a negative), ties half."""
    diff = pos[:, None] - neg[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


REF = _successes(1000)
HELD = _successes(300, seed=2)  # held-out successes
# Shifted: the same family moved by half a reference standard deviation per dimension (a fixed
# random sign; measured AUROC against the held-out successes: RND 0.999, logpZO 1.0, kNN Euclidean 1.0).
SIGN = np.where(np.random.default_rng(3).random(16) < 0.5, -1.0, 1.0)
SHIFTED = (_successes(300, seed=4) + 0.5 * REF.std(axis=0) * SIGN).astype(np.float32)


@pytest.mark.parametrize("name", LEARNED)
def test_shifted_embeddings_score_above_held_out_successes(name: str) -> None:
    scorer = EmbeddingScorer(name).fit(REF)
    held, shifted = scorer.score(HELD), scorer.score(SHIFTED)
    assert held.dtype == np.float32 and held.shape == (300,) and np.isfinite(held).all()
    assert _auroc(held, shifted) > 0.95, name
    assert np.median(shifted) > 1.5 * np.median(held)  # measured 2.0 (RND), 6.8 (logpZO)
    # held-out successes score like the fitted ones (the networks learned the family, not the points)
    assert np.median(held) < 1.5 * np.median(scorer.score(REF))


@pytest.mark.parametrize("name", LEARNED)
def test_fitting_is_what_lowers_the_successes_score(name: str) -> None:
    """One optimiser step is (about) the untrained network: training lowers the reference's
    score by more than half (RND: the predictor matches the target; logpZO: v(x, 0) learns -x,
    while the untrained field leaves Z near x, score near ||x||^2 = E)."""
    untrained = EmbeddingScorer(name, learned=LearnedConfig(min_steps=1, max_steps=1)).fit(REF)
    trained = EmbeddingScorer(name).fit(REF)
    assert np.median(trained.score(REF)) < 0.5 * np.median(untrained.score(REF))


@pytest.mark.parametrize("name", LEARNED)
def test_a_seed_gives_the_same_weights_whatever_the_thread_count(name: str) -> None:
    a = EmbeddingScorer(name, seed=7).fit(REF)
    torch.set_num_threads(2)
    try:
        b = EmbeddingScorer(name, seed=7).fit(REF)
        assert torch.get_num_threads() == 2  # the caller's count is restored after fitting
    finally:
        torch.set_num_threads(1)
    c = EmbeddingScorer(name, seed=8).fit(REF)
    ta, tb, tc = (s.state_dict()["tensors"] for s in (a, b, c))
    assert ta.keys() == tb.keys() == tc.keys()
    for key in ta:
        np.testing.assert_array_equal(ta[key], tb[key], err_msg=key)
    np.testing.assert_array_equal(a.score(SHIFTED), b.score(SHIFTED))
    assert not np.array_equal(a.score(SHIFTED), c.score(SHIFTED))  # the seed matters


@pytest.mark.parametrize("name", LEARNED)
def test_state_round_trip_rows_and_non_finite(name: str) -> None:
    scorer = EmbeddingScorer(name).fit(REF)
    again = EmbeddingScorer.from_state_dict(scorer.state_dict())
    np.testing.assert_array_equal(again.score(SHIFTED), scorer.score(SHIFTED))
    whole = scorer.score(SHIFTED)
    rows = np.concatenate([scorer.score(SHIFTED[i : i + 1]) for i in range(20)])
    np.testing.assert_allclose(rows, whole[:20], rtol=1e-6, atol=0)  # one row = the batch (float64 inside)
    q = SHIFTED[:3].copy()
    q[1, 4] = np.nan
    s = scorer.score(q)
    assert np.isnan(s[1]) and np.isfinite(s[[0, 2]]).all()
    with pytest.raises(InvalidInputError, match=r"\(M, 16\)"):
        scorer.score(np.zeros((1, 15), np.float32))
    with pytest.raises(NotFittedError):
        EmbeddingScorer(name).score(q)
    with pytest.raises(InvalidInputError, match="need more reference"):
        EmbeddingScorer(name).fit(REF[:1])
    tensors = dict(scorer.state_dict()["tensors"])
    prefix = "rnd.predictor." if name == "rnd" else "flow."
    last = max(int(k[len(prefix) + 1 :]) for k in tensors if k.startswith(f"{prefix}w"))
    del tensors[f"{prefix}w{last}"], tensors[f"{prefix}b{last}"]  # a truncated network
    with pytest.raises(InvalidInputError):
        EmbeddingScorer.from_state_dict({"name": name, "k": 5, "tensors": tensors})
    tensors = {k: v for k, v in scorer.state_dict()["tensors"].items() if not k.endswith("std")}
    with pytest.raises(CheckpointError, match="missing"):
        EmbeddingScorer.from_state_dict({"name": name, "k": 5, "tensors": tensors})


def _std_state(prefix: str, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
    return {f"{prefix}mean": mean.astype(np.float32), f"{prefix}std": std.astype(np.float32)}


def test_logpzo_is_the_squared_norm_after_one_euler_step_from_t0() -> None:
    """FAIL-Detect's ``logpZO_UQ``: Z = x + v(x, 0), score ||Z||^2, on the standardised x; the
    velocity's inputs are [x, sin(omega t), cos(omega t)], so at t = 0 only the cosine columns act."""
    mean, std = np.array([1.0, -2.0, 0.5]), np.array([2.0, 1.0, 4.0])
    omega = np.array([math.pi, 2 * math.pi], np.float32)
    w = np.zeros((3, 3 + 4), np.float32)
    w[0, 5] = 1.0  # cos(pi t) -> +1 on the first coordinate at t = 0
    w[1, 3] = 5.0  # sin(pi t) is 0 at t = 0: no effect
    w[2, 2] = -1.0  # v_2 = -z_2: the third coordinate is sent to 0
    state = {
        **_std_state("flow.", mean, std),
        "flow.omega": omega,
        "flow.w0": w,
        "flow.b0": np.zeros(3, np.float32),
    }
    x = np.array([[3.0, 0.0, 8.5], [1.0, -2.0, 0.5]], np.float32)
    z = (x - mean) / std
    want = (z[:, 0] + 1.0) ** 2 + z[:, 1] ** 2
    np.testing.assert_allclose(FlowModel().load_state_dict(state).score(x), want, rtol=1e-12)
    scorer = EmbeddingScorer.from_state_dict({"name": "logpzo", "k": 5, "tensors": state})
    np.testing.assert_allclose(scorer.score(x), want, rtol=1e-6)
    with pytest.raises(InvalidInputError, match="must output 3"):
        FlowModel().load_state_dict({**state, "flow.w0": w[:2], "flow.b0": np.zeros(2, np.float32)})
    with pytest.raises(InvalidInputError, match="std > 0"):
        FlowModel().load_state_dict({**state, "flow.std": np.zeros(3, np.float32)})


def test_rnd_is_the_distance_between_predictor_and_target() -> None:
    mean, std = np.zeros(2), np.array([1.0, 2.0])
    eye, zero = np.eye(2, dtype=np.float32), np.zeros(2, np.float32)
    state = {
        **_std_state("rnd.", mean, std),
        "rnd.target.w0": eye,
        "rnd.target.b0": zero,
        "rnd.predictor.w0": np.zeros((2, 2), np.float32),
        "rnd.predictor.b0": np.array([1.0, 0.0], np.float32),
    }
    x = np.array([[3.0, 8.0], [0.0, 0.0]], np.float32)
    z = x / std
    want = np.sqrt((1.0 - z[:, 0]) ** 2 + z[:, 1] ** 2)  # ||f(z) - g(z)||_2, not squared
    np.testing.assert_allclose(RNDModel().load_state_dict(state).score(x), want, rtol=1e-12)
    with pytest.raises(InvalidInputError, match="output width"):
        RNDModel().load_state_dict({**state, "rnd.target.w0": eye[:1], "rnd.target.b0": zero[:1]})
    with pytest.raises(InvalidInputError, match="LearnedConfig"):
        LearnedConfig(rnd_out=0)
    assert LearnedConfig().steps(5000) == 400 and LearnedConfig().steps(10) == 100
