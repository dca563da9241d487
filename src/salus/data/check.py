"""Deep integrity check and summary statistics of a salus dataset (``salus dataset check|info``)."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salus.data.format import (
    META_FIELDS,
    pending_dir,
)
from salus.data.integrity import (
    ChunkDamage,
    chunk_rows_of,
    corrupt_chunks,
    damage_message,
    missing_chunks,
    open_array,
)
from salus.data.lock import lock_path
from salus.data.reader import (
    SalusDataset,
    commit_record,
    missing_nodes,
    open_store,
    read_stored_state,
    structure_message,
)
from salus.errors import DatasetError

__all__ = ["CheckReport", "DamageScan", "check_dataset", "dataset_info", "scan_damage"]


@dataclass
class DamageScan:
    """Every damaged chunk of committed rows of a dataset (see :func:`scan_damage`).

    ``meta`` holds the per-episode metadata values (entries of damaged meta chunks are
    placeholders); ``starts`` / ``ends`` (E,) each episode's steps; ``damaged`` (E,) bool: the
    episode has a row in a damaged chunk, or its step range is unknown (a damaged
    ``meta/episode_ends`` chunk).
    """

    path: Path
    root: Any
    num_episodes: int
    num_steps: int
    schema: dict[str, dict[str, Any]]
    meta: dict[str, np.ndarray]
    starts: np.ndarray
    ends: np.ndarray
    damaged: np.ndarray
    damage: list[ChunkDamage] = field(default_factory=list)
    bad_chunks: dict[str, set[int]] = field(default_factory=dict)  # "data/key" -> chunk indices

    @property
    def damaged_episodes(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.damaged)]


def _read_chunks(arr: Any, length: int, bad: set[int], fill: Any) -> np.ndarray:
    """The first ``length`` rows, read chunk by chunk; rows of ``bad`` chunks are ``fill``."""
    rows = chunk_rows_of(arr)
    parts = []
    for i in range(-(-length // rows)):
        lo, hi = i * rows, min(length, (i + 1) * rows)
        if i in bad:
            parts.append(
                np.full((hi - lo, *arr.shape[1:]), fill, dtype=object if fill is None else arr.dtype)
            )
        else:
            parts.append(np.asarray(arr[lo:hi]))
    if not parts:
        return np.asarray(arr[0:0])
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def scan_damage(path: str | os.PathLike[str], *, decode_data: bool = True) -> DamageScan:
    """Find every missing or corrupt chunk of committed rows (``decode_data=False``: data chunks
    are only checked to exist) and the episodes they hold. DatasetError when the store cannot be
    read at all (no salus root, no commit record, a missing array)."""
    p = Path(path)
    root = open_store(p)
    attrs = dict(root.attrs)
    n, steps, schema = commit_record(attrs, p)
    absent = [node for node in missing_nodes(p, attrs, schema) if not node.startswith("state")]
    if absent:  # every group / array the readers need, named at once
        raise DatasetError(structure_message(p, absent))
    meta_arrays = {name: open_array(root, p, "meta", name) for name in META_FIELDS}
    data_arrays = {key: open_array(root, p, "data", key) for key in schema}
    for group, arrays, length in (("meta", meta_arrays, n), ("data", data_arrays, steps)):
        for name, arr in arrays.items():
            if arr.shape[0] < length:
                raise DatasetError(
                    f"{p}: {group}/{name} has {arr.shape[0]} rows but {length} are committed; the store is truncated"
                )
    damage: list[ChunkDamage] = []
    bad_chunks: dict[str, set[int]] = {}
    known = np.ones(n, dtype=bool)  # all meta of the episode is readable
    ends_known = np.ones(n, dtype=bool)  # its meta/episode_ends entry is readable
    meta: dict[str, np.ndarray] = {}
    for name, arr in meta_arrays.items():
        rows = chunk_rows_of(arr)
        missing = missing_chunks(p / "meta" / name, arr, n)
        found = [(i, "missing", "") for i in missing]
        found += [(i, "corrupt", err) for i, err in corrupt_chunks(arr, n, skip=missing)]
        for i, kind, err in sorted(found):
            lo, hi = i * rows, min(n, (i + 1) * rows)
            damage.append(ChunkDamage(f"meta/{name}", i, (lo, hi), kind, tuple(range(lo, hi)), err))
            known[lo:hi] = False
            if name == "episode_ends":
                ends_known[lo:hi] = False
        bad_chunks[f"meta/{name}"] = {i for i, _, _ in found}
        meta[name] = _read_chunks(arr, n, bad_chunks[f"meta/{name}"], None)
    ends = np.asarray(
        [e if ok else -1 for e, ok in zip(meta["episode_ends"], ends_known, strict=True)], np.int64
    )
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64) if n else ends.copy()
    range_known = ends_known & np.concatenate([[True], ends_known[:-1]]) if n else ends_known
    ok_rows = range_known & (ends > starts)
    if n and (not ok_rows[range_known].all() or (range_known[-1] and int(ends[-1]) != steps)):
        raise DatasetError(
            f"{p}: meta/episode_ends is not strictly increasing up to the {steps} committed steps; corrupt store"
        )
    damaged = ~known | ~range_known
    for key, arr in data_arrays.items():
        rows = chunk_rows_of(arr)
        missing = missing_chunks(p / "data" / key, arr, steps)
        found = [(i, "missing", "") for i in missing]
        if decode_data:
            found += [(i, "corrupt", err) for i, err in corrupt_chunks(arr, steps, skip=missing)]
        for i, kind, err in sorted(found):
            lo, hi = i * rows, min(steps, (i + 1) * rows)
            hit = range_known & (starts < hi) & (ends > lo)
            damaged |= hit
            damage.append(
                ChunkDamage(f"data/{key}", i, (lo, hi), kind, tuple(int(e) for e in np.flatnonzero(hit)), err)
            )
        bad_chunks[f"data/{key}"] = {i for i, _, _ in found}
    return DamageScan(p, root, n, steps, schema, meta, starts, ends, damaged, damage, bad_chunks)


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`: ``problems`` make the dataset unusable, ``notes`` do not."""

    path: str
    ok: bool
    episodes: int = 0
    steps: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    damaged_episodes: list[int] = field(default_factory=list)  # positions; `salus dataset repair` drops them
    damage: list[dict[str, Any]] = field(default_factory=list)  # ChunkDamage.as_dict() of each damaged chunk

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_dataset(path: str | os.PathLike[str]) -> CheckReport:
    """Open the dataset, decode every committed chunk and check metadata consistency.

    Detects: a missing path, a foreign (non-zarr or non-salus) store, a missing group or array the
    readers need (``salus.data.reader.required_nodes``: ``meta/*``, ``data/<key>``, the fitted
    ``state/<owner>``; all named at once), a truncated store (arrays
    shorter than the commit record), missing and corrupt chunks (crc32c / zstd checksum, each
    reported with its array, chunk and episodes), inconsistent metadata, NaN/inf in valid signals.
    Data past the last commit (an interrupted collection) is a note, not a problem.
    """
    report = CheckReport(path=str(path), ok=False)
    try:
        scan = scan_damage(path)
    except DatasetError as exc:
        report.problems.append(str(exc))
        return report
    report.episodes, report.steps = scan.num_episodes, scan.num_steps
    report.damage = [d.as_dict() for d in scan.damage]
    report.damaged_episodes = scan.damaged_episodes
    report.problems.extend(d.describe() for d in scan.damage)
    if scan.damage:
        report.problems.append(
            f"{len(report.damaged_episodes)} of {scan.num_episodes} episodes are damaged; "
            f"`salus dataset repair {path} --out NEW.zarr` copies the others into a new dataset"
        )
    attrs = dict(scan.root.attrs)
    lost = [node for node in missing_nodes(path, attrs, {}) if node.startswith("state")]
    if lost:  # the fitted state `salus train` / `evaluate` read
        report.problems.append(structure_message(path, lost))
    else:
        try:
            read_stored_state(scan.root, path, attrs)
        except DatasetError as exc:
            report.problems.append(f"{exc} (not repairable: the state is fitted once, at creation)")
    try:
        ds = SalusDataset(path)
    except DatasetError as exc:
        if not scan.damage:
            report.problems.append(str(exc))
        return report
    problems, notes = report.problems, report.notes
    arrays: dict[str, np.ndarray] = {}
    for key in ds.keys:
        arr = ds._data_arrays[key]
        spec = ds.schema[key]
        if list(arr.shape[1:]) != list(spec["shape"]) or np.dtype(arr.dtype).str != spec["dtype"]:
            problems.append(
                f"data/{key}: stored as {arr.dtype} {tuple(arr.shape[1:])}, schema says {spec['dtype']} {tuple(spec['shape'])}"
            )
        if arr.shape[0] > ds.num_steps:
            notes.append(
                f"data/{key}: {arr.shape[0] - ds.num_steps} steps past the last commit (an interrupted "
                "append); ignored by readers, truncated when collection resumes"
            )
        if not scan.bad_chunks.get(f"data/{key}") and not key.startswith("image_"):
            arrays[key] = ds.steps(key)  # decoded (and verified) by the scan already
    n = ds.num_episodes
    lengths = ds.lengths
    fs, succ, ftype = ds.failure_step, ds.success, ds.failure_type
    bad = np.flatnonzero(succ & (fs != -1))
    if bad.size:
        problems.append(f"{bad.size} successful episodes have failure_step != -1 (e.g. episode {bad[0]})")
    unlabelled = ftype == "unlabelled"  # outcome not known yet (failure_step -1): `salus dataset label`
    if unlabelled.any():
        notes.append(
            f"{int(unlabelled.sum())} episodes are unlabelled (label them with `salus dataset label`)"
        )
    bad = np.flatnonzero(~succ & ~unlabelled & ((fs < 0) | (fs >= lengths)))
    if bad.size:
        problems.append(
            f"{bad.size} failed episodes have failure_step outside [0, T) (e.g. episode {bad[0]})"
        )
    bad = np.flatnonzero(succ != (ftype == "none"))
    if bad.size:
        problems.append(
            f"{bad.size} episodes have failure_type inconsistent with success (e.g. episode {bad[0]})"
        )
    try:
        ds.perturbations  # noqa: B018 - parses the JSON
    except (ValueError, TypeError) as exc:
        problems.append(f"meta/perturbations is not valid JSON ({exc})")
    idx = ds.episode_index
    if n and len(np.unique(idx)) != n:
        problems.append("meta/episode_index has duplicates (the same episode committed twice)")
    if "signals" in arrays:
        sig = arrays["signals"]
        valid = arrays.get("signal_valid", np.ones(sig.shape, bool))
        nonfinite = int((~np.isfinite(sig) & valid).sum())
        if nonfinite:
            problems.append(f"data/signals has {nonfinite} NaN/inf values flagged valid")
        names = ds.signal_names
        if names and len(names) != sig.shape[1]:
            problems.append(f"attrs signal_names has {len(names)} names for {sig.shape[1]} signal columns")
    if "baselines" in arrays and ds.baseline_names and len(ds.baseline_names) != arrays["baselines"].shape[1]:
        problems.append(
            f"attrs baseline_names has {len(ds.baseline_names)} names for {arrays['baselines'].shape[1]} columns"
        )
    for name, arr in ds._meta_arrays.items():
        if arr.shape[0] > n:
            notes.append(f"meta/{name}: {arr.shape[0] - n} entries past the last commit; ignored")
    if lock_path(ds.path).exists():
        notes.append(f"lock file {lock_path(ds.path)} exists (a collector is running, or one was killed)")
    pending = pending_dir(ds.path)
    if pending.is_dir() and any(pending.iterdir()):
        notes.append(
            f"{pending} holds finished episodes waiting to be committed; `salus collect` resumes them"
        )
    report.ok = not problems
    return report


