"""Fixtures of the monitor tests: a real zarr dataset of synthetic episodes (with camera frames)
and a small predictor checkpoint trained on it with the predictor part's own training code."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

EMBED_DIM = 128  # the built-in policy's observation-embedding width (BuiltinConfig.embed_dim)


def _frames(length: int, fail_step: int, rng: np.random.Generator) -> np.ndarray:
    """(T, 32, 32, 3) uint8: a square moving across a grey field, turning red after the failure."""
    img = np.full((length, 32, 32, 3), 90, dtype=np.uint8)
    for t in range(length):
        x = int(4 + 22 * t / max(1, length - 1))
        colour = (220, 40, 40) if 0 <= fail_step <= t else (40, 160, 220)
        img[t, 12:20, x : x + 6] = colour
    return img


def extractor_state() -> dict:
    """Real fitted statistics of the signal extractor for 128-wide embeddings."""
    from salus.signals import SignalExtractor

    rng = np.random.default_rng(0)
    return SignalExtractor(1).fit(rng.normal(size=(256, EMBED_DIM))).state_dict()


def synthetic_rollouts(n: int, seed: int) -> list[dict]:
    """Rollouts whose failures are announced by signals 0-2 (and the first baseline and four
    embedding dimensions) rising over the 10-25 steps before the failure; all else is noise.
    Successes and failures have overlapping lengths, so elapsed time tells nothing."""
    rng = np.random.default_rng(seed)
    tasks = ("pick_place", "push", "stack")
    out = []
    for i in range(n):
        fail = rng.random() < 0.4
        length = int(rng.integers(40, 56) if not fail else rng.integers(45, 71))
        sig = rng.normal(0.0, 1.0, (length, 12)).astype(np.float32)
        valid = np.ones((length, 12), dtype=bool)
        valid[:, 11] = rng.random(length) > 0.1
        sig[~valid] = 0.0
        emb = rng.normal(0.0, 1.0, (length, EMBED_DIM)).astype(np.float32)
        base = rng.normal(0.0, 1.0, (length, 2)).astype(np.float32)
        failure_step, ftype = -1, "none"
        if fail:
            failure_step = length - 1 - int(rng.integers(0, 5))
            onset = failure_step - int(rng.integers(10, 26))
            ramp = np.clip((np.arange(length) - onset) / 8.0, 0.0, 1.0).astype(np.float32)
            sig[:, 0] += 2.5 * ramp
            sig[:, 1] += 2.0 * ramp
            sig[:, 2] += 1.5 * ramp
            emb[:, :4] += 2.0 * ramp[:, None]
            base[:, 0] += 1.5 * ramp
            ftype = ("drop", "miss", "collision", "timeout")[int(rng.integers(0, 4))]
        out.append(
            {
                "steps": {
                    "signals": np.where(valid, sig, 0.0).astype(np.float32),
                    "signal_valid": valid,
                    "baselines": base,
                    "obs_embedding": emb.astype(np.float16),
                    "action": np.zeros((length, 4), np.float32),
                    "state": np.zeros((length, 22), np.float32),
                    "image_front": _frames(length, failure_step, rng),
                },
                "success": not fail,
                "failure_step": failure_step,
                "failure_type": ftype,
                "task": tasks[i % 3],
                "seed": 1000 + i,
            }
        )
    return out


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """96 synthetic rollouts (3 tasks; see ``synthetic_rollouts``) in a real zarr dataset."""
    from salus.data import DatasetWriter, EpisodeRecord
    from salus.signals import SIGNAL_NAMES

    path = tmp_path_factory.mktemp("data") / "tiny.zarr"
    attrs = {
        "signal_names": list(SIGNAL_NAMES),
        "baseline_names": ["baseline_0", "baseline_1"],
        "control_hz": 20.0,
    }
    with DatasetWriter(path, attrs, state={"extractor": extractor_state()}) as writer:
        for ep in synthetic_rollouts(96, seed=5):
            writer.append(EpisodeRecord(**ep))
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A salus-mlp checkpoint trained on ``tiny_data`` ("stack" held out as the unseen task)."""
    from salus.data import SalusDataset
    from salus.predictor import (
        ConformalConfig,
        ModelConfig,
        SplitConfig,
        TrainConfig,
        episodes_from_dataset,
        train_model,
    )

    episodes = episodes_from_dataset(SalusDataset(tiny_data))
    cfg = TrainConfig(
        max_epochs=10,
        patience=3,
        batch_episodes=16,
        lr=3e-3,
        # no time ramp: these tests judge the band, alarms and attribution on the probability itself
        # (the ramp is checked live in test_any_robot.py and in tests/predictor/test_training.py)
        score_ramp_s=0.0,
        split=SplitConfig(holdout_tasks=("stack",), calib_fraction=0.3, test_fraction=0.3),
        conformal=ConformalConfig(alpha=0.2, fit_fraction=0.3),
    )
    predictor = train_model(episodes, ModelConfig(name="salus-mlp", mlp_hidden=(32, 32), dropout=0.0), cfg)
    out = tmp_path_factory.mktemp("model") / "salus-mlp"
    predictor.save(out)
    return out
