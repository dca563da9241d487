"""Append episodes to a zarr dataset, one atomic commit per episode.

Commit protocol (zarr's local store writes every file through a temporary file and a rename, so
each file is replaced atomically): an append first grows the ``data/*`` arrays and writes the
episode's steps past the committed end, then the ``meta/*`` arrays (``meta/episode_ends`` last),
and finally rewrites the root attributes with the new ``salus_committed_episodes`` /
``salus_committed_steps``. That one root-metadata write is the commit: a process killed at any
moment before it leaves only data beyond the committed counts, which readers ignore and the next
writer truncates. No finished episode is ever lost and no partial one is ever visible.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from salus.data.format import (
    COMMITTED_EPISODES_ATTR,
    COMMITTED_STEPS_ATTR,
    FORMAT_VERSION,
    FORMAT_VERSION_ATTR,
    META_CHUNK_ROWS,
    META_FIELDS,
    STEP_KEYS_ATTR,
    chunk_rows,
    data_compressors,
    meta_compressors,
)
from salus.data.lock import DatasetLock
from salus.data.record import EpisodeRecord, _jsonable
from salus.errors import DatasetError, InvalidInputError

__all__ = ["DatasetWriter", "RESERVED_ATTRS", "remove_partial_files", "write_state"]

RESERVED_ATTRS = (FORMAT_VERSION_ATTR, COMMITTED_EPISODES_ATTR, COMMITTED_STEPS_ATTR, STEP_KEYS_ATTR)


def remove_partial_files(path: Path) -> int:
    """Delete temporary ``*.partial`` files a killed writer left inside the store; returns how many."""
    removed = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            if name.endswith(".partial"):
                Path(root, name).unlink(missing_ok=True)
                removed += 1
    return removed


def _grow_and_write(writes: list[tuple[Any, int, np.ndarray]], *, exact: bool = False) -> None:
    """For each ``(array, start, values)``: make room for ``values`` at ``start`` and write them;
    all arrays concurrently in one round trip to zarr's I/O loop.

    Arrays grow geometrically (whole chunks) so most appends skip the metadata rewrite of a
    resize; the rows past the commit record are ignored by readers and trimmed on close.
    ``exact`` resizes to exactly ``start + len(values)`` rows.
    """
    import asyncio

    from zarr.core.sync import sync

    async def one(arr: Any, start: int, values: np.ndarray) -> None:
        stop = start + values.shape[0]
        rows = arr.shape[0]
        if exact and rows != stop:
            await arr.resize((stop, *arr.shape[1:]))
        elif stop > rows:
            chunk = arr.chunks[0]
            capacity = max(stop, 2 * rows)
            capacity = -(-capacity // chunk) * chunk
            await arr.resize((capacity, *arr.shape[1:]))
        await arr.setitem(slice(start, stop), values)

    async def all_writes() -> None:
        await asyncio.gather(*(one(arr.async_array, start, values) for arr, start, values in writes))

    sync(all_writes())


def _always_write(arr: Any) -> Any:
    """Write chunks even when they equal the fill value, so a missing chunk file always means a
    truncated store (``salus dataset check`` relies on it)."""
    return arr.with_config({"write_empty_chunks": True})


def _is_zarr_dir(path: Path) -> bool:
    return (path / "zarr.json").is_file() or (path / ".zgroup").is_file() or (path / ".zarray").is_file()


class DatasetWriter:
    """Writes :class:`EpisodeRecord` s to the zarr dataset at ``path`` (created if missing).

    ``attrs`` (JSON-able: env, policy, extractor and collection configuration, ``signal_names``,
    ``baseline_names``) and ``state`` (``{owner: {name: array}}``, small fitted arrays such as the
    signal extractor's statistics) are written when the store is created; when ``path`` already
    holds a salus dataset the writer resumes it (truncating anything past the last commit) and
    keeps its attributes (see :meth:`update_attrs`). ``overwrite=True`` deletes an existing salus
    dataset first. The writer holds the dataset's lock until :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        attrs: Mapping[str, Any] | None = None,
        *,
        state: Mapping[str, Mapping[str, Any]] | None = None,
        overwrite: bool = False,
        lock: bool = True,
    ):
        import zarr

        self.path = Path(path)
        self._root: Any = None
        self._meta: dict[str, Any] = {}
        self._data: dict[str, Any] = {}
        self._schema: dict[str, dict[str, Any]] = {}
        self._episodes = 0
        self._steps = 0
        self._lock = DatasetLock(self.path) if lock else None
        if self._lock is not None:
            self._lock.acquire()
        try:
            if self.path.exists() and not self.path.is_dir():
                raise DatasetError(f"{self.path} exists and is a file, not a zarr dataset directory")
            exists = self.path.is_dir() and any(self.path.iterdir())
            if exists and not _is_zarr_dir(self.path):
                raise DatasetError(
                    f"{self.path} is a non-empty directory that is not a zarr store; refusing to write "
                    "into it. Choose a new path or an existing salus dataset."
                )
            if exists:
                root = zarr.open_group(str(self.path), mode="r+")
                if FORMAT_VERSION_ATTR not in root.attrs:
                    raise DatasetError(
                        f"{self.path} is a zarr store but not a salus dataset (no {FORMAT_VERSION_ATTR!r} "
                        "attribute); refusing to write into it."
                    )
                if overwrite:
                    shutil.rmtree(self.path)
                    exists = False
            if exists:
                self._open_existing(root)
            else:
                self._create(attrs or {}, state or {})
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    # ------------------------------------------------------------------ set-up
    def _create(self, attrs: Mapping[str, Any], state: Mapping[str, Mapping[str, Any]]) -> None:
        import zarr

        bad = [k for k in attrs if k in RESERVED_ATTRS]
        if bad:
            raise InvalidInputError(f"attrs may not set the reserved keys {bad}")
        self.path.mkdir(parents=True, exist_ok=True)
        root = zarr.open_group(str(self.path), mode="w", zarr_format=3)
        root.create_group("data")
        meta = root.create_group("meta")
        for name, dtype in META_FIELDS.items():
            meta.create_array(
                name,
                shape=(0,),
                chunks=(META_CHUNK_ROWS,),
                dtype=dtype,
                compressors=meta_compressors(),
            )
        if state:
            write_state(root.create_group("state"), state)
        root.update_attributes(
            {
                **_jsonable(dict(attrs)),
                FORMAT_VERSION_ATTR: FORMAT_VERSION,
                STEP_KEYS_ATTR: {},
                COMMITTED_EPISODES_ATTR: 0,
                COMMITTED_STEPS_ATTR: 0,
            }
        )
        self._root = root
        self._schema = {}
        self._episodes = 0
        self._steps = 0
        self._bind_arrays()

    def _open_existing(self, root: Any) -> None:
        version = root.attrs[FORMAT_VERSION_ATTR]
        if version != FORMAT_VERSION:
            raise DatasetError(
                f"{self.path} has salus format version {version}; this salus writes version {FORMAT_VERSION}"
            )
        self._root = root
        self._schema = dict(root.attrs.get(STEP_KEYS_ATTR, {}))
        self._episodes = int(root.attrs.get(COMMITTED_EPISODES_ATTR, -1))
        self._steps = int(root.attrs.get(COMMITTED_STEPS_ATTR, -1))
        if self._episodes < 0 or self._steps < 0:
            raise DatasetError(f"{self.path} has no commit record ({COMMITTED_EPISODES_ATTR}); it is corrupt")
        try:
            self._bind_arrays()
        except KeyError as exc:
            raise DatasetError(f"{self.path} is missing the array {exc}; it is corrupt") from None
        for name, arr in self._meta.items():
            if arr.shape[0] < self._episodes:
                raise DatasetError(
                    f"{self.path}: meta/{name} has {arr.shape[0]} entries but {self._episodes} episodes "
                    "are committed; the store is truncated"
                )
        for key, arr in self._data.items():
            if arr.shape[0] < self._steps:
                raise DatasetError(
                    f"{self.path}: data/{key} has {arr.shape[0]} steps but {self._steps} are committed; "
                    "the store is truncated"
                )
        if self._episodes and int(self._meta["episode_ends"][self._episodes - 1]) != self._steps:
            raise DatasetError(f"{self.path}: meta/episode_ends disagrees with the commit record; corrupt")
        self.truncate_uncommitted()

    def _bind_arrays(self) -> None:
        meta = self._root["meta"]
        data = self._root["data"]
        self._meta = {name: _always_write(meta[name]) for name in META_FIELDS}
        self._data = {key: _always_write(data[key]) for key in self._schema}

    def truncate_uncommitted(self) -> tuple[int, int]:
        """Drop data past the last commit (left by an interrupted append); returns (steps, entries) dropped."""
        dropped_steps = dropped_meta = 0
        for arr in self._data.values():
            if arr.shape[0] > self._steps:
                dropped_steps = max(dropped_steps, arr.shape[0] - self._steps)
                arr.resize((self._steps, *arr.shape[1:]))
        for arr in self._meta.values():
            if arr.shape[0] > self._episodes:
                dropped_meta = max(dropped_meta, arr.shape[0] - self._episodes)
                arr.resize((self._episodes,))
        # Step keys created by an append that never committed (only possible before the first commit).
        if self._episodes == 0:
            for key in list(self._root["data"].array_keys()):
                if key not in self._schema:
                    del self._root["data"][key]
        remove_partial_files(self.path)
        return dropped_steps, dropped_meta

    # ------------------------------------------------------------------ properties
    @property
    def num_episodes(self) -> int:
        """Committed episodes."""
        return self._episodes

    @property
    def num_steps(self) -> int:
        """Committed steps."""
        return self._steps

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._root.attrs)

    def update_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Set root attributes (not the reserved format / commit keys)."""
        bad = [k for k in attrs if k in RESERVED_ATTRS]
        if bad:
            raise InvalidInputError(f"attrs may not set the reserved keys {bad}")
        self._root.update_attributes(_jsonable(dict(attrs)))

    # ------------------------------------------------------------------ append
    def _check_schema(self, record: EpisodeRecord) -> None:
        if not self._schema:
            return
        keys, want = set(record.steps), set(self._schema)
        if keys != want:
            raise InvalidInputError(
                f"episode step keys {sorted(keys)} differ from the dataset's {sorted(want)} "
                f"(missing {sorted(want - keys)}, extra {sorted(keys - want)})"
            )
        for key, arr in record.steps.items():
            spec = self._schema[key]
            if list(arr.shape[1:]) != list(spec["shape"]):
                raise InvalidInputError(
                    f"step key {key!r} has per-step shape {tuple(arr.shape[1:])}; the dataset stores "
                    f"{tuple(spec['shape'])}"
                )

    def _create_data_arrays(self, record: EpisodeRecord) -> None:
        data = self._root["data"]
        schema = {}
        for key, arr in record.steps.items():
            row_bytes = int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize
            rows = chunk_rows(row_bytes)
            if key in data:  # left over by an uncommitted first append
                del data[key]
            data.create_array(
                key,
                shape=(0, *arr.shape[1:]),
                chunks=(rows, *arr.shape[1:]),
                dtype=arr.dtype,
                compressors=data_compressors(),
                fill_value=0,
            )
            schema[key] = {"dtype": arr.dtype.str, "shape": list(arr.shape[1:])}
        self._schema = schema
        self._data = {key: _always_write(data[key]) for key in schema}

    def append(self, record: EpisodeRecord) -> int:
        """Commit one episode atomically; returns its position in the dataset."""
        if not isinstance(record, EpisodeRecord):
            raise InvalidInputError(f"append() takes an EpisodeRecord, got {type(record).__name__}")
        if self._root is None:
            raise DatasetError(f"the writer of {self.path} is closed")
        self._check_schema(record)
        first = not self._schema
        n, m, t = self._episodes, self._steps, record.length
        try:
            if first:
                self._create_data_arrays(record)
            index = record.episode_index if record.episode_index >= 0 else n
            values_meta: dict[str, Any] = {
                "episode_index": index,
                "success": record.success,
                "failure_step": record.failure_step,
                "failure_type": record.failure_type,
                "task": record.task,
                "seed": record.seed,
                "perturbations": record.perturbations_json(),
            }
            writes = [
                (arr, m, record.steps[key].astype(arr.dtype, copy=False)) for key, arr in self._data.items()
            ]
            writes += [
                (self._meta[name], n, np.asarray([v], dtype=self._meta[name].dtype))
                for name, v in values_meta.items()
            ]
            _grow_and_write(writes)  # every step and meta array at once (concurrent I/O)
            # meta/episode_ends last and always exact: diffusion_policy-style readers take its length.
            ends = np.asarray([m + t], dtype=np.int64)
            _grow_and_write([(self._meta["episode_ends"], n, ends)], exact=True)
            commit: dict[str, Any] = {COMMITTED_EPISODES_ATTR: n + 1, COMMITTED_STEPS_ATTR: m + t}
            if first:
                commit[STEP_KEYS_ATTR] = self._schema
            self._commit(commit)
        except BaseException:
            if first:
                self._schema = {}
                self._data = {}
            self.truncate_uncommitted()
            raise
        self._episodes, self._steps = n + 1, m + t
        return n

    def _commit(self, record: dict[str, Any]) -> None:
        """The commit point: one atomic replace of the root metadata file."""
        # Group.update_attributes writes the merged attributes in one file replace; attrs.update()
        # would write once per key (a kill in between would commit half a record).
        self._root.update_attributes(record)

    def close(self) -> None:
        """Trim the arrays to the committed length and release the lock (every appended episode is
        already committed)."""
        if self._root is not None:
            self.truncate_uncommitted()
        self._root = None
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_state(group: Any, state: Mapping[str, Any]) -> None:
    """Store a nested mapping of arrays under ``group`` (arrays as zarr arrays, other values in attrs)."""
    scalars: dict[str, Any] = {}
    for name, value in state.items():
        name = str(name).replace("/", ".")
        if isinstance(value, Mapping):
            write_state(group.create_group(name), value)
            continue
        if hasattr(value, "detach"):  # torch tensor
            value = value.detach().cpu().numpy()
        if isinstance(value, np.ndarray) or (
            isinstance(value, np.generic) and not isinstance(value, np.str_)
        ):
            arr = np.asarray(value)
            group.create_array(name, shape=arr.shape, dtype=arr.dtype, compressors=meta_compressors())
            if arr.size:
                group[name][...] = arr
        else:
            scalars[name] = _jsonable(value)
    if scalars:
        group.update_attributes(scalars)
