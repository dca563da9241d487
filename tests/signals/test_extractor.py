"""Each of the 12 signals against a hand-computed value, validity, NaN handling, reset and state."""

from __future__ import annotations

import math

import numpy as np
import pytest

from salus.errors import CheckpointError, InvalidInputError, NotFittedError
from salus.signals import SIGNAL_NAMES, SignalConfig, SignalExtractor
from salus.sim.spec import JOINT_LOWER, JOINT_UPPER, WORKSPACE_HIGH, WORKSPACE_LOW

from .helpers import internals, random_stream, robot_state

COL = {n: i for i, n in enumerate(SIGNAL_NAMES)}


def fitted(b: int = 1, e: int = 2, **cfg) -> SignalExtractor:
    ex = SignalExtractor(b, SignalConfig(**cfg))
    rng = np.random.default_rng(0)
    ex.fit(rng.normal(size=(50, e)))
    return ex


def run(ex: SignalExtractor, steps):
    return [ex.step(it, st) for it, st in steps]


def test_action_volatility_magnitude_acceleration():
    ex = fitted()
    a0, a1, a2 = [0.1, 0.0, 0.0, 1.0], [0.3, 0.0, 0.0, 1.0], [0.3, 0.4, 0.0, -1.0]
    s = run(ex, [(internals(action=a), robot_state()) for a in (a0, a1, a2)])
    v = COL["action_volatility"]
    assert not s[0].valid[0, v] and s[0].values[0, v] == 0.0
    assert s[1].values[0, v] == pytest.approx(0.2, abs=1e-6)
    assert s[2].values[0, v] == pytest.approx(math.sqrt(0.4**2 + 2.0**2), abs=1e-6)
    m = COL["action_magnitude"]
    assert s[2].values[0, m] == pytest.approx(0.5, abs=1e-6)  # translation part only: ||(0.3, 0.4, 0)||
    acc = COL["action_acceleration"]
    assert not s[1].valid[0, acc]
    # a2 - 2 a1 + a0 = (-0.2, 0.4, 0, -2)
    assert s[2].values[0, acc] == pytest.approx(math.sqrt(0.04 + 0.16 + 4.0), abs=1e-6)


def test_trajectory_divergence_compares_plans_for_the_same_step():
    ex = fitted()
    c0 = np.array([[0.0, 0, 0, 0], [0.1, 0, 0, 0], [0.2, 0, 0, 0], [0.3, 0, 0, 0]])
    c1 = np.array([[0.5, 0, 0, 0], [0.1, 0.1, 0, 0], [0.0, 0, 0, 0], [0.0, 0, 0, 0]])
    steps = [
        internals(action=c0[0], chunk=c0, chunk_id=0, chunk_offset=0, new_chunk=True),
        internals(action=c0[1], chunk=c0, chunk_id=0, chunk_offset=1),
        internals(action=c1[0], chunk=c1, chunk_id=1, chunk_offset=0, new_chunk=True),  # step 2
        internals(action=c1[1], chunk=c1, chunk_id=1, chunk_offset=1),  # step 3
    ]
    s = run(ex, [(it, robot_state()) for it in steps])
    col = COL["trajectory_divergence"]
    assert not s[0].valid[0, col] and not s[1].valid[0, col]
    assert s[2].values[0, col] == pytest.approx(0.3, abs=1e-6)  # c1[0] - c0[2]
    assert s[3].values[0, col] == pytest.approx(math.sqrt(0.2**2 + 0.1**2), abs=1e-6)  # c1[1] - c0[3]


def test_trajectory_divergence_without_overlap_is_invalid():
    ex = fitted()
    c0, c1 = np.zeros((2, 4)), np.ones((2, 4)) * 0.5
    steps = [
        internals(action=c0[0], chunk=c0, chunk_id=0, chunk_offset=0, new_chunk=True),
        internals(action=c0[1], chunk=c0, chunk_id=0, chunk_offset=1),
        internals(action=c1[0], chunk=c1, chunk_id=1, chunk_offset=0, new_chunk=True),
    ]
    s = run(ex, [(it, robot_state()) for it in steps])
    assert not s[2].valid[0, COL["trajectory_divergence"]]


