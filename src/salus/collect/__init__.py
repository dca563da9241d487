"""salus.collect: run a policy in the simulator (or any Gymnasium environment, or the user's own
loop via ``Recorder``) and collect episodes into a zarr dataset.

``collect(CollectConfig(...), "data.zarr", workers=W)`` (or ``salus collect``) plans episode i as a
pure function of (base seed, i), runs it on a backend (in-process, W spawned processes, or Ray
actors) and commits it atomically in episode order; reruns resume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from salus._lazy import load_lazy
from salus.collect.config import CollectConfig
from salus.collect.plan import EpisodeSpec, MixEntry, PerturbationMix, parse_perturb_arg, plan_episode

if TYPE_CHECKING:  # the lazy names below, for type checkers and editors (no import at run time)
    from salus.collect.backends import ProcessBackend as ProcessBackend
    from salus.collect.backends import RayBackend as RayBackend
    from salus.collect.backends import SerialBackend as SerialBackend
    from salus.collect.backends import make_backend as make_backend
    from salus.collect.collector import CollectResult as CollectResult
    from salus.collect.collector import CollectStats as CollectStats
    from salus.collect.collector import collect as collect
    from salus.collect.envs import ObservationMap as ObservationMap
    from salus.collect.envs import OutcomeRule as OutcomeRule
    from salus.collect.recorder import Recorder as Recorder
    from salus.collect.recorder import StepCapture as StepCapture
    from salus.collect.runner import run_episode as run_episode
    from salus.collect.worker import EpisodeWorker as EpisodeWorker

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
    "Recorder": "salus.collect.recorder",
    "StepCapture": "salus.collect.recorder",
    "ObservationMap": "salus.collect.envs",
    "OutcomeRule": "salus.collect.envs",
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
