"""The extractor and the online baselines on the internals of LeRobot's real SmolVLA (tiny, offline)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("lerobot", reason="LeRobot extra not installed (make install-lerobot)")

from salus.signals import SIGNAL_NAMES, OnlineBaselines, SignalExtractor  # noqa: E402

COL = {n: i for i, n in enumerate(SIGNAL_NAMES)}


def test_signals_on_tiny_smolvla_internals(tmp_path):
    from salus.policies.smolvla import SmolVLAAdapter, build_tiny_smolvla

    folder = build_tiny_smolvla(
        tmp_path / "tiny", chunk_size=8, n_action_steps=3, num_steps=3, hidden_size=64
    )
    policy = SmolVLAAdapter.from_pretrained(folder, num_samples=3)
    rng = np.random.default_rng(0)
    b = 2
    state = np.zeros((b, 22), dtype=np.float32)
    state[:, 15:18] = [0.5, 0.0, 0.2]
    state[:, 3] = -1.5
    records = []
    policy.reset()
    for _ in range(10):
        obs = {
            "image_front": rng.integers(0, 256, (b, 40, 40, 3), dtype=np.uint8),
            "image_wrist": rng.integers(0, 256, (b, 40, 40, 3), dtype=np.uint8),
            "state": state + rng.normal(scale=0.05, size=state.shape).astype(np.float32),
            "task": ["pick up the cube and place it on the target"] * b,
        }
        policy.act(obs)
        records.append((policy.last_internals, obs["state"]))
    emb = np.concatenate([it.obs_embedding for it, _ in records])
    samples = np.concatenate([it.samples for it, _ in records if it.new_chunk.all()])
    ex = SignalExtractor(b).fit(emb + rng.normal(scale=1e-3, size=emb.shape), samples)
    ob = OnlineBaselines(b)
    outs = [(ex.step(it, st), ob.step(it)) for it, st in records]
    values = np.concatenate([s.values for s, _ in outs])
    valid = np.concatenate([s.valid for s, _ in outs])
    assert np.isfinite(values).all()
    # every signal is valid somewhere (after the first steps and the second chunk)
    assert valid.any(axis=0).all(), [n for n, v in zip(SIGNAL_NAMES, valid.any(axis=0), strict=True) if not v]
    # trajectory divergence is valid on the steps the second chunk shares with the first
    assert valid[-2:, COL["trajectory_divergence"]].all()
    base_valid = np.concatenate([o.valid for _, o in outs])
    assert base_valid.any(axis=0).all() and np.isfinite(np.concatenate([o.values for _, o in outs])).all()
