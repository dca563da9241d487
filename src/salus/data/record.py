"""One episode as collected: per-step arrays plus its outcome and how it was generated."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from salus._json import to_json
from salus.data.format import STEP_KEY_DTYPES
from salus.errors import InvalidInputError

__all__ = ["EpisodeRecord", "normalize_perturbations", "UNLABELLED"]

#: ``failure_type`` of an episode whose outcome is not known yet (``success`` False,
#: ``failure_step`` -1); ``salus dataset label`` gives it one, and training refuses it until then.
UNLABELLED = "unlabelled"


def normalize_perturbations(perturbations: Any) -> list[dict[str, Any]]:
    """Perturbations as a list of ``{"name", "strength", "params"}`` dicts.

    Accepts dicts (as recorded by the simulator's wrappers), ``(name, strength)`` pairs, or None.
    """
    if perturbations is None:
        return []
    if isinstance(perturbations, str | bytes) or not isinstance(perturbations, Sequence):
        raise InvalidInputError(
            f"perturbations must be a list of {{'name', 'strength'}} dicts or (name, strength) pairs, got {perturbations!r}"
        )
    out: list[dict[str, Any]] = []
    for p in perturbations:
        if isinstance(p, Mapping):
            if "name" not in p or "strength" not in p:
                raise InvalidInputError(f"perturbation {p!r} needs 'name' and 'strength'")
            name, strength, params = p["name"], p["strength"], p.get("params", {})
        elif isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2:
            name, strength, params = p[0], p[1], {}
        else:
            raise InvalidInputError(f"perturbation {p!r} is neither a dict nor a (name, strength) pair")
        strength = float(strength)
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"perturbation name must be a non-empty string, got {name!r}")
        if not math.isfinite(strength):
            raise InvalidInputError(f"perturbation {name!r} has a non-finite strength {strength}")
        out.append({"name": name, "strength": strength, "params": to_json(params, other="str")})
    return out


@dataclass
class EpisodeRecord:
    """An episode of T control steps.

    ``steps`` maps step keys to arrays with a leading T axis: ``signals`` (T, 12) f32,
    ``signal_valid`` (T, 12) bool, ``baselines`` (T, nb) f32, ``action`` (T, 4), ``state`` (T, 22),
    ``obs_embedding`` (T, E) f16, optionally ``hidden`` (T, H) f16, ``image_front`` / ``image_wrist``
    (T, H, W, 3) uint8. ``failure_step`` is the step at which the failure happened (-1 for a
    success), ``failure_type`` one of the simulator's failure types ("none" for a success,
    :data:`UNLABELLED` with failure_step -1 while the outcome is not known).
    ``episode_index`` is the episode's position in its collection run (-1: assigned by the writer).
    """

    steps: dict[str, np.ndarray]
    success: bool
    failure_step: int
    failure_type: str
    task: str
    seed: int
    perturbations: list[dict[str, Any]] = field(default_factory=list)
    episode_index: int = -1

    def __post_init__(self) -> None:
        if not isinstance(self.steps, Mapping) or not self.steps:
            raise InvalidInputError("EpisodeRecord.steps must be a non-empty dict of step arrays")
        steps: dict[str, np.ndarray] = {}
        length = None
        for key, value in self.steps.items():
            arr = np.asarray(value)
            if arr.ndim == 0:
                raise InvalidInputError(f"step key {key!r} must have a leading T axis, got a scalar")
            if arr.dtype.kind not in "biuf":
                raise InvalidInputError(f"step key {key!r} must be numeric or bool, got dtype {arr.dtype}")
            want = STEP_KEY_DTYPES.get(key)
            if want is not None and arr.dtype != want:
                arr = arr.astype(want)
            if length is None:
                length = arr.shape[0]
            elif arr.shape[0] != length:
                lengths = {k: np.shape(v)[0] for k, v in self.steps.items()}
                raise InvalidInputError(f"step arrays disagree on the episode length T: {lengths}")
            steps[key] = arr
        if not length:
            raise InvalidInputError("an episode needs at least one step (T >= 1)")
        self.steps = steps
        self.success = bool(self.success)
        self.failure_step = int(self.failure_step)
        self.seed = int(self.seed)
        self.episode_index = int(self.episode_index)
        self.task = str(self.task)
        self.failure_type = str(self.failure_type)
        if not self.task:
            raise InvalidInputError("EpisodeRecord.task must be a non-empty string")
        if self.success:
            if self.failure_step != -1 or self.failure_type != "none":
                raise InvalidInputError(
                    "a successful episode must have failure_step=-1 and failure_type='none', got "
                    f"failure_step={self.failure_step}, failure_type={self.failure_type!r}"
                )
        elif self.failure_type == UNLABELLED:
            if self.failure_step != -1:
                raise InvalidInputError(
                    f"an unlabelled episode has failure_step -1 (its outcome is not known), got {self.failure_step}"
                )
        else:
            if not 0 <= self.failure_step < length:
                raise InvalidInputError(
                    f"a failed episode needs 0 <= failure_step < T={length}, got {self.failure_step}"
                )
            if self.failure_type in ("", "none"):
                raise InvalidInputError("a failed episode needs a failure_type other than 'none'")
        self.perturbations = normalize_perturbations(self.perturbations)

    @property
    def length(self) -> int:
        """Number of control steps T."""
        return int(next(iter(self.steps.values())).shape[0])

    def perturbations_json(self) -> str:
        return json.dumps(self.perturbations, sort_keys=True)
