"""Settings of a collection run (cheap: no simulator or torch import)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from salus.collect.plan import PerturbationMix
from salus.errors import InvalidInputError, InvalidNameError

__all__ = ["CollectConfig", "SPEC_FIELDS"]

# Fields that decide what the episodes are: a resumed run must use the same values.
SPEC_FIELDS = (
    "policy",
    "tasks",
    "seed",
    "max_steps",
    "mix",
    "save_images",
    "save_hidden",
    "image_size",
    "num_samples",
    "signal_stats",
)


@dataclass
class CollectConfig:
    """One collection run.

    ``tasks`` empty means every task of ``salus.sim.TASKS``; ``max_steps`` None means the
    simulator's step limit for each task; ``mix`` None means the default perturbation mix
    (:meth:`PerturbationMix.default`). ``num_samples`` K > 1 makes the policy draw K chunks per
    computed chunk (needed by the sample-based signals and baselines). ``signal_stats`` is a
    fitted :class:`~salus.signals.SignalExtractor` file (``PATH.json`` / ``PATH.safetensors``);
    None uses the statistics shipped beside the policy's weights when there are any
    (``salus.signals.signal_stats_path``), ``"none"`` collects without (the OOD and sample-based
    signals are then flagged invalid).
    """

    policy: str = "builtin"
    episodes: int = 24
    tasks: tuple[str, ...] = ()
    seed: int = 0
    max_steps: int | None = None
    mix: PerturbationMix | None = None
    save_images: bool = False
    save_hidden: bool = False
    image_size: int = 96
    num_samples: int = 4
    signal_stats: str | None = None
    policy_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from salus.sim import PERTURBATION_NAMES, TASKS

        self.tasks = tuple(self.tasks)
        for t in self.tasks:
            if t not in TASKS:
                raise InvalidNameError("task", t, TASKS)
        if len(set(self.tasks)) != len(self.tasks):
            raise InvalidInputError(f"tasks contain duplicates: {list(self.tasks)}")
        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise InvalidInputError(f"episodes must be a positive int, got {self.episodes!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidInputError(f"seed must be an int >= 0, got {self.seed!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise InvalidInputError(f"max_steps must be a positive int or None, got {self.max_steps!r}")
        if not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise InvalidInputError(f"num_samples must be an int >= 1, got {self.num_samples!r}")
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise InvalidInputError(f"image_size must be an int >= 8, got {self.image_size!r}")
        if not isinstance(self.policy, str) or not self.policy:
            raise InvalidInputError("policy must be a spec such as 'builtin' or 'smolvla:PATH'")
        if self.mix is None:
            self.mix = PerturbationMix.default(PERTURBATION_NAMES)
        self.mix.validate_names(PERTURBATION_NAMES)

    @property
    def task_list(self) -> tuple[str, ...]:
        from salus.sim import TASKS

        return self.tasks or tuple(TASKS)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.task_list)
        d["mix"] = self.mix.to_obj() if self.mix is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CollectConfig:
        d = dict(d)
        if d.get("mix") is not None:
            d["mix"] = PerturbationMix.from_obj(d["mix"])
        d["tasks"] = tuple(d.get("tasks", ()))
        return cls(**d)

    def spec_dict(self) -> dict[str, Any]:
        """The fields that decide the episodes (everything except the episode count)."""
        full = self.to_dict()
        return {k: full[k] for k in SPEC_FIELDS} | {"policy_kwargs": full["policy_kwargs"]}

    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.spec_dict(), sort_keys=True).encode()).hexdigest()[:16]
