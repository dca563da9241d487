"""``salus dataset repair SRC --out DST``: copy the undamaged episodes of a damaged dataset into a new,
consistent one (never in place) and say what was dropped.

An episode is dropped when any of its committed rows lies in a missing or corrupt chunk (of any
``data/`` or ``meta/`` array), or when its step range is unknown (a damaged ``meta/episode_ends``
chunk). Kept episodes are copied bit for bit, in their order, with their ``episode_index``; the
root attributes and the fitted ``state/`` are copied too. The source is never written to.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salus._io import reading
from salus.data.check import _read_chunks, check_dataset, scan_damage
from salus.data.integrity import format_indices
from salus.data.lock import DatasetLock
from salus.data.reader import read_stored_state
from salus.data.record import EpisodeRecord
from salus.data.writer import RESERVED_ATTRS, DatasetWriter
from salus.errors import DatasetError, InvalidInputError

__all__ = ["RepairReport", "repair_dataset", "REPAIR_ATTR"]

REPAIR_ATTR = "repair"  # root attribute of the new dataset: what was copied from where, what was dropped


@dataclass
class RepairReport:
    """What :func:`repair_dataset` did. Episode lists are positions in the source dataset."""

    source: str
    out: str
    kept: int
    dropped: list[int] = field(default_factory=list)
    dropped_episode_index: list[int | None] = field(default_factory=list)
    damage: list[dict[str, Any]] = field(default_factory=list)
    invalid: dict[int, str] = field(default_factory=dict)  # dropped for metadata no episode can have

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if not self.dropped:
            return f"{self.source} has no damaged chunk: copied all {self.kept} episodes to {self.out}"
        return (
            f"copied {self.kept} episodes from {self.source} to {self.out}; dropped {len(self.dropped)} "
            f"damaged episodes (positions {format_indices(self.dropped)}): {len(self.damage)} damaged chunks"
            + (f", {len(self.invalid)} episodes with invalid metadata" if self.invalid else "")
        )


def repair_dataset(
    source: str | os.PathLike[str], out: str | os.PathLike[str], *, overwrite: bool = False
) -> RepairReport:
    """Write the undamaged episodes of ``source`` into the new dataset ``out``.

    ``out`` must not exist (``overwrite=True`` replaces a salus dataset there) and must not be
    ``source``. The source's writer lock is held while it is read, so a running collector is
    refused rather than copied half-way. Raises DatasetError if the source cannot be read at all
    (no commit record, corrupt root metadata or state) or if every episode is damaged.
    """
    src, dst = Path(source), Path(out)
    if src.resolve() == dst.resolve() or src.resolve() in dst.resolve().parents:
        raise InvalidInputError(
            f"--out {dst} must be a new path outside the source {src} (repair never works in place)"
        )
    if dst.exists() and not overwrite:
        raise DatasetError(f"{dst} already exists; choose a new --out or pass --overwrite to replace it")
    lock = DatasetLock(src)
    with contextlib.suppress(OSError):  # a read-only location: no collector can be writing there either
        lock.acquire()
    created = not dst.exists()
    try:
        scan = scan_damage(src)
        attrs = {k: v for k, v in dict(scan.root.attrs).items() if k not in RESERVED_ATTRS}
        state: dict[str, Any] = {}
        with reading(src / "state", "the stored fitted state (it cannot be repaired)", DatasetError):
            state = read_stored_state(scan.root, src, dict(scan.root.attrs))  # every state it must carry
        keep = np.flatnonzero(~scan.damaged)
        dropped = [int(i) for i in np.flatnonzero(scan.damaged)]
        if scan.num_episodes and not keep.size:
            raise DatasetError(
                f"{src}: every one of its {scan.num_episodes} episodes is damaged; nothing to repair"
            )
        index = scan.meta["episode_index"]
        report = RepairReport(
            source=str(src), out=str(dst), kept=0, damage=[d.as_dict() for d in scan.damage]
        )
        # A collection run can no longer be resumed onto this dataset (its episode numbering has
        # gaps): the original settings are kept under the repair record instead of "collect".
        record: dict[str, Any] = {"source": str(src)}
        if "collect" in attrs:
            record["collect"] = attrs.pop("collect")
        with DatasetWriter(dst, attrs, state=state, overwrite=overwrite) as writer:
            data = {key: scan.root["data"][key] for key in scan.schema}
            full = {  # small per-step keys: read once, chunk by chunk (damaged chunks are never used)
                key: _read_chunks(arr, scan.num_steps, scan.bad_chunks[f"data/{key}"], 0)
                for key, arr in data.items()
                if not key.startswith("image_")
            }
            for i in keep.tolist():
                s, e = int(scan.starts[i]), int(scan.ends[i])
                steps = {
                    key: full[key][s:e] if key in full else np.asarray(arr[s:e]) for key, arr in data.items()
                }
                m = {name: scan.meta[name][i] for name in scan.meta}
                try:
                    episode = EpisodeRecord(
                        steps=steps,
                        success=bool(m["success"]),
                        failure_step=int(m["failure_step"]),
                        failure_type=str(m["failure_type"]),
                        task=str(m["task"]),
                        seed=int(m["seed"]),
                        perturbations=json.loads(str(m["perturbations"])),
                        episode_index=int(m["episode_index"]),
                    )
                except (InvalidInputError, ValueError, TypeError) as exc:  # metadata no episode can have
                    dropped.append(i)
                    report.invalid[i] = str(exc)
                    continue
                writer.append(episode)
            dropped.sort()
            report.kept = writer.num_episodes
            report.dropped = dropped
            report.dropped_episode_index = [None if index[i] is None else int(index[i]) for i in dropped]
            record.update(
                dropped=dropped,
                dropped_episode_index=report.dropped_episode_index,
                damage=report.damage,
                invalid={str(k): v for k, v in report.invalid.items()},
            )
            writer.update_attrs({REPAIR_ATTR: json.loads(json.dumps(record))})
    except BaseException:
        if created:  # leave nothing half-repaired behind
            shutil.rmtree(dst, ignore_errors=True)
        raise
    finally:
        lock.release()
    check = check_dataset(dst)
    if not check.ok:  # pragma: no cover - would be a bug of the writer
        raise DatasetError(f"the repaired dataset {dst} does not check: {check.problems}")
    return report
