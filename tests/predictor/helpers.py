"""Shared helpers of the predictor tests: synthetic episodes written to a real zarr dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from salus.predictor.episodes import EpisodeSet


def extractor_state() -> dict:
    """Statistics in the layout of ``SignalExtractor.state_dict()`` (small arrays)."""
    return {
        "format_version": 1,
        "signal_names": [f"signal_{i}" for i in range(12)],
        "config": {"consistency_window": 5},
        "tensors": {"ood.mean": np.arange(4, dtype=np.float64), "ood.precision": np.eye(4)},
    }


def write_dataset(path: Path, episodes: EpisodeSet, collect: dict | None = None) -> Path:
    """Write ``episodes`` with the real ``DatasetWriter`` (zarr on disk); ``collect`` replaces the
    recorded collection settings."""
    from salus.data import DatasetWriter, EpisodeRecord

    attrs = {
        "signal_names": list(episodes.signal_names),
        "baseline_names": list(episodes.baseline_names),
        "env": {"control_hz": episodes.control_hz},
        "collect": collect or {"policy": "synthetic", "episodes": len(episodes), "seed": 0},
    }
    with DatasetWriter(path, attrs, state={"extractor": extractor_state()}) as writer:
        for ep in episodes.episodes:
            steps = {"signals": ep.signals, "signal_valid": ep.valid}
            if ep.baselines is not None:
                steps["baselines"] = ep.baselines
                bvalid = np.ones(ep.baselines.shape, dtype=bool)
                bvalid[:2, -1] = False  # like STAC before its second chunk
                steps["baseline_valid"] = bvalid
            if ep.embedding is not None:
                steps["obs_embedding"] = ep.embedding.astype(np.float16)
            for key in (
                "state",
                "privileged",
            ):  # as `salus collect` records them (hidden needs --save-hidden)
                if getattr(ep, key) is not None:
                    steps[key] = getattr(ep, key)
            writer.append(
                EpisodeRecord(
                    steps=steps,
                    success=ep.success,
                    failure_step=ep.failure_step,
                    failure_type=ep.failure_type,
                    task=ep.task,
                    seed=ep.seed,
                )
            )
    return path