def _robot_info(ds: SalusDataset) -> dict[str, Any] | None:
    """The dataset's robot description (``salus.data.robot.dataset_robot``) for ``dataset info``:
    ``stored`` says whether it is the ``robot`` attribute (``salus collect --robot``,
    ``Recorder(robot=...)``) or derived from the other attributes; ``robot_signals`` maps each
    robot-state signal to None (computable from the description) or why it is invalid."""
    from salus.data.robot import ROBOT_SIGNALS, dataset_robot
    from salus.errors import InvalidInputError

    try:
        robot = dataset_robot(ds)
    except InvalidInputError as exc:
        return {"error": str(exc)}
    if robot is None:
        return None
    invalid = robot.invalid_signals()
    return {
        "name": robot.name,
        "stored": bool(ds.attrs.get("robot")),
        "state_dim": robot.state_dim,
        "state_names": None if robot.state_names is None else list(robot.state_names),
        "action_dim": robot.action_dim,
        "control_hz": robot.control_hz,
        "robot_signals": {name: invalid.get(name) for name in ROBOT_SIGNALS},
    }


def dataset_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Summary of a dataset: episodes, steps, success rate, failure types, tasks, perturbations,
    the robot description (``robot``: see :func:`_robot_info`) and per-signal statistics (over
    valid entries).

    Cheap, so it does not decode every chunk: it refuses (DatasetError) a store that lacks a group
    or array the readers need, or a chunk file of committed rows (every chunk file the array
    metadata implies is compared with a directory listing), and says under ``integrity`` that the
    checksums of the chunks it did not read are not verified (``salus dataset check`` decodes all).
    """
    ds = SalusDataset(path)  # refuses missing meta/ or data/ arrays and damaged meta/ chunks
    lost = [node for node in missing_nodes(ds.path, ds.attrs, ds.schema) if node.startswith("state")]
    if lost:
        raise DatasetError(structure_message(ds.path, lost))
    damage = [
        ds._data_damage(key, ds._data_arrays[key], i, "missing")
        for key in ds.keys
        for i in ds.missing_chunks(key)
    ]
    if damage:
        raise DatasetError(damage_message(ds.path, damage, "to summarise it"))
    listed = sum(
        -(-length // chunk_rows_of(arr))
        for arrays, length in ((ds._data_arrays, ds.num_steps), (ds._meta_arrays, ds.num_episodes))
        for arr in arrays.values()
    )
    n = ds.num_episodes
    pert = Counter(p["name"] for ep in ds.perturbations for p in ep)
    unperturbed = sum(1 for ep in ds.perturbations if not ep)
    info: dict[str, Any] = {
        "path": str(ds.path),
        "format_version": ds.attrs.get("salus_format_version"),
        "episodes": n,
        "steps": ds.num_steps,
        "mean_episode_length": float(ds.lengths.mean()) if n else 0.0,
        "success_rate": float(ds.success.mean()) if n else None,
        "failure_types": dict(Counter(str(t) for t in ds.failure_type)),
        "tasks": dict(Counter(str(t) for t in ds.task)),
        "perturbations": {"none": unperturbed, **dict(pert)},
        "step_keys": {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in ds.schema.items()},
        "policy": ds.attrs.get("policy"),
        "robot": _robot_info(ds),
        "signals": {},
        "integrity": {
            "chunk_files": listed,
            "missing_chunks": 0,
            "checksums_verified": False,
            "note": f"all {listed} chunk files of committed rows are present (listed, not decoded); "
            "checksums are verified only for the arrays this summary read (meta/, data/signals, "
            f"data/signal_valid): `salus dataset check {ds.path}` decodes every chunk",
        },
    }
    if "signals" in ds.keys and ds.num_steps:
        sig = ds.steps("signals").astype(np.float64)
        valid = ds.steps("signal_valid") if "signal_valid" in ds.keys else np.ones(sig.shape, bool)
        valid = valid & np.isfinite(sig)
        names = ds.signal_names or [f"signal_{j}" for j in range(sig.shape[1])]
        for j, name in enumerate(names):
            col = sig[valid[:, j], j]
            info["signals"][name] = {
                "valid_fraction": float(valid[:, j].mean()),
                "mean": float(col.mean()) if col.size else None,
                "std": float(col.std()) if col.size else None,
                "min": float(col.min()) if col.size else None,
                "max": float(col.max()) if col.size else None,
            }
    json.dumps(info)  # must be JSON-able
    return info
