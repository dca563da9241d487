"""Read a salus episode dataset: per-episode arrays and metadata, episode-level splits, horizon
labels and windows of past signals."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from salus._io import describe_exception, open_zarr_group, reading
from salus.data.format import (
    COMMITTED_EPISODES_ATTR,
    COMMITTED_STEPS_ATTR,
    FORMAT_VERSION,
    FORMAT_VERSION_ATTR,
    META_FIELDS,
    STATE_OWNERS_ATTR,
    STEP_KEYS_ATTR,
)
from salus.data.integrity import (
    ChunkDamage,
    chunk_rows_of,
    corrupt_chunks,
    damage_message,
    episodes_overlapping,
    missing_chunks,
    open_array,
)
from salus.data.labels import apply_labels
from salus.data.record import EpisodeRecord
from salus.errors import DatasetError, InvalidInputError, InvalidNameError

__all__ = [
    "SalusDataset",
    "open_store",
    "commit_record",
    "required_nodes",
    "required_state_owners",
    "missing_nodes",
    "read_stored_state",
]


def open_store(path: str | os.PathLike[str]) -> Any:
    """Open ``path`` read-only as a salus zarr group, or raise a DatasetError saying what is wrong."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"no dataset at {p}: the path does not exist")
    if not p.is_dir():
        raise DatasetError(f"{p} is a file, not a zarr dataset directory")
    if not (p / "zarr.json").is_file():
        if (p / ".zgroup").is_file():
            raise DatasetError(f"{p} is a zarr v2 store; salus datasets are zarr v3 (not a salus dataset)")
        raise DatasetError(f"{p} is not a zarr store (no zarr.json); not a salus dataset")
    root = open_zarr_group(p, "r", DatasetError)
    if FORMAT_VERSION_ATTR not in root.attrs:
        raise DatasetError(
            f"{p} is a zarr store but not a salus dataset (no {FORMAT_VERSION_ATTR!r} root attribute)"
        )
    version = root.attrs[FORMAT_VERSION_ATTR]
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise DatasetError(
            f"{p} has salus format version {version!r}; this salus reads versions 1..{FORMAT_VERSION}"
        )
    return root


def commit_record(
    attrs: dict[str, Any], path: str | os.PathLike[str]
) -> tuple[int, int, dict[str, dict[str, Any]]]:
    """(committed episodes, committed steps, step-key schema) from the root attributes, checked."""
    try:
        n = attrs[COMMITTED_EPISODES_ATTR]
        steps = attrs[COMMITTED_STEPS_ATTR]
        schema = attrs[STEP_KEYS_ATTR]
        ok = (
            all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (n, steps))
            and (n == 0) == (steps == 0)
            and isinstance(schema, dict)
            and all(
                isinstance(spec, dict)
                and isinstance(spec.get("dtype"), str)
                and isinstance(spec.get("shape"), list)
                and all(isinstance(d, int) and d >= 0 for d in spec["shape"])
                for spec in schema.values()
            )
            and (bool(schema) or n == 0)
        )
    except KeyError:
        ok = False
    if not ok:
        raise DatasetError(
            f"{path}: the commit record in the root attributes is missing or invalid; corrupt store"
        )
    return int(n), int(steps), {str(k): dict(v) for k, v in schema.items()}


#: Root attribute -> the fitted state a dataset that has it carries: ``salus collect``, ``Recorder``
#: and ``repair`` record the signal extractor's config in ``attrs["extractor"]`` and its fitted
#: statistics in ``state/extractor``, which ``salus train`` / ``evaluate`` read
#: (``SalusDataset.state("extractor")``). Datasets written since ``salus_state_owners`` exists
#: also name their states there.
STATE_OWNERS_BY_ATTR: dict[str, str] = {"extractor": "extractor"}


def required_state_owners(attrs: dict[str, Any]) -> list[str]:
    """The ``state/<owner>`` groups a dataset with root attributes ``attrs`` must carry."""
    owners = attrs.get(STATE_OWNERS_ATTR)
    named = [str(o) for o in owners] if isinstance(owners, list) else []
    named += [owner for attr, owner in STATE_OWNERS_BY_ATTR.items() if attr in attrs]
    return sorted(set(named))


