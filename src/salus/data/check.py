"""Deep integrity check and summary statistics of a salus dataset (``salus dataset check|info``)."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salus.data.format import pending_dir
from salus.data.lock import lock_path
from salus.data.reader import SalusDataset
from salus.errors import DatasetError

__all__ = ["CheckReport", "check_dataset", "dataset_info"]


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`: ``problems`` make the dataset unusable, ``notes`` do not."""

    path: str
    ok: bool
    episodes: int = 0
    steps: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_dataset(path: str | os.PathLike[str]) -> CheckReport:
    """Open the dataset, decode every committed chunk and check metadata consistency.

    Detects: a missing path, a foreign (non-zarr or non-salus) store, a truncated store (arrays
    shorter than the commit record), corrupt chunks (zstd checksum), inconsistent metadata, NaN/inf
    in valid signals. Data past the last commit (an interrupted collection) is a note, not a problem.
    """
    report = CheckReport(path=str(path), ok=False)
    try:
        ds = SalusDataset(path)
    except DatasetError as exc:
        report.problems.append(str(exc))
        return report
    report.episodes, report.steps = ds.num_episodes, ds.num_steps
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
        missing = _missing_chunks(ds.path / "data" / key, arr.ndim, arr.chunks[0], ds.num_steps)
        if missing:
            problems.append(
                f"data/{key}: {len(missing)} chunk files of committed steps are missing (e.g. chunk {missing[0]}); "
                "the store is truncated (an incomplete copy?)"
            )
        try:
            if key.startswith("image_"):  # decode chunk by chunk, keep nothing
                rows = arr.chunks[0]
                for s in range(0, ds.num_steps, rows):
                    arr[s : min(ds.num_steps, s + rows)]
            else:
                arrays[key] = ds.steps(key)
        except Exception as exc:
            problems.append(f"data/{key}: cannot be decoded ({type(exc).__name__}: {exc}); corrupt chunk")
    n = ds.num_episodes
    lengths = ds.lengths
    fs, succ, ftype = ds.failure_step, ds.success, ds.failure_type
    bad = np.flatnonzero(succ & (fs != -1))
    if bad.size:
        problems.append(f"{bad.size} successful episodes have failure_step != -1 (e.g. episode {bad[0]})")
    bad = np.flatnonzero(~succ & ((fs < 0) | (fs >= lengths)))
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
        missing = _missing_chunks(ds.path / "meta" / name, 1, arr.chunks[0], n)
        if missing:
            problems.append(f"meta/{name}: {len(missing)} chunk files are missing; the store is truncated")
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


def _missing_chunks(array_dir: Path, ndim: int, rows: int, length: int) -> list[int]:
    """Chunk indices along time (the only chunked axis) whose files are absent in a local store."""
    zeros = ["0"] * (ndim - 1)
    return [i for i in range(-(-length // rows)) if not array_dir.joinpath("c", str(i), *zeros).is_file()]


def dataset_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Summary of a dataset: episodes, steps, success rate, failure types, tasks, perturbations and
    per-signal statistics (over valid entries)."""
    ds = SalusDataset(path)
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
        "signals": {},
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
