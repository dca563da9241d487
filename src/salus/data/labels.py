"""Outcome labels given after the fact (``salus dataset label``): who said what, and when.

This module reads and applies labels; :func:`salus.data.relabel.label_episodes` writes them.

A real-robot episode is often recorded before anyone knows how it ended (``failure_type``
``"unlabelled"``). A label given later is stored in the root attribute ``salus_labels``:
``{"<episode>": {"success", "failure_step", "failure_type", "labelled_by", "labelled_at",
"previous"}}``, keyed by the episode's position in the dataset. That one attribute write is the
whole change (one atomic file replace, under the dataset's lock), so a kill can never leave half a
label; :class:`~salus.data.SalusDataset` applies the labels over the per-episode ``meta/`` arrays
(the outcome recorded at collection), which are never rewritten.

Bulk form: a JSON list of ``{"episode": i, "success": true}`` /
``{"episode": i, "failure_step": n, "failure_type": "drop"}`` objects, or a CSV file with the
columns ``episode,success,failure_step,failure_type`` (``success`` true/false; the failure columns
empty for a success).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from salus.data.record import UNLABELLED
from salus.errors import InvalidInputError

__all__ = ["LABELS_ATTR", "Label", "apply_labels", "read_label_file", "unlabelled_episodes"]

LABELS_ATTR = "salus_labels"


@dataclass(frozen=True)
class Label:
    """The outcome of episode ``episode`` (its position in the dataset): a success, or a failure at
    ``failure_step`` of ``failure_type``."""

    episode: int
    success: bool
    failure_step: int = -1
    failure_type: str = "none"

    def __post_init__(self) -> None:
        if (
            not isinstance(self.episode, int | np.integer)
            or isinstance(self.episode, bool)
            or self.episode < 0
        ):
            raise InvalidInputError(f"episode must be an int >= 0, got {self.episode!r}")
        if self.success:
            if self.failure_step != -1 or self.failure_type != "none":
                raise InvalidInputError(
                    f"episode {self.episode}: a success takes no failure step or type "
                    f"(got {self.failure_step}, {self.failure_type!r})"
                )
        else:
            if not isinstance(self.failure_step, int | np.integer) or self.failure_step < 0:
                raise InvalidInputError(
                    f"episode {self.episode}: a failure needs --failure-step N >= 0, got {self.failure_step!r}"
                )
            if not isinstance(self.failure_type, str) or self.failure_type in ("", "none", UNLABELLED):
                raise InvalidInputError(
                    f"episode {self.episode}: a failure needs a --failure-type other than '', 'none' and "
                    f"{UNLABELLED!r} (e.g. drop, miss, collision, timeout, unknown), got {self.failure_type!r}"
                )

    @classmethod
    def from_obj(cls, obj: Any, where: str) -> Label:
        """From ``{"episode", "success"}`` or ``{"episode", "failure_step", "failure_type"}``."""
        if not isinstance(obj, Mapping) or "episode" not in obj:
            raise InvalidInputError(
                f"{where}: each label is an object with 'episode' and either 'success': true or "
                f"'failure_step' + 'failure_type', got {obj!r}"
            )
        extra = set(obj) - {"episode", "success", "failure_step", "failure_type"}
        if extra:
            raise InvalidInputError(f"{where}: unknown label fields {sorted(extra)}")
        episode = _as_int(obj["episode"], f"{where}: episode")
        success = _as_bool(obj.get("success"), f"{where}: success")
        step, kind = obj.get("failure_step"), obj.get("failure_type")
        step = None if step in (None, "") else _as_int(step, f"{where}: failure_step")
        kind = None if kind in (None, "") else str(kind)
        if success is None and step is None:
            raise InvalidInputError(
                f"{where}: episode {episode} needs 'success': true or a 'failure_step' (and 'failure_type')"
            )
        if success:
            return cls(episode, True, -1 if step is None else step, "none" if kind is None else kind)
        if step is None:
            raise InvalidInputError(f"{where}: episode {episode} is a failure but has no failure_step")
        return cls(episode, False, step, "unknown" if kind is None else kind)


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise InvalidInputError(f"{what} must be an integer, got {value!r}")
    try:
        out = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise InvalidInputError(f"{what} must be an integer, got {value!r}") from None
    return int(out)


def _as_bool(value: Any, what: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "success"):
        return True
    if text in ("false", "0", "no", "failure"):
        return False
    raise InvalidInputError(f"{what} must be true or false, got {value!r}")


def read_label_file(path: str | os.PathLike[str]) -> list[Label]:
    """Labels from a ``.json`` (a list of label objects) or ``.csv`` file (see the module doc)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"label file {p} does not exist")
    if p.suffix.lower() not in (".json", ".csv"):
        raise InvalidInputError(f"label file {p} must end in .json or .csv")
    try:
        text = p.read_bytes().decode("utf-8-sig")  # -sig: a CSV saved by a spreadsheet starts with a BOM
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"label file {p} is not UTF-8 text ({exc.reason} at byte {exc.start}); give a JSON list of label "
            "objects or a CSV with the columns episode,success,failure_step,failure_type"
        ) from None
    if p.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"label file {p} is not valid JSON: {exc}") from None
        if not isinstance(obj, list):
            raise InvalidInputError(f"label file {p} must hold a JSON list of label objects")
        return [Label.from_obj(item, f"{p} item {i}") for i, item in enumerate(obj)]
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if reader.fieldnames is None or "episode" not in reader.fieldnames:
            raise InvalidInputError(
                f"label file {p} needs a header row with the columns episode,success,failure_step,failure_type"
            )
        return [Label.from_obj(row, f"{p} line {i + 2}") for i, row in enumerate(reader)]
    except csv.Error as exc:
        raise InvalidInputError(f"label file {p} is not a readable CSV: {exc}") from None


def apply_labels(meta: MutableMapping[str, np.ndarray], attrs: Mapping[str, Any], n: int) -> None:
    """Overlay the labels in ``attrs[salus_labels]`` on the ``success`` / ``failure_step`` /
    ``failure_type`` arrays of ``n`` committed episodes (in place; entries past ``n`` are ignored)."""
    labels = attrs.get(LABELS_ATTR)
    if not labels:
        return
    success = np.array(meta["success"], dtype=bool)
    step = np.array(meta["failure_step"], dtype=np.int64)
    kind = np.array(meta["failure_type"], dtype=object)
    for key, entry in labels.items():
        i = int(key)
        if 0 <= i < n:
            success[i] = bool(entry["success"])
            step[i] = int(entry["failure_step"])
            kind[i] = str(entry["failure_type"])
    meta["success"], meta["failure_step"], meta["failure_type"] = success, step, kind


def unlabelled_episodes(failure_type: Iterable[Any]) -> list[int]:
    """Positions of the episodes whose outcome is not known yet."""
    return [i for i, t in enumerate(failure_type) if str(t) == UNLABELLED]