def test_latent_drift_between_chunk_embeddings_held_within_chunk():
    ex = fitted()
    steps = [
        internals(action=[0, 0, 0, 0], chunk_id=0, new_chunk=True, emb=[1.0, 0.0]),
        internals(action=[0, 0, 0, 0], chunk_id=1, new_chunk=True, emb=[1.0, 1.0]),
        internals(action=[0, 0, 0, 0], chunk_id=1, chunk_offset=1, emb=[1.0, 1.0]),
    ]
    s = run(ex, [(it, robot_state()) for it in steps])
    col = COL["latent_drift"]
    assert not s[0].valid[0, col]
    assert s[1].values[0, col] == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)
    assert s[2].values[0, col] == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)


def test_latent_norm_spike_against_episode_centroid():
    ex = fitted()
    hs = ([2.0, 0, 0], [0, 2.0, 0], [0, 0, 4.0])
    s = run(
        ex,
        [(internals(action=[0, 0, 0, 0], chunk_offset=i, hidden=h), robot_state()) for i, h in enumerate(hs)],
    )
    col = COL["latent_norm_spike"]
    assert not s[0].valid[0, col]
    # step 1: centroid (2, 0, 0), jump (-2, 2, 0): sqrt(8) / 2
    assert s[1].values[0, col] == pytest.approx(math.sqrt(2.0), abs=1e-6)
    # step 2: centroid (1, 1, 0), jump (-1, -1, 4): sqrt(18) / sqrt(2)
    assert s[2].values[0, col] == pytest.approx(3.0, abs=1e-6)


def test_ood_distance_is_per_dimension_mahalanobis():
    ex = SignalExtractor(1, SignalConfig(ood_shrinkage=0.0))
    # mean 0, covariance diag(0.5, 2)
    ex.fit(np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]]))
    s = ex.step(internals(action=[0, 0, 0, 0], new_chunk=True, emb=[1.0, 2.0]), robot_state())
    # d^2 = 1 / 0.5 + 4 / 2 = 4 -> d = 2, divided by sqrt(E = 2)
    assert s.values[0, COL["ood_distance"]] == pytest.approx(2.0 / math.sqrt(2.0), rel=1e-5)


def test_ood_uses_ledoit_wolf_by_default():
    ex = fitted(e=3)
    assert ex.ood.fitted_shrinkage is not None and 0.0 <= ex.ood.fitted_shrinkage <= 1.0


def test_sample_entropy_and_max_probability_from_clusters():
    ex = fitted(cluster_radius=0.1)
    base = np.zeros((4, 4))
    # K = 4 samples: three within 0.05 RMS of each other (a chain), one far away.
    samples = np.stack([base, base + 0.05, base + 0.1, base + 0.9])[None]
    s = ex.step(internals(action=base[0], chunk=base, new_chunk=True, samples=samples), robot_state())
    p = np.array([0.75, 0.25])
    assert s.values[0, COL["sample_entropy"]] == pytest.approx(-(p * np.log(p)).sum(), abs=1e-6)
    assert s.values[0, COL["max_sample_probability"]] == pytest.approx(0.75, abs=1e-6)


def test_sample_entropy_needs_samples_or_token_probs():
    ex = fitted(cluster_radius=0.1)
    s = ex.step(internals(action=[0, 0, 0, 0], new_chunk=True), robot_state())
    assert not s.valid[0, COL["sample_entropy"]] and not s.valid[0, COL["max_sample_probability"]]
    s = ex.step(internals(action=[0, 0, 0, 0], chunk_offset=1, probs=[0.5, 0.25, 0.25]), robot_state())
    assert s.values[0, COL["sample_entropy"]] == pytest.approx(1.5 * math.log(2.0), abs=1e-6)
    assert s.values[0, COL["max_sample_probability"]] == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(InvalidInputError, match="softmax"):
        ex.step(internals(action=[0, 0, 0, 0], chunk_offset=2, probs=[0.5, 0.6]), robot_state())


def test_cluster_radius_is_fitted_from_samples():
    ex = SignalExtractor(1)
    samples = np.zeros((2, 3, 4, 4))
    samples[:, 1] = 0.1
    samples[:, 2] = 0.3  # pair distances 0.1, 0.2, 0.3 in each batch: median 0.2
    ex.fit(np.random.default_rng(0).normal(size=(10, 2)), samples)
    assert ex.cluster_radius == pytest.approx(0.2 * SignalConfig().cluster_radius_scale)
    with pytest.raises(NotFittedError, match="cluster radius"):
        ex2 = fitted()
        ex2.step(internals(action=[0, 0, 0, 0], new_chunk=True, samples=samples[:1]), robot_state())


