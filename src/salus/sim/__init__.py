"""salus.sim: MuJoCo Franka Panda tabletop tasks with physics failure labels.

Cheap names (task list, texts, failure types, perturbation names) import without MuJoCo; the
environment, expert and wrappers load MuJoCo (and choose an offscreen GL backend) on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from salus._lazy import load_lazy
from salus.sim.spec import CAMERA_NAMES, CONTROL_HZ, FAILURE_TYPES, STATE_DIM
from salus.sim.tasks import TASK_SPECS, TASKS, TaskSpec, get_task, task_text, task_texts

PERTURBATION_NAMES = (
    "object_pose",
    "obs_noise",
    "action_noise",
    "push",
    "friction",
    "mass",
    "camera_shift",
    "lighting",
    "distractor",
)

if TYPE_CHECKING:  # the lazy names below, for type checkers and editors (no import at run time)
    from salus.sim.env import PandaEnv as PandaEnv
    from salus.sim.expert import ScriptedExpert as ScriptedExpert
    from salus.sim.make import make_env as make_env
    from salus.sim.perturbations import PERTURBATIONS as PERTURBATIONS
    from salus.sim.perturbations import Perturbation as Perturbation
    from salus.sim.perturbations import apply_perturbations as apply_perturbations
    from salus.sim.perturbations import parse_perturbation as parse_perturbation
    from salus.sim.rollout import RolloutResult as RolloutResult
    from salus.sim.rollout import run_rollouts as run_rollouts

_LAZY: dict[str, str] = {
    "make_env": "salus.sim.make",
    "PandaEnv": "salus.sim.env",
    "ScriptedExpert": "salus.sim.expert",
    "PERTURBATIONS": "salus.sim.perturbations",
    "Perturbation": "salus.sim.perturbations",
    "apply_perturbations": "salus.sim.perturbations",
    "parse_perturbation": "salus.sim.perturbations",
    "RolloutResult": "salus.sim.rollout",
    "run_rollouts": "salus.sim.rollout",
}

__all__ = [
    "TASKS",
    "TASK_SPECS",
    "TaskSpec",
    "get_task",
    "FAILURE_TYPES",
    "PERTURBATION_NAMES",
    "CAMERA_NAMES",
    "CONTROL_HZ",
    "STATE_DIM",
    "task_text",
    "task_texts",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, name)
