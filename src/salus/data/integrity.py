"""Chunk-level integrity of a salus dataset: which committed chunks are missing or corrupt, and which
episodes they hold.

zarr fills a missing chunk with the fill value, so a deleted or never-copied chunk file would read
as zeros: every chunk an episode needs is checked to exist in the store. A corrupt chunk fails to
decode (crc32c checksum on datasets written since the checksum codec was added; zstd's content
checksum on older ones). Used by the reader (on every read), the writer (before it appends),
``salus dataset check`` and ``salus dataset repair``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from salus._io import describe_exception
from salus.errors import DatasetError

__all__ = [
    "ChunkDamage",
    "open_array",
    "chunk_file",
    "listed_files",
    "missing_chunks",
    "corrupt_chunks",
    "chunk_rows_of",
    "episodes_overlapping",
    "format_indices",
    "damage_message",
]


@dataclass(frozen=True)
class ChunkDamage:
    """One damaged chunk: ``array`` ("data/signals", "meta/task"), its ``chunk`` index along the
    first axis and the ``rows`` [start, stop) it holds, ``kind`` "missing" or "corrupt", and the
    dataset ``episodes`` (positions) whose committed rows lie in it."""

    array: str
    chunk: int
    rows: tuple[int, int]
    kind: str
    episodes: tuple[int, ...]
    detail: str = ""

    def describe(self) -> str:
        unit = "episodes" if self.array.startswith("meta/") else "steps"
        what = "is missing" if self.kind == "missing" else f"is corrupt ({self.detail})"
        return (
            f"{self.array} chunk {self.chunk} ({unit} {self.rows[0]}..{self.rows[1] - 1}) {what}; "
            f"episodes affected: {format_indices(self.episodes)}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "array": self.array,
            "chunk": self.chunk,
            "rows": list(self.rows),
            "kind": self.kind,
            "episodes": list(self.episodes),
            "detail": self.detail,
        }


def open_array(root: Any, path: str | os.PathLike[str], group: str, name: str) -> Any:
    """The array ``group/name`` of the store at ``path``; DatasetError if it is absent or its
    metadata (``group/name/zarr.json``) does not parse."""
    try:
        return root[group][name]
    except KeyError:
        raise DatasetError(
            f"{path}: missing array {group}/{name}; the store is truncated or corrupt"
        ) from None
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as exc:
        raise DatasetError(
            f"{Path(path) / group / name / 'zarr.json'}: cannot read the array metadata "
            f"({describe_exception(exc)}); corrupt store"
        ) from None


def format_indices(indices: Iterable[int], limit: int = 12) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"`` (at most ``limit`` runs, then "... (N in all)")."""
    idx = sorted({int(i) for i in indices})
    if not idx:
        return "none"
    runs: list[tuple[int, int]] = []
    for i in idx:
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs[:limit])
    if len(runs) > limit:
        text += f", ... ({len(idx)} in all)"
    return text


def chunk_rows_of(arr: Any) -> int:
    """Rows per chunk along the first (time or episode) axis."""
    return int(arr.chunks[0])


def chunk_file(array_dir: Path, arr: Any, index: int) -> Path:
    """The file of chunk ``index`` along the first axis (the only chunked axis of salus arrays)."""
    coords = (int(index),) + (0,) * (len(arr.shape) - 1)
    return array_dir / arr.metadata.encode_chunk_key(coords)


def _chunk_range(arr: Any, length: int, within: tuple[int, int] | None) -> range:
    rows = chunk_rows_of(arr)
    lo, hi = (0, length) if within is None else (max(0, within[0]), min(length, within[1]))
    if hi <= lo:
        return range(0)
    return range(lo // rows, -(-hi // rows))


def missing_chunks(
    array_dir: Path, arr: Any, length: int, within: tuple[int, int] | None = None
) -> list[int]:
    """Chunks holding any of the first ``length`` rows (or of rows ``within`` [lo, hi)) whose file is
    absent: the chunk files the array metadata implies, compared with a listing of ``array_dir``
    (nothing is decoded). A few chunks are looked up one by one instead of listing the directory."""
    todo = _chunk_range(arr, length, within)
    if len(todo) <= 8:
        return [i for i in todo if not os.path.isfile(chunk_file(array_dir, arr, i))]
    listed = listed_files(array_dir)
    return [i for i in todo if chunk_file(array_dir, arr, i).relative_to(array_dir).as_posix() not in listed]


def listed_files(directory: Path) -> set[str]:
    """Relative paths (``/``-separated) of every file under ``directory`` (empty if it is absent)."""
    out: set[str] = set()
    base = str(directory)
    for root, _dirs, files in os.walk(base):
        rel = os.path.relpath(root, base)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        out.update(prefix + name for name in files)
    return out


def corrupt_chunks(
    arr: Any, length: int, chunks: Iterable[int] | None = None, skip: Sequence[int] = ()
) -> list[tuple[int, str]]:
    """Decode each chunk of the first ``length`` rows (or only ``chunks``); ``(index, error)`` of
    those that fail. ``skip`` chunks (e.g. known missing ones) are not decoded."""
    rows = chunk_rows_of(arr)
    todo = _chunk_range(arr, length, None) if chunks is None else chunks
    bad: list[tuple[int, str]] = []
    for i in todo:
        if i in skip:
            continue
        lo, hi = i * rows, min(length, (i + 1) * rows)
        if hi <= lo:
            continue
        try:
            arr[lo:hi]
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as exc:
            bad.append((i, describe_exception(exc)))
    return bad


def episodes_overlapping(starts: np.ndarray, ends: np.ndarray, lo: int, hi: int) -> tuple[int, ...]:
    """Positions of the episodes whose steps [start, end) overlap steps [lo, hi)."""
    return tuple(int(i) for i in np.flatnonzero((starts < hi) & (ends > lo)))


def damage_message(path: str | os.PathLike[str], damage: Sequence[ChunkDamage], action: str) -> str:
    """One message for damaged chunks met while doing ``action`` ("reading data/signals", ...)."""
    shown = "; ".join(d.describe() for d in damage[:5])
    more = f"; and {len(damage) - 5} more damaged chunks" if len(damage) > 5 else ""
    episodes = sorted({e for d in damage for e in d.episodes})
    return (
        f"{path}: refusing {action}: {shown}{more}. The store is damaged (episodes "
        f"{format_indices(episodes)}); `salus dataset check {path}` lists every damaged chunk and "
        f"`salus dataset repair {path} --out NEW.zarr` copies the undamaged episodes into a new dataset."
    )