def test_execution_mismatch_commanded_vs_achieved():
    ex = fitted()
    s0 = ex.step(internals(action=[0.5, 0.0, 0.0, 1.0]), robot_state(ee=(0.5, 0.0, 0.2)))
    s1 = ex.step(internals(action=[0.0, 0.0, 0.0, 1.0]), robot_state(ee=(0.508, 0.0, 0.2)))
    col = COL["execution_mismatch"]
    assert not s0.valid[0, col]
    # commanded 0.5 (x 0.02 m), achieved 0.008 m = 0.4 of the maximum step
    assert s1.values[0, col] == pytest.approx(0.1, abs=1e-4)


def test_constraint_margin_joint_and_workspace():
    ex = fitted()
    mid = (JOINT_LOWER + JOINT_UPPER) / 2
    joints = mid.copy()
    joints[1] = JOINT_UPPER[1] - 0.1 * (JOINT_UPPER[1] - JOINT_LOWER[1])  # 10% from the upper limit
    centre = (WORKSPACE_LOW + WORKSPACE_HIGH) / 2
    s = ex.step(internals(action=[0, 0, 0, 0]), robot_state(ee=centre, joints=joints))
    assert s.values[0, COL["constraint_margin"]] == pytest.approx(0.1, abs=1e-5)
    ee = centre.copy()
    ee[2] = WORKSPACE_LOW[2] + 0.05 * (WORKSPACE_HIGH[2] - WORKSPACE_LOW[2])
    s = ex.step(internals(action=[0, 0, 0, 0]), robot_state(ee=ee, joints=mid))
    assert s.values[0, COL["constraint_margin"]] == pytest.approx(0.05, abs=1e-5)
    ee[2] = WORKSPACE_LOW[2] - 0.1 * (WORKSPACE_HIGH[2] - WORKSPACE_LOW[2])  # outside: negative
    s = ex.step(internals(action=[0, 0, 0, 0]), robot_state(ee=ee, joints=mid))
    assert s.values[0, COL["constraint_margin"]] == pytest.approx(-0.1, abs=1e-5)


def test_temporal_consistency_mean_resultant_length():
    ex = fitted()
    s = run(ex, [(internals(action=a), robot_state()) for a in ([1, 0, 0, 1], [0, 1, 0, 1], [-1, 0, 0, 1])])
    col = COL["temporal_consistency"]
    assert not s[0].valid[0, col]
    assert s[1].values[0, col] == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert s[2].values[0, col] == pytest.approx(1 / 3, abs=1e-6)  # ||(0, 1, 0)|| / 3
    still = fitted()
    s = run(still, [(internals(action=[0, 0, 0, 1]), robot_state()) for _ in range(3)])
    assert not s[2].valid[0, col]  # no commanded motion: direction undefined


@pytest.mark.parametrize("field", ["action", "hidden", "emb", "chunk", "samples"])
def test_nan_inputs_give_flagged_finite_output(field):
    ex = fitted(b=2, e=5, cluster_radius=0.1)
    rng = np.random.default_rng(1)
    stream = random_stream(rng, 12, b=2, c=8, n_exec=4, k=4)
    for t, (it, st) in enumerate(stream):
        if t == 6:
            if field == "action":
                it.action[0] = np.nan
            elif field == "hidden":
                it.hidden_step[0] = np.nan
            elif field == "emb":
                it.obs_embedding[0] = np.nan
            elif field == "chunk":
                it.chunk[0] = np.nan
            else:
                it.samples[0] = np.nan
        out = ex.step(it, st)
        assert out.values.dtype == np.float32 and np.isfinite(out.values).all()
        assert (out.values[~out.valid] == 0).all()
        if t == 6:
            assert out.valid[1].sum() >= 10  # the other environment is untouched
            bad = {
                "action": [
                    "action_volatility",
                    "action_magnitude",
                    "action_acceleration",
                    "temporal_consistency",
                ],
                "hidden": ["latent_norm_spike"],
                "emb": [],  # the embedding is read when a chunk is computed (step 8)
                "chunk": ["trajectory_divergence"],
                "samples": [],
            }[field]
            for name in bad:
                assert not out.valid[0, COL[name]], name
        if t == 8 and field == "emb":  # the NaN embedding was never stored: offset 6 is not a chunk start
            assert out.valid[0, COL["ood_distance"]]
    # a NaN embedding at a chunk start is flagged
    ex.reset()
    it, st = stream[0]
    it.obs_embedding[0] = np.nan
    it.samples[0, 0, 0, 0] = np.nan
    out = ex.step(it, st)
    for name in ("ood_distance", "sample_entropy", "max_sample_probability"):
        assert not out.valid[0, COL[name]] and out.valid[1, COL[name]], name
    assert np.isfinite(out.values).all()


