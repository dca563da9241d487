"""The salus zarr episode-dataset layout: names, dtypes, chunking and compression (cheap: numpy only).

Layout (diffusion_policy style, zarr format 3)::

    DATA.zarr/
      zarr.json                 root attributes: salus_format_version, the commit record
                                (salus_committed_episodes, salus_committed_steps), step-key schema,
                                signal and baseline names, env / policy / extractor / collect configs
      data/<key>                (N, ...) all steps of all committed episodes, concatenated
      meta/episode_ends         (E,) int64, exclusive end step of each episode
      meta/<field>              (E,) one value per episode (see META_FIELDS)
      state/<owner>/<name>      small fitted arrays (e.g. the signal extractor's statistics)

Arrays may be longer than the commit record says (an append interrupted after its chunks were
written): readers slice to the committed counts and writers truncate on open. Every chunk holding
committed rows must exist (zarr would read a missing one as the fill value) and decode (crc32c);
see ``salus.data.integrity``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "FORMAT_VERSION_ATTR",
    "COMMITTED_EPISODES_ATTR",
    "COMMITTED_STEPS_ATTR",
    "STEP_KEYS_ATTR",
    "STATE_OWNERS_ATTR",
    "STEP_KEY_DTYPES",
    "REQUIRED_STEP_KEYS",
    "META_FIELDS",
    "chunk_rows",
    "data_compressors",
    "meta_compressors",
    "pending_dir",
    "creating_dir",
    "replaced_dir",
]

FORMAT_VERSION = 1
FORMAT_VERSION_ATTR = "salus_format_version"
COMMITTED_EPISODES_ATTR = "salus_committed_episodes"
COMMITTED_STEPS_ATTR = "salus_committed_steps"
STEP_KEYS_ATTR = "salus_step_keys"  # {key: {"dtype": str, "shape": [trailing dims]}}
# The fitted states written at creation (``state/<owner>``), so that a store that lost one is noticed.
STATE_OWNERS_ATTR = "salus_state_owners"  # [owner, ...]

# Step keys with a fixed storage dtype (values are cast on append); other numeric keys keep their own.
STEP_KEY_DTYPES: dict[str, np.dtype] = {
    "signals": np.dtype(np.float32),  # (T, 12)
    "signal_valid": np.dtype(np.bool_),  # (T, 12)
    "baselines": np.dtype(np.float32),  # (T, nb), names in attrs["baseline_names"]
    "action": np.dtype(np.float32),  # (T, 4)
    "state": np.dtype(np.float32),  # (T, 22)
    "obs_embedding": np.dtype(np.float16),  # (T, E)
    "hidden": np.dtype(np.float16),  # (T, H), optional (--save-hidden)
    # (T, H), optional (--save-hidden): SAFE's feature, the output layer's input averaged over the
    # chunk positions and denoising steps of the chunk that produced the step
    "hidden_mean": np.dtype(np.float16),
    "privileged": np.dtype(np.float32),  # (T, 23) simulator-only state (spec.PRIVILEGED_NAMES), oracle only
    "image_front": np.dtype(np.uint8),  # (T, H, W, 3), optional (--save-images)
    "image_wrist": np.dtype(np.uint8),  # (T, H, W, 3), optional (--save-images)
}


def as_recorded(key: str, value: Any) -> np.ndarray:
    """``value`` as float32 after the round trip through ``key``'s storage dtype: what a reader of
    the dataset gets. The monitor feeds live values through it, so a model sees the same numbers
    live as in training and in ``offline_risk`` (``obs_embedding``, ``hidden`` and ``hidden_mean`` are
    float16)."""
    dtype = STEP_KEY_DTYPES.get(key, np.dtype(np.float32))
    return np.asarray(np.asarray(value, dtype=dtype), dtype=np.float32)


REQUIRED_STEP_KEYS: tuple[str, ...] = ()  # the writer accepts any non-empty set of keys

# Per-episode metadata arrays under meta/ (episode_ends is written last of all of them).
META_FIELDS: dict[str, np.dtype | type] = {
    "episode_index": np.dtype(np.int64),  # index i of the episode in its collection run
    "success": np.dtype(np.bool_),
    "failure_step": np.dtype(np.int64),  # -1 for successful episodes
    "failure_type": str,  # "none" for successful episodes
    "task": str,
    "seed": np.dtype(np.int64),
    "perturbations": str,  # JSON list of {"name", "strength", "params"}
    "episode_ends": np.dtype(np.int64),
}

_TARGET_CHUNK_BYTES = 1 << 18  # ~256 KiB uncompressed per chunk: fast sequential reads, cheap appends
_MIN_CHUNK_ROWS = 64
_MAX_CHUNK_ROWS = 16384
META_CHUNK_ROWS = 4096


def chunk_rows(row_bytes: int) -> int:
    """Steps per chunk along the time axis for rows of ``row_bytes`` bytes (a power of two)."""
    rows = max(1, _TARGET_CHUNK_BYTES // max(1, row_bytes))
    rows = 1 << (rows.bit_length() - 1)
    return int(min(_MAX_CHUNK_ROWS, max(_MIN_CHUNK_ROWS, rows)))


def data_compressors() -> tuple:
    """zstd, then zarr's crc32c checksum of the compressed chunk: a truncated or altered chunk fails
    to decode (a checksum error) instead of reading as garbage. Datasets written before the crc32c
    codec was added (zstd's own content checksum only) still read."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return (ZstdCodec(level=3, checksum=True), Crc32cCodec())


def meta_compressors() -> tuple:
    """The same codecs as :func:`data_compressors` for ``meta/*`` and ``state/*`` arrays."""
    return data_compressors()


def pending_dir(path: str | os.PathLike[str]) -> Path:
    """Beside the store: finished episodes that wait for an earlier one before they can be committed."""
    p = Path(path)
    return p.with_name(p.name + ".pending")


def creating_dir(path: str | os.PathLike[str]) -> Path:
    """Beside the store: a new dataset is built here and renamed into place when complete."""
    p = Path(path)
    return p.with_name(p.name + ".creating")


def replaced_dir(path: str | os.PathLike[str]) -> Path:
    """Beside the store: what ``overwrite`` replaces is moved here, then deleted."""
    p = Path(path)
    return p.with_name(p.name + ".replaced")
