"""salus.collect: run a policy in the simulator and collect episodes into a zarr dataset.

``collect(CollectConfig(...), "data.zarr", workers=W)`` (or ``salus collect``) plans episode i as a
pure function of (base seed, i), runs it on a backend (in-process, W spawned processes, or Ray
actors) and commits it atomically in episode order; reruns resume.
"""

from __future__ import annotations

from typing import Any

from salus._lazy import load_lazy
from salus.collect.config import CollectConfig
from salus.collect.plan import EpisodeSpec, MixEntry, PerturbationMix, parse_perturb_arg, plan_episode

_LAZY = {
    "run_episode": "salus.collect.runner",
    "EpisodeWorker": "salus.collect.worker",
    "collect": "salus.collect.collector",
    "CollectResult": "salus.collect.collector",
    "CollectStats": "salus.collect.collector",
    "SerialBackend": "salus.collect.backends",
    "ProcessBackend": "salus.collect.backends",
    "RayBackend": "salus.collect.backends",
    "make_backend": "salus.collect.backends",
}

__all__ = [
    "CollectConfig",
    "EpisodeSpec",
    "MixEntry",
    "PerturbationMix",
    "parse_perturb_arg",
    "plan_episode",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, name)