def test_unfitted_extractor_is_an_error():
    ex = SignalExtractor(1)
    with pytest.raises(NotFittedError, match="fit"):
        ex.step(internals(action=[0, 0, 0, 0]), robot_state())
    loose = SignalExtractor(1, SignalConfig(require_fitted=False))
    s = loose.step(internals(action=[0.1, 0, 0, 0], new_chunk=True), robot_state())
    assert not s.valid[0, COL["ood_distance"]] and s.valid[0, COL["action_magnitude"]]


def test_state_dict_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    ex = SignalExtractor(3, SignalConfig(consistency_window=4))
    ex.fit(rng.normal(size=(40, 5)), rng.normal(scale=0.2, size=(6, 6, 8, 4)))
    stream = random_stream(rng, 10, b=3, c=8, n_exec=4, k=6)
    ref = [ex.step(it, st) for it, st in stream]
    for restored in (SignalExtractor(3), SignalExtractor.load(ex.save(tmp_path / "stats")[0], batch_size=3)):
        if not restored.fitted:
            restored.load_state_dict(ex.state_dict())
        assert restored.config == ex.config
        for (it, st), r in zip(stream, ref, strict=True):
            out = restored.step(it, st)
            np.testing.assert_array_equal(out.valid, r.valid)
            np.testing.assert_allclose(out.values, r.values, rtol=1e-6, atol=1e-7)
    with pytest.raises(CheckpointError, match="format_version"):
        SignalExtractor(1).load_state_dict({"tensors": {}, "format_version": 99})
    with pytest.raises(CheckpointError, match="missing"):
        SignalExtractor.load(tmp_path / "nothing")


def test_per_environment_reset_in_a_batch():
    ex = fitted(b=2)
    a = np.array([[0.1, 0, 0, 0], [0.2, 0, 0, 0]])
    ex.step(internals(action=a), robot_state(2))
    ex.step(internals(action=a * 2), robot_state(2))
    ex.reset(1)
    s = ex.step(internals(action=a * 3), robot_state(2))
    vol = COL["action_volatility"]
    assert s.valid[0, vol] and s.values[0, vol] == pytest.approx(0.1, abs=1e-6)
    assert not s.valid[1, vol]
    s = ex.step(internals(action=a * 4), robot_state(2))
    assert s.valid[1, vol] and s.values[1, vol] == pytest.approx(0.2, abs=1e-6)
    with pytest.raises(InvalidInputError, match="env_index"):
        ex.reset(2)


def test_shape_errors_are_clear():
    ex = fitted(b=2)
    with pytest.raises(InvalidInputError, match=r"action must have shape \(B=2"):
        ex.step(internals(action=[0, 0, 0, 0]), robot_state(2))
    with pytest.raises(InvalidInputError, match="robot_state"):
        ex.step(internals(action=np.zeros((2, 4))), robot_state(2)[:, :10])
    with pytest.raises(InvalidInputError, match="chunk_offset"):
        ex.step(internals(action=np.zeros((2, 4)), chunk_offset=7), robot_state(2))
    with pytest.raises(InvalidInputError, match="obs_embedding width"):
        ex.step(internals(action=np.zeros((2, 4)), emb=np.ones((2, 3))), robot_state(2))
    with pytest.raises(InvalidInputError):
        SignalExtractor(0)
    with pytest.raises(InvalidInputError, match="consistency_window"):
        SignalConfig(consistency_window=1)
    with pytest.raises(InvalidInputError, match="unknown SignalConfig keys"):
        SignalConfig.from_dict({"window": 3})


def test_no_two_signals_identical_and_all_vary_on_a_stream():
    rng = np.random.default_rng(3)
    ex = SignalExtractor(3)
    ex.fit(rng.normal(size=(100, 5)) * 2, rng.normal(scale=0.3, size=(10, 6, 8, 4)))
    out = [ex.step(it, st) for it, st in random_stream(rng, 60, b=3)]
    values = np.concatenate([o.values for o in out])
    valid = np.concatenate([o.valid for o in out])
    assert np.isfinite(values).all()
    for j, name in enumerate(SIGNAL_NAMES):
        assert valid[:, j].mean() > 0.5, name
        assert values[valid[:, j], j].std() > 0, name
    for i in range(12):
        for j in range(i + 1, 12):
            assert not np.allclose(values[:, i], values[:, j]), (SIGNAL_NAMES[i], SIGNAL_NAMES[j])
