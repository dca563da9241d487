"""Append episodes to a zarr dataset, one atomic commit per episode.

Commit protocol (zarr's local store writes every file through a temporary file and a rename, so
each file is replaced atomically): an append first grows the ``data/*`` arrays and writes the
episode's steps past the committed end, then the ``meta/*`` arrays (``meta/episode_ends`` last),
and finally rewrites the root attributes with the new ``salus_committed_episodes`` /
``salus_committed_steps``. That one root-metadata write is the commit: a process killed at any
moment before it leaves only data beyond the committed counts, which readers ignore and the next
writer truncates. No finished episode is ever lost and no partial one is ever visible.

Creation is atomic too: a new store is built complete (format attributes, empty arrays, fitted
state) in ``DATA.zarr.creating`` beside the target and renamed into place, so a kill at any moment
leaves no dataset or a valid empty one. Before appending to an existing store the writer checks
that every group and array the readers need exists (``salus.data.reader.required_nodes``, the
fitted ``state/`` included, which must also decode), that every chunk of committed rows exists,
and that every ``meta/`` chunk, every committed chunk of the non-image ``data/`` keys and the image
chunks of the last episode decode: it never appends to a store ``salus dataset check`` would
refuse for that damage, nor writes into a damaged chunk (a missing one would be re-created from
zeros). :meth:`DatasetWriter.discard_if_empty` removes a store the writer created and never
committed to (a collection that failed before its first episode).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from salus._io import open_zarr_group
from salus._json import to_json
from salus.data.format import (
    COMMITTED_EPISODES_ATTR,
    COMMITTED_STEPS_ATTR,
    FORMAT_VERSION,
    FORMAT_VERSION_ATTR,
    META_CHUNK_ROWS,
    META_FIELDS,
    STATE_OWNERS_ATTR,
    STEP_KEYS_ATTR,
    chunk_rows,
    creating_dir,
    data_compressors,
    meta_compressors,
    replaced_dir,
)
from salus.data.integrity import (
    ChunkDamage,
    chunk_rows_of,
    corrupt_chunks,
    damage_message,
    missing_chunks,
    open_array,
)
from salus.data.lock import DatasetLock
from salus.data.reader import commit_record, missing_nodes, read_stored_state, structure_message
from salus.data.record import EpisodeRecord
from salus.errors import DatasetError, InvalidInputError

__all__ = ["DatasetWriter", "RESERVED_ATTRS", "remove_partial_files", "write_state"]

RESERVED_ATTRS = (
    FORMAT_VERSION_ATTR,
    COMMITTED_EPISODES_ATTR,
    COMMITTED_STEPS_ATTR,
    STEP_KEYS_ATTR,
    STATE_OWNERS_ATTR,
)


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


_SALUS_ENTRIES = {"zarr.json", "data", "meta", "state"}


def _has_chunks(directory: Path) -> bool:
    """Whether any array under ``directory`` holds a chunk file (``.../c/...``)."""
    for root, _dirs, files in os.walk(directory):
        if files and "c" in Path(root).relative_to(directory).parts:
            return True
    return False


def _salus_layout(path: Path) -> bool:
    """Only the entries a salus dataset has at its top level (``zarr.json``, ``data``, ``meta``, ``state``)."""
    return {p.name for p in path.iterdir()} <= _SALUS_ENTRIES


def _half_created(path: Path) -> bool:
    """A store left by a creation that never finished (salus before atomic creation wrote the root
    group first and its format attributes last): salus layout, no chunk of data or metadata."""
    return _salus_layout(path) and not _has_chunks(path / "data") and not _has_chunks(path / "meta")


def _remove_tree(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


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

        self.path = Path(path)
        self._root: Any = None
        self._meta: dict[str, Any] = {}
        self._data: dict[str, Any] = {}
        self._schema: dict[str, dict[str, Any]] = {}
        self._episodes = 0
        self._steps = 0
        self._created = False  # this writer created the store (see discard_if_empty)
        self._lock = DatasetLock(self.path) if lock else None
        if self._lock is not None:
            self._lock.acquire()
        try:
            self._clean_leftovers()
            if self.path.exists() and not self.path.is_dir():
                raise DatasetError(f"{self.path} exists and is a file, not a zarr dataset directory")
            exists = self.path.is_dir() and any(self.path.iterdir())
            if exists and not _is_zarr_dir(self.path):
                raise DatasetError(
                    f"{self.path} is a non-empty directory that is not a zarr store; refusing to write "
                    "into it. Choose a new path or an existing salus dataset."
                )
            root: Any = None
            if exists:
                root = self._open_root(overwrite)
                if root is None or overwrite:  # half-created (treated as absent), or replaced
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
    def _clean_leftovers(self) -> None:
        """Remove what a creation or overwrite killed midway left beside the store (we hold the lock)."""
        _remove_tree(creating_dir(self.path))
        _remove_tree(replaced_dir(self.path))

    def _open_root(self, overwrite: bool) -> Any:
        """The existing store's root group; None for a half-created store (to be created anew).

        With ``overwrite`` a salus dataset (even one whose root metadata is unreadable) may be
        replaced; a zarr store of something else never is.
        """
        try:
            root = open_zarr_group(self.path, "r+", DatasetError)
        except DatasetError as exc:
            if _half_created(self.path) or (overwrite and _salus_layout(self.path)):
                return None
            raise DatasetError(
                f"{exc}. If this is a salus dataset its commit record is lost: pass --overwrite "
                "(overwrite=True) to replace it with a new dataset."
            ) from None
        if FORMAT_VERSION_ATTR not in root.attrs:
            if _half_created(self.path):
                return None
            raise DatasetError(
                f"{self.path} is a zarr store but not a salus dataset (no {FORMAT_VERSION_ATTR!r} "
                "attribute); refusing to write into it."
            )
        return root

    def _create(self, attrs: Mapping[str, Any], state: Mapping[str, Mapping[str, Any]]) -> None:
        """Build the empty dataset beside the target and rename it into place (atomic)."""
        import zarr

        bad = [k for k in attrs if k in RESERVED_ATTRS]
        if bad:
            raise InvalidInputError(f"attrs may not set the reserved keys {bad}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        build = creating_dir(self.path)
        _remove_tree(build)
        root = zarr.open_group(str(build), mode="w", zarr_format=3)
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
        owners: list[str] = []
        if state:
            group = root.create_group("state")
            write_state(group, state)
            owners = sorted([*group.group_keys(), *group.array_keys()])  # the nodes readers will look for
        root.update_attributes(
            {
                **to_json(dict(attrs), other="str"),
                FORMAT_VERSION_ATTR: FORMAT_VERSION,
                STEP_KEYS_ATTR: {},
                STATE_OWNERS_ATTR: owners,
                COMMITTED_EPISODES_ATTR: 0,
                COMMITTED_STEPS_ATTR: 0,
            }
        )
        if self.path.exists():  # an empty directory, a half-created store or one being overwritten
            old = replaced_dir(self.path)
            os.rename(self.path, old)
            os.rename(build, self.path)
            _remove_tree(old)
        else:
            os.rename(build, self.path)
        self._root = zarr.open_group(str(self.path), mode="r+")
        self._schema = {}
        self._episodes = 0
        self._steps = 0
        self._created = True
        self._bind_arrays()

    def _open_existing(self, root: Any) -> None:
        version = root.attrs[FORMAT_VERSION_ATTR]
        if version != FORMAT_VERSION:
            raise DatasetError(
                f"{self.path} has salus format version {version}; this salus writes version {FORMAT_VERSION}"
            )
        self._root = root
        attrs = dict(root.attrs)
        self._episodes, self._steps, self._schema = commit_record(attrs, self.path)
        absent = missing_nodes(self.path, attrs, self._schema)
        if absent:  # every group and array the readers need (`salus dataset check` would refuse it)
            raise DatasetError(f"refusing to append: {structure_message(self.path, absent)}")
        read_stored_state(root, self.path, attrs)  # small; DatasetError if damaged
        self._bind_arrays()
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
        self._check_chunks()
        if self._episodes and int(self._meta["episode_ends"][self._episodes - 1]) != self._steps:
            raise DatasetError(f"{self.path}: meta/episode_ends disagrees with the commit record; corrupt")
        self.truncate_uncommitted()

    def _last_episode_start(self) -> int:
        """First step of the last committed episode (0 if it cannot be read: the check reports why)."""
        if self._episodes < 2:
            return 0
        try:
            return int(self._meta["episode_ends"][self._episodes - 2])
        except Exception:  # a damaged meta/episode_ends chunk, reported by _check_chunks
            return max(0, self._steps - 1)

    def _check_chunks(self) -> None:
        """Refuse to append to a store that ``salus dataset check`` would refuse for damaged chunks,
        as far as a quick look can tell: a missing chunk file of committed rows (a listing, no
        decoding), or a chunk that does not decode among every ``meta/`` chunk, every committed chunk
        of the ``data/`` keys other than images, and the image chunks of the last committed episode
        (the partly filled last chunk, which the next append rewrites, is one of them). Images are
        most of a store that has them (decoding all of them takes about 2 minutes per million
        steps; the other keys about 2 s), so older image chunks are checked at read time and by
        ``salus dataset check``."""
        damage: list[ChunkDamage] = []
        arrays = [("meta", name, arr, self._episodes) for name, arr in self._meta.items()]
        arrays += [("data", key, arr, self._steps) for key, arr in self._data.items()]
        for group, name, arr, length in arrays:
            rows = chunk_rows_of(arr)
            missing = missing_chunks(self.path / group / name, arr, length)
            if group == "meta" or not name.startswith("image_"):  # decode every committed chunk
                todo = [i for i in range(-(-length // rows)) if i not in missing]
            else:  # images: the chunks of the last committed episode
                first = self._last_episode_start() // rows
                todo = [i for i in range(first, -(-length // rows)) if i not in missing]
            found = [(i, "missing", "") for i in missing]
            found += [(i, "corrupt", err) for i, err in corrupt_chunks(arr, length, todo)]
            for i, kind, err in found:
                lo, hi = i * rows, min(length, (i + 1) * rows)
                damage.append(ChunkDamage(f"{group}/{name}", i, (lo, hi), kind, (), err))
        if not damage:
            return
        if any(d.array.startswith("data/") for d in damage) and not any(
            d.array.startswith("meta/") for d in damage
        ):  # name the episodes (episode_ends is intact)
            ends = np.asarray(self._meta["episode_ends"][: self._episodes], dtype=np.int64)
            starts = np.concatenate([[0], ends[:-1]]) if ends.size else ends
            damage = [
                replace(
                    d,
                    episodes=tuple(int(e) for e in np.flatnonzero((starts < d.rows[1]) & (ends > d.rows[0]))),
                )
                if d.array.startswith("data/")
                else d
                for d in damage
            ]
        damage = [
            replace(d, episodes=tuple(range(*d.rows))) if d.array.startswith("meta/") else d for d in damage
        ]
        raise DatasetError(damage_message(self.path, damage, "to append (it would overwrite committed rows)"))

    def _bind_arrays(self) -> None:
        self._meta = {
            name: _always_write(open_array(self._root, self.path, "meta", name)) for name in META_FIELDS
        }
        self._data = {
            key: _always_write(open_array(self._root, self.path, "data", key)) for key in self._schema
        }

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
        self._root.update_attributes(to_json(dict(attrs), other="str"))

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

    def discard_if_empty(self) -> bool:
        """Close the writer and, when it created the store and nothing was committed to it, delete
        the store (renamed aside first, so a kill leaves only a leftover the next writer removes).
        A run that fails before its first episode thus leaves nothing behind; a store that existed
        before is never deleted. Returns whether the store was deleted."""
        remove = self._root is not None and self._created and self._episodes == 0
        if remove:
            self._root = None
            aside = replaced_dir(self.path)
            _remove_tree(aside)
            os.rename(self.path, aside)
            _remove_tree(aside)
        self.close()
        return remove

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
            if arr.size:  # every chunk written, so that a missing chunk file means damage
                _always_write(group[name])[...] = arr
        else:
            scalars[name] = to_json(value, other="str")
    if scalars:
        group.update_attributes(scalars)
