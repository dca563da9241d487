"""Helpers of the reliability tests: small-chunk datasets of synthetic episodes written by the real
DatasetWriter."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, Phase, settings

EMBED_DIM = 128  # the built-in policy's observation-embedding width (BuiltinConfig.embed_dim)

#: ``SALUS_SOAK=1`` (``make soak``): the long run of the property suite (``SALUS_SOAK_EXAMPLES`` each).
SOAK = bool(os.environ.get("SALUS_SOAK"))
#: Hypothesis settings of the property suite: a short deterministic run in CI, a long random soak.
RELIABILITY = settings(
    max_examples=int(os.environ.get("SALUS_SOAK_EXAMPLES", "300")) if SOAK else 12,
    deadline=None,
    derandomize=not SOAK,
    # A failing example is reported as found: shrinking real stores and processes takes many minutes.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@contextlib.contextmanager
def small_chunks(rows: int = 16, meta_rows: int = 4) -> Iterator[None]:
    """Datasets created inside use ``rows`` steps per data chunk and ``meta_rows`` episodes per
    meta chunk (so a few short episodes span many chunks)."""
    with (
        mock.patch("salus.data.writer.chunk_rows", lambda row_bytes: rows),
        mock.patch("salus.data.writer.META_CHUNK_ROWS", meta_rows),
    ):
        yield


def make_record(i: int, length: int | None = None):
    """A synthetic episode (deterministic in ``i``) with every kind of step key salus stores."""
    from salus.data import EpisodeRecord

    rng = np.random.default_rng(i)
    T = length if length is not None else 5 + (7 * i) % 23
    failed = i % 3 == 0
    return EpisodeRecord(
        steps={
            "signals": rng.normal(size=(T, 12)).astype(np.float32),
            "signal_valid": rng.random((T, 12)) > 0.1,
            "state": rng.normal(size=(T, 22)).astype(np.float32),
            "obs_embedding": rng.normal(size=(T, 8)).astype(np.float16),
            "image_front": rng.integers(0, 256, (T, 4, 4, 3), dtype=np.uint8),
        },
        success=not failed,
        failure_step=T // 2 if failed else -1,
        failure_type="drop" if failed else "none",
        task=("pick_place", "push", "stack")[i % 3],
        seed=1000 + i,
        perturbations=[{"name": "push", "strength": 0.5, "params": {}}] if i % 2 else [],
        episode_index=i,
    )


#: A fitted state stored with every test dataset (``SalusDataset.state("extractor")``).
STATE = {
    "format_version": 1,
    "tensors": {"ood.mean": np.linspace(-1.0, 1.0, 6), "ood.whitener": np.eye(6) + 0.5},
}


def same_state(got: dict, want: dict = STATE) -> bool:
    return got["format_version"] == want["format_version"] and all(
        np.array_equal(got["tensors"][k], v) for k, v in want["tensors"].items()
    )


def write_dataset(path: Path, n: int, lengths: list[int] | None = None) -> list:
    """``n`` episodes (small chunks) written and committed with the real writer; returns the records."""
    from salus.data import DatasetWriter

    records = [make_record(i, None if lengths is None else lengths[i]) for i in range(n)]
    attrs = {"signal_names": [f"s{j}" for j in range(12)]}
    with small_chunks(), DatasetWriter(path, attrs, state={"extractor": STATE}) as w:
        for r in records:
            w.append(r)
    return records


def same_episode(got, want) -> bool:
    if got.steps.keys() != want.steps.keys():
        return False
    if not all(np.array_equal(got.steps[k], want.steps[k]) for k in want.steps):
        return False
    return (got.success, got.failure_step, got.failure_type, got.task, got.seed, got.episode_index) == (
        want.success,
        want.failure_step,
        want.failure_type,
        want.task,
        want.seed,
        want.episode_index,
    )


def write_signal_dataset(
    path: Path,
    n: int,
    seed0: int,
    rng: np.random.Generator,
    *,
    fit_rows: int,
    attrs: dict[str, Any] | None = None,
) -> Path:
    """``n`` synthetic signal episodes (every third a ``drop`` whose signal 0 rises over the 12
    steps before it) with extractor statistics fitted on ``fit_rows`` random embeddings."""
    from salus.data import DatasetWriter, EpisodeRecord
    from salus.signals import SIGNAL_NAMES, SignalExtractor

    stats = SignalExtractor(1).fit(rng.normal(size=(fit_rows, EMBED_DIM))).state_dict()
    root = {"signal_names": list(SIGNAL_NAMES), "control_hz": 20.0, **(attrs or {})}
    with DatasetWriter(path, root, state={"extractor": stats}) as w:
        for i in range(n):
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
                    seed=seed0 + i,
                )
            )
    return path
