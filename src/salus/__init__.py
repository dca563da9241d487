"""salus: predict, while a robot manipulation policy runs, that it is about to fail.

The package has six parts, one sub-package each: ``salus.policies`` (adapters that expose a
policy's internals), ``salus.signals`` (per-step failure signals and published baseline scores),
``salus.sim`` (MuJoCo Franka Panda tasks with physics failure labels), ``salus.collect`` and
``salus.data`` (zarr episode datasets), ``salus.predictor`` (training and honest evaluation) and
``salus.monitor`` (runtime monitor and reports). Heavy modules are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from salus._lazy import load_lazy
from salus._version import __version__
from salus.errors import (
    CheckpointError,
    DatasetError,
    InvalidInputError,
    InvalidNameError,
    MissingDependencyError,
    NotFittedError,
    SalusError,
)

if TYPE_CHECKING:  # the lazy names below, for type checkers and editors (no import at run time)
    from salus.collect.envs import ObservationMap as ObservationMap
    from salus.collect.recorder import Recorder as Recorder
    from salus.data import SalusDataset as SalusDataset
    from salus.data.robot import RobotSpec as RobotSpec
    from salus.monitor import Monitor as Monitor
    from salus.policies.base import PolicyAdapter as PolicyAdapter
    from salus.policies.base import StepInternals as StepInternals
    from salus.signals import SignalExtractor as SignalExtractor
    from salus.sim import make_env as make_env

# Public name -> module that defines it; resolved on first access.
_LAZY: dict[str, str] = {
    "StepInternals": "salus.policies.base",
    "PolicyAdapter": "salus.policies.base",
    "make_env": "salus.sim",
    "SignalExtractor": "salus.signals",
    "SalusDataset": "salus.data",
    "RobotSpec": "salus.data.robot",
    "Monitor": "salus.monitor",
    "Recorder": "salus.collect.recorder",
    "ObservationMap": "salus.collect.envs",
}

__all__ = [
    "__version__",
    "SalusError",
    "InvalidNameError",
    "InvalidInputError",
    "DatasetError",
    "CheckpointError",
    "NotFittedError",
    "MissingDependencyError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, name)