def required_nodes(attrs: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every group and array (path inside the store) the readers open: the ``meta`` group and each
    of its ``META_FIELDS`` arrays, the ``data`` group and ``data/<key>`` of each committed step key,
    and ``state/<owner>`` of each fitted state the dataset carries. The one list: ``SalusDataset``
    opens these, ``salus dataset check`` / ``info`` and a resuming writer verify that all exist."""
    nodes = ["meta", *(f"meta/{name}" for name in META_FIELDS), "data", *(f"data/{k}" for k in schema)]
    owners = required_state_owners(attrs)
    if owners:
        nodes += ["state", *(f"state/{owner}" for owner in owners)]
    return nodes


def missing_nodes(path: str | os.PathLike[str], attrs: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """The :func:`required_nodes` whose metadata file (``NODE/zarr.json``) is absent from the store."""
    p = Path(path)
    return [node for node in required_nodes(attrs, schema) if not (p / node / "zarr.json").is_file()]


def structure_message(path: str | os.PathLike[str], missing: Sequence[str]) -> str:
    """What is wrong with a store that lacks the ``missing`` nodes, and what can be done."""
    verb = "is" if len(missing) == 1 else "are"
    text = f"{path}: the store is damaged: {', '.join(missing)} {verb} missing"
    if any(m == "state" or m.startswith("state/") for m in missing):
        text += (
            " (state/ holds the fitted signal-extractor statistics that `salus train` and `evaluate` "
            "read; they are written once, when the dataset is created)"
        )
    return (
        f"{text}. `salus dataset repair` cannot restore a missing group or array (it only copies "
        "what is there): collect into a new --out"
    )


class SalusDataset:
    """A committed view of the dataset at ``path`` (anything past the last commit is ignored).

    Every read is verified: a chunk of committed rows that is missing from the store or fails to
    decode (checksum) raises a :class:`DatasetError` naming the array, the chunk and the episodes
    it holds; nothing damaged is ever returned. Damaged ``meta/`` chunks refuse the whole dataset
    at open; damaged ``data/`` chunks refuse only the reads that need them.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        root = open_store(self.path)
        self._root = root
        self.attrs: dict[str, Any] = dict(root.attrs)
        self.num_episodes, self.num_steps, self.schema = commit_record(self.attrs, self.path)
        absent = [n for n in missing_nodes(self.path, self.attrs, self.schema) if not n.startswith("state")]
        if absent:  # (a missing fitted state refuses only state(): `salus dataset check` reports it)
            raise DatasetError(structure_message(self.path, absent))
        self._meta_arrays = {name: open_array(root, self.path, "meta", name) for name in META_FIELDS}
        self._data_arrays = {key: open_array(root, self.path, "data", key) for key in self.schema}
        for name, arr in self._meta_arrays.items():
            if arr.shape[0] < self.num_episodes:
                raise DatasetError(
                    f"{self.path}: meta/{name} has {arr.shape[0]} entries but {self.num_episodes} episodes are "
                    "committed; the store is truncated"
                )
        for key, arr in self._data_arrays.items():
            if arr.shape[0] < self.num_steps:
                raise DatasetError(
                    f"{self.path}: data/{key} has {arr.shape[0]} steps but {self.num_steps} are committed; the "
                    "store is truncated"
                )
        n = self.num_episodes
        self._missing: dict[str, list[int]] = {}
        damage = [
            self._meta_damage(name, arr, i, "missing")
            for name, arr in self._meta_arrays.items()
            for i in missing_chunks(self.path / "meta" / name, arr, n)
        ]
        if damage:
            raise DatasetError(damage_message(self.path, damage, "to open the dataset"))
        try:
            self._meta = {name: arr[:n] for name, arr in self._meta_arrays.items()}
        except Exception as exc:
            damage = [
                self._meta_damage(name, arr, i, "corrupt", err)
                for name, arr in self._meta_arrays.items()
                for i, err in corrupt_chunks(arr, n)
            ]
            if not damage:
                raise DatasetError(
                    f"{self.path}: cannot decode meta/ arrays ({describe_exception(exc)}); corrupt store"
                ) from None
            raise DatasetError(damage_message(self.path, damage, "to open the dataset")) from None
        ends = self._meta["episode_ends"].astype(np.int64)
        if n and (int(ends[-1]) != self.num_steps or np.any(np.diff(np.concatenate([[0], ends])) <= 0)):
            raise DatasetError(
                f"{self.path}: meta/episode_ends is not strictly increasing up to the {self.num_steps} committed "
                "steps; corrupt store"
            )
        self.episode_ends = ends
        self.episode_starts = np.concatenate([[0], ends[:-1]]).astype(np.int64) if n else ends.copy()
        self._perturbations: list[list[dict[str, Any]]] | None = None
        apply_labels(self._meta, self.attrs, n)  # outcomes given later (`salus dataset label`)

    # ------------------------------------------------------------------ integrity
    def _meta_damage(self, name: str, arr: Any, chunk: int, kind: str, detail: str = "") -> ChunkDamage:
        rows = chunk_rows_of(arr)
        lo, hi = chunk * rows, min(self.num_episodes, (chunk + 1) * rows)
        return ChunkDamage(f"meta/{name}", chunk, (lo, hi), kind, tuple(range(lo, hi)), detail)

    def _data_damage(self, key: str, arr: Any, chunk: int, kind: str, detail: str = "") -> ChunkDamage:
        rows = chunk_rows_of(arr)
        lo, hi = chunk * rows, min(self.num_steps, (chunk + 1) * rows)
        eps = episodes_overlapping(self.episode_starts, self.episode_ends, lo, hi)
        return ChunkDamage(f"data/{key}", chunk, (lo, hi), kind, eps, detail)

    def missing_chunks(self, key: str) -> list[int]:
        """Chunks of committed steps of ``data/key`` absent from the store (checked once per key)."""
        if key not in self._missing:
            arr = self._check_key(key)
            self._missing[key] = missing_chunks(self.path / "data" / key, arr, self.num_steps)
        return self._missing[key]

    def _read(self, key: str, lo: int, hi: int) -> np.ndarray:
        """Steps [lo, hi) of ``data/key``, verified: DatasetError if a chunk they need is damaged."""
        arr = self._check_key(key)
        rows = chunk_rows_of(arr)
        hit = [i for i in self.missing_chunks(key) if i * rows < hi and (i + 1) * rows > lo]
        if hit:
            damage = [self._data_damage(key, arr, i, "missing") for i in hit]
            raise DatasetError(damage_message(self.path, damage, f"to read data/{key}"))
        try:
            return np.asarray(arr[lo:hi])
        except Exception as exc:
            chunks = range(lo // rows, -(-hi // rows))
            bad = corrupt_chunks(arr, self.num_steps, chunks)
            if not bad:
                raise DatasetError(
                    f"{self.path}: cannot decode data/{key} ({describe_exception(exc)}); corrupt"
                ) from None
            damage = [self._data_damage(key, arr, i, "corrupt", err) for i, err in bad]
            raise DatasetError(damage_message(self.path, damage, f"to read data/{key}")) from None

    # ------------------------------------------------------------------ metadata
    def __len__(self) -> int:
        return self.num_episodes

    def __repr__(self) -> str:
        return f"SalusDataset({str(self.path)!r}, episodes={self.num_episodes}, steps={self.num_steps})"

    @property
    def keys(self) -> list[str]:
        """Step keys stored under ``data/``."""
        return list(self.schema)

    @property
    def lengths(self) -> np.ndarray:
        """(E,) steps per episode."""
        return self.episode_ends - self.episode_starts

    @property
    def success(self) -> np.ndarray:
        return self._meta["success"].astype(bool)

    @property
    def failure_step(self) -> np.ndarray:
        """(E,) step of the failure, -1 for successful episodes."""
        return self._meta["failure_step"].astype(np.int64)

    @property
    def failure_type(self) -> np.ndarray:
        return np.asarray(self._meta["failure_type"], dtype=object)

    @property
    def task(self) -> np.ndarray:
        return np.asarray(self._meta["task"], dtype=object)

    @property
    def seed(self) -> np.ndarray:
        return self._meta["seed"].astype(np.int64)

    @property
    def episode_index(self) -> np.ndarray:
        """(E,) each episode's index in its collection run (seed, task and perturbations derive from it)."""
        return self._meta["episode_index"].astype(np.int64)

    @property
    def perturbations(self) -> list[list[dict[str, Any]]]:
        """Per episode, the list of ``{"name", "strength", "params"}`` applied."""
        if self._perturbations is None:
            self._perturbations = [json.loads(str(s)) for s in self._meta["perturbations"]]
        return self._perturbations

    @property
    def tasks(self) -> list[str]:
        """Distinct task names, sorted."""
        return sorted({str(t) for t in self.task})

    @property
    def signal_names(self) -> list[str]:
        return list(self.attrs.get("signal_names", []))

    @property
    def baseline_names(self) -> list[str]:
        return list(self.attrs.get("baseline_names", []))

    def state(self, owner: str) -> dict[str, Any]:
        """A fitted state stored with the dataset (e.g. ``state("extractor")``), as a nested dict of arrays."""
        with reading(self.path / "state", f"the stored {owner} state", DatasetError):
            if (self.path / "state").is_dir():
                _check_nodes(self.path / "state")
            if "state" not in self._root or owner not in self._root["state"]:
                if owner in required_state_owners(self.attrs):  # written at creation, lost since
                    raise DatasetError(structure_message(self.path, [f"state/{owner}"]))
                have = list(self._root["state"].group_keys()) if "state" in self._root else []
                raise InvalidNameError("state owner", owner, have)
            return _read_state(self._root["state"][owner], self.path / "state" / owner)

    # ------------------------------------------------------------------ arrays
    def _check_key(self, key: str) -> Any:
        if key not in self._data_arrays:
            raise InvalidNameError("step key", key, self.keys)
        return self._data_arrays[key]

    def _check_episode(self, i: int) -> int:
        i = int(i)
        if not -self.num_episodes <= i < self.num_episodes:
            raise InvalidInputError(f"episode {i} out of range; the dataset has {self.num_episodes} episodes")
        return i % self.num_episodes

    def _episode_list(self, episodes: Iterable[int] | None) -> np.ndarray:
        if episodes is None:
            return np.arange(self.num_episodes, dtype=np.int64)
        eps = np.asarray(list(episodes) if not isinstance(episodes, np.ndarray) else episodes, dtype=np.int64)
        if eps.ndim != 1:
            raise InvalidInputError(f"episodes must be a 1-D list of indices, got shape {eps.shape}")
        if eps.size and (eps.min() < 0 or eps.max() >= self.num_episodes):
            raise InvalidInputError(
                f"episode indices must be in [0, {self.num_episodes}), got {eps.min()}..{eps.max()}"
            )
        return eps

    def steps(self, key: str) -> np.ndarray:
        """(N, ...) all committed steps of ``key`` (one sequential read)."""
        return self._read(key, 0, self.num_steps)

    def episode_arrays(self, key: str, episodes: Iterable[int] | None = None) -> list[np.ndarray]:
        """Per-episode arrays of ``key``: a list of (T_i, ...) arrays, in the order of ``episodes``."""
        eps = self._episode_list(episodes)
        self._check_key(key)
        if eps.size > max(1, self.num_episodes // 4):
            full = self.steps(key)
            return [full[self.episode_starts[i] : self.episode_ends[i]] for i in eps]
        return [self._read(key, int(self.episode_starts[i]), int(self.episode_ends[i])) for i in eps]

    def episode(self, i: int, keys: Sequence[str] | None = None) -> EpisodeRecord:
        """Episode ``i`` with all (or the given) step keys."""
        i = self._check_episode(i)
        s, e = int(self.episode_starts[i]), int(self.episode_ends[i])
        keys = self.keys if keys is None else list(keys)
        steps = {k: self._read(k, s, e) for k in keys}
        return EpisodeRecord(
            steps=steps,
            success=bool(self.success[i]),
            failure_step=int(self.failure_step[i]),
            failure_type=str(self.failure_type[i]),
            task=str(self.task[i]),
            seed=int(self.seed[i]),
            perturbations=self.perturbations[i],
            episode_index=int(self.episode_index[i]),
        )


def _check_nodes(path: Path) -> None:
    """Every sub-directory of the group at ``path`` is a zarr node (zarr silently skips one whose
    ``zarr.json`` is gone, so a stored state would lose that entry)."""
    if not (path / "zarr.json").is_file():
        raise DatasetError(f"{path / 'zarr.json'}: the group metadata is missing; the store is damaged")
    for child in path.iterdir():
        if child.is_dir() and child.name != "c" and not (child / "zarr.json").is_file():
            raise DatasetError(f"{child / 'zarr.json'}: the metadata is missing; the store is damaged")


def _read_state(group: Any, path: Path | None = None) -> dict[str, Any]:
    """A stored state group as a nested dict; with ``path`` (the group's directory) every chunk of
    every array must exist (DatasetError otherwise: zarr would read a missing one as zeros)."""
    if path is not None:
        _check_nodes(path)
    out: dict[str, Any] = dict(group.attrs)
    for name, arr in group.arrays():
        if path is not None and arr.size:
            grid = [range(-(-int(n) // int(c))) for n, c in zip(arr.shape, arr.chunks, strict=True)]
            for coords in itertools.product(*grid):
                if not (path / name / arr.metadata.encode_chunk_key(coords)).is_file():
                    raise DatasetError(
                        f"{path / name}: chunk {'/'.join(map(str, coords))} of the stored state is missing; "
                        "the store is damaged"
                    )
        out[name] = np.asarray(arr[...])
    for name, sub in group.groups():
        out[name] = _read_state(sub, None if path is None else path / name)
    return out


def read_stored_state(root: Any, path: str | os.PathLike[str], attrs: dict[str, Any]) -> dict[str, Any]:
    """The whole stored ``state/`` group as a nested dict, verified: every fitted state the dataset
    must carry (:func:`required_state_owners`) is there, every node and chunk exists and decodes;
    DatasetError otherwise. ``{}`` for a dataset that carries no state."""
    p = Path(path)
    missing = [n for n in missing_nodes(p, attrs, {}) if n == "state" or n.startswith("state/")]
    if missing:
        raise DatasetError(structure_message(p, missing))
    with reading(p / "state", "the stored fitted state", DatasetError):
        if "state" in root or (p / "state").is_dir():
            return _read_state(root["state"], p / "state")
    return {}
