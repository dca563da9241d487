"""``label_episodes``: give recorded episodes their outcome after the fact, atomically, under the lock."""

from __future__ import annotations

import datetime as _dt
import getpass
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from salus.data.labels import LABELS_ATTR, Label
from salus.data.lock import DatasetLock
from salus.data.reader import SalusDataset
from salus.data.record import UNLABELLED
from salus.errors import DatasetError, InvalidInputError

__all__ = ["label_episodes"]


def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # pragma: no cover - no user name in the environment
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def label_episodes(
    path: str | os.PathLike[str],
    labels: Iterable[Label],
    *,
    by: str | None = None,
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Give episodes of the dataset at ``path`` their outcome; returns the stored entries.

    Every label is checked first (the episode exists, the failure step lies inside it, no episode
    twice); then all of them are written in one atomic attribute update, under the dataset's lock.
    An episode that already has an outcome (from its environment or an earlier label) is relabelled
    only with ``overwrite``; its previous outcome is kept in the entry's ``previous``.
    """
    import zarr

    items = list(labels)
    if not items:
        raise InvalidInputError("no labels given")
    seen: set[int] = set()
    for lab in items:
        if lab.episode in seen:
            raise InvalidInputError(f"episode {lab.episode} is labelled twice")
        seen.add(lab.episode)
    p = Path(path)
    with DatasetLock(p):
        ds = SalusDataset(p)
        n = len(ds)
        lengths, success, fstep, ftype = ds.lengths, ds.success, ds.failure_step, ds.failure_type
        when = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        who = by or _who()
        entries: dict[str, dict[str, Any]] = {}
        for lab in items:
            i = lab.episode
            if not 0 <= i < n:
                raise InvalidInputError(
                    f"episode {i} does not exist in {p}: it has {n} episodes (0..{n - 1})"
                )
            if not lab.success and not 0 <= lab.failure_step < int(lengths[i]):
                raise InvalidInputError(
                    f"episode {i} has {int(lengths[i])} steps; --failure-step must be in [0, {int(lengths[i])}), "
                    f"got {lab.failure_step}"
                )
            previous = {
                "success": bool(success[i]),
                "failure_step": int(fstep[i]),
                "failure_type": str(ftype[i]),
            }
            if previous["failure_type"] != UNLABELLED and not overwrite:
                raise InvalidInputError(
                    f"episode {i} already has an outcome ({previous}); pass --overwrite to relabel it"
                )
            entries[str(i)] = {
                "success": lab.success,
                "failure_step": lab.failure_step,
                "failure_type": lab.failure_type,
                "labelled_by": who,
                "labelled_at": when,
                "previous": previous,
            }
        root = zarr.open_group(str(p), mode="r+")
        existing: Any = root.attrs.get(LABELS_ATTR) or {}
        merged = dict(existing)
        merged.update(entries)
        try:
            root.update_attributes({LABELS_ATTR: merged})  # the commit: one atomic file replace
        except OSError as exc:
            raise DatasetError(f"{p}: cannot write the labels ({exc}); nothing was changed") from None
    return [{"episode": int(k), **v} for k, v in entries.items()]
