"""What episode i of a collection run is: seed, task and perturbations as a pure function of
(base seed, i), and the perturbation mix they are drawn from (cheap: numpy only)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from salus.errors import InvalidInputError, InvalidNameError

__all__ = [
    "EpisodeSpec",
    "MixEntry",
    "PerturbationMix",
    "DEFAULT_UNPERTURBED_WEIGHT",
    "DEFAULT_STRENGTH_RANGE",
    "plan_episode",
    "parse_perturb_arg",
]

DEFAULT_UNPERTURBED_WEIGHT = 0.4
DEFAULT_STRENGTH_RANGE = (0.25, 1.0)

Strength = float | tuple[float, float]


@dataclass(frozen=True)
class EpisodeSpec:
    """Episode ``index`` of a run: environment ``seed``, ``task`` and ``(name, strength)`` perturbations."""

    index: int
    seed: int
    task: str
    perturbations: tuple[tuple[str, float], ...]


def _check_strength(name: str, value: Any) -> Strength:
    if isinstance(value, int | float) and not isinstance(value, bool):
        v = float(value)
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise InvalidInputError(f"perturbation {name!r}: strength must be in [0, 1], got {value!r}")
        return v
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        lo, hi = (_check_strength(name, v) for v in value)
        assert isinstance(lo, float) and isinstance(hi, float)
        if lo > hi:
            raise InvalidInputError(f"perturbation {name!r}: strength range [{lo}, {hi}] has lo > hi")
        return (lo, hi)
    raise InvalidInputError(
        f"perturbation {name!r}: strength must be a number in [0, 1] or a [lo, hi] range, got {value!r}"
    )


@dataclass(frozen=True)
class MixEntry:
    """One outcome of the mix: with probability ~ ``weight`` apply these perturbations, each with a
    fixed strength or one drawn uniformly from a ``(lo, hi)`` range."""

    weight: float
    perturbations: tuple[tuple[str, Strength], ...] = ()

    def __post_init__(self) -> None:
        if not (isinstance(self.weight, int | float) and math.isfinite(self.weight) and self.weight >= 0):
            raise InvalidInputError(f"mix entry weight must be a finite number >= 0, got {self.weight!r}")
        seen = set()
        for name, strength in self.perturbations:
            if name in seen:
                raise InvalidInputError(f"mix entry applies perturbation {name!r} twice")
            seen.add(name)
            _check_strength(name, strength)


@dataclass(frozen=True)
class PerturbationMix:
    """A distribution over perturbation sets; ``sample(rng)`` draws one episode's perturbations.

    JSON form (``--perturb-mix FILE``): a list of ``{"weight": w, "perturb": {NAME: STRENGTH}}``
    where STRENGTH is a number in [0, 1] or a ``[lo, hi]`` range, e.g.
    ``[{"weight": 0.5, "perturb": {}}, {"weight": 0.5, "perturb": {"push": [0.2, 1.0]}}]``.
    """

    entries: tuple[MixEntry, ...]

    def __post_init__(self) -> None:
        if not self.entries:
            raise InvalidInputError("a perturbation mix needs at least one entry")
        if sum(e.weight for e in self.entries) <= 0:
            raise InvalidInputError("a perturbation mix needs a positive total weight")

    @classmethod
    def default(cls, names: Sequence[str]) -> PerturbationMix:
        """40 % unperturbed; 60 % one perturbation, chosen uniformly, strength uniform in [0.25, 1]."""
        names = sorted(names)
        entries = [MixEntry(DEFAULT_UNPERTURBED_WEIGHT)]
        if names:
            w = (1.0 - DEFAULT_UNPERTURBED_WEIGHT) / len(names)
            entries += [MixEntry(w, ((n, DEFAULT_STRENGTH_RANGE),)) for n in names]
        return cls(tuple(entries))

    @classmethod
    def fixed(cls, perturbations: Sequence[tuple[str, float]]) -> PerturbationMix:
        """Every episode gets exactly these perturbations (``--perturb NAME=STRENGTH``)."""
        return cls((MixEntry(1.0, tuple((str(n), float(s)) for n, s in perturbations)),))

    @classmethod
    def from_obj(cls, obj: Any) -> PerturbationMix:
        if not isinstance(obj, list):
            raise InvalidInputError(
                'a perturbation mix is a JSON list of {"weight": w, "perturb": {NAME: STRENGTH or [lo, hi]}}'
            )
        entries = []
        for i, item in enumerate(obj):
            if not isinstance(item, Mapping) or set(item) - {"weight", "perturb"} or "weight" not in item:
                raise InvalidInputError(
                    f'perturbation mix entry {i} must be {{"weight": w, "perturb": {{...}}}}, got {item!r}'
                )
            perturb = item.get("perturb", {})
            if not isinstance(perturb, Mapping):
                raise InvalidInputError(
                    f"perturbation mix entry {i}: 'perturb' must be an object, got {perturb!r}"
                )
            pairs = tuple((str(k), _check_strength(str(k), v)) for k, v in sorted(perturb.items()))
            entries.append(MixEntry(float(item["weight"]), pairs))
        return cls(tuple(entries))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PerturbationMix:
        p = Path(path)
        if not p.is_file():
            raise InvalidInputError(f"perturbation mix file {p} does not exist")
        try:
            obj = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"perturbation mix file {p} is not valid JSON: {exc}") from None
        return cls.from_obj(obj)

    def to_obj(self) -> list[dict[str, Any]]:
        return [
            {
                "weight": e.weight,
                "perturb": {n: (list(s) if isinstance(s, tuple) else s) for n, s in e.perturbations},
            }
            for e in self.entries
        ]

    @property
    def names(self) -> set[str]:
        return {n for e in self.entries for n, _ in e.perturbations}

    def validate_names(self, valid: Sequence[str]) -> None:
        for name in sorted(self.names):
            if name not in valid:
                raise InvalidNameError("perturbation", name, valid)

    def sample(self, rng: np.random.Generator) -> tuple[tuple[str, float], ...]:
        w = np.array([e.weight for e in self.entries], dtype=np.float64)
        entry = self.entries[int(rng.choice(len(w), p=w / w.sum()))]
        out = []
        for name, s in entry.perturbations:
            strength = float(rng.uniform(s[0], s[1])) if isinstance(s, tuple) else float(s)
            out.append((name, round(strength, 6)))
        return tuple(out)


def plan_episode(index: int, base_seed: int, tasks: Sequence[str], mix: PerturbationMix) -> EpisodeSpec:
    """Episode ``index``'s spec: a pure function of its arguments, so any backend, any number of
    workers and any resume produce the same episodes. Tasks rotate (``tasks[index % len(tasks)]``);
    seed and perturbations come from a generator seeded by ``(base_seed, index)``."""
    if index < 0 or base_seed < 0:
        raise InvalidInputError(f"episode index and base seed must be >= 0, got {index}, {base_seed}")
    if not tasks:
        raise InvalidInputError("at least one task is needed")
    rng = np.random.default_rng(np.random.SeedSequence([int(base_seed), int(index), 0x5A1A5]))
    seed = int(rng.integers(0, 2**31 - 1))
    perturbations = mix.sample(rng)
    return EpisodeSpec(
        index=int(index), seed=seed, task=str(tasks[index % len(tasks)]), perturbations=perturbations
    )


def parse_perturb_arg(text: str) -> tuple[str, float]:
    """``NAME=STRENGTH`` (strength in [0, 1]) -> ``(name, strength)``."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise InvalidInputError(f"--perturb takes NAME=STRENGTH with STRENGTH in [0, 1], got {text!r}")
    try:
        strength = float(value)
    except ValueError:
        raise InvalidInputError(f"--perturb {text!r}: strength {value!r} is not a number in [0, 1]") from None
    s = _check_strength(name, strength)
    assert isinstance(s, float)
    return name, s
