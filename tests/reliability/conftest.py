"""Fixtures of the reliability tests: a small real predictor checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .helpers import write_signal_dataset


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A salus-mlp checkpoint trained (a few epochs) on synthetic signal episodes with the real
    training code; its extractor statistics are fitted by the real SignalExtractor."""
    import torch

    from salus.data import SalusDataset
    from salus.predictor import (
        ConformalConfig,
        ModelConfig,
        SplitConfig,
        TrainConfig,
        episodes_from_dataset,
        train_model,
    )

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    path = write_signal_dataset(tmp_path_factory.mktemp("ckdata") / "d.zarr", 72, 1000, rng, fit_rows=128)
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
