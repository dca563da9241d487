"""Fixtures of the reliability tests: a small real predictor checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

EMBED_DIM = 128  # the built-in policy's observation-embedding width (BuiltinConfig.embed_dim)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A salus-mlp checkpoint trained (a few epochs) on synthetic signal episodes with the real
    training code; its extractor statistics are fitted by the real SignalExtractor."""
    import torch

    from salus.data import DatasetWriter, EpisodeRecord, SalusDataset
    from salus.predictor import (
        ConformalConfig,
        ModelConfig,
        SplitConfig,
        TrainConfig,
        episodes_from_dataset,
        train_model,
    )
    from salus.signals import SIGNAL_NAMES, SignalExtractor

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("ckdata") / "d.zarr"
    stats = SignalExtractor(1).fit(rng.normal(size=(128, EMBED_DIM))).state_dict()
    with DatasetWriter(
        path, {"signal_names": list(SIGNAL_NAMES), "control_hz": 20.0}, state={"extractor": stats}
    ) as w:
        for i in range(72):
            fail = i % 3 == 0
            T = int(rng.integers(25, 40))
            sig = rng.normal(size=(T, 12)).astype(np.float32)
            f = T - 3 if fail else -1
            if fail:
                sig[:, 0] += np.clip((np.arange(T) - (f - 12)) / 6.0, 0, 1) * 2.5
            w.append(
                EpisodeRecord(
                    steps={"signals": sig, "signal_valid": np.ones((T, 12), bool)},
                    success=not fail,
                    failure_step=f,
                    failure_type="drop" if fail else "none",
                    task=("pick_place", "push", "stack")[i % 3],
                    seed=1000 + i,
                )
            )
    episodes = episodes_from_dataset(SalusDataset(path))
    cfg = TrainConfig(
        max_epochs=3,
        patience=2,
        batch_episodes=16,
        lr=3e-3,
        split=SplitConfig(holdout_tasks=("stack",), calib_fraction=0.3, test_fraction=0.3),
        conformal=ConformalConfig(alpha=0.2, fit_fraction=0.3),
    )
    predictor = train_model(episodes, ModelConfig(name="salus-mlp", mlp_hidden=(16,), dropout=0.0), cfg)
    out = tmp_path_factory.mktemp("model") / "salus-mlp"
    predictor.save(out)
    return out
