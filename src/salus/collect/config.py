"""Settings of a collection run (cheap: no simulator or torch import)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from salus.collect.envs import ObservationMap, OutcomeRule
from salus.collect.plan import PerturbationMix
from salus.errors import InvalidInputError

if TYPE_CHECKING:
    from salus.data.robot import RobotSpec

__all__ = ["CollectConfig", "SPEC_FIELDS", "ENV_SPEC_FIELDS", "DEFAULT_BATCH_SIZE"]

#: Environments per collection worker in lockstep (``salus collect --batch-size``): one forward
#: pass of ``CollectConfig.compute_batch`` rows serves them all.
DEFAULT_BATCH_SIZE = 8

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
    "compute_batch",
)
# Also deciding the episodes when ``env`` is set (absent from the specs of salus.sim runs, so their
# spec and its hash are what they were before ``--env`` existed). ``robot`` is in the spec only when
# given (a run without one has the spec and hash it had before ``--robot`` existed).
ENV_SPEC_FIELDS = ("env", "env_kwargs", "observation", "success", "failure", "robot")


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
    signals are then flagged invalid). ``compute_batch`` is the number of environments in every
    forward pass of the policy (short passes are padded): it makes each episode the same bits
    whether it ran alone or beside others in lockstep, so the dataset does not depend on
    ``--batch-size`` or ``--workers``.

    ``env`` runs any Gymnasium environment instead of our tasks: a registered id (e.g.
    ``gym_pusht/PushT-v0``) or a factory ``MODULE:FUNC`` / ``FILE.py:FUNC`` called with
    ``env_kwargs``; ``observation`` maps its observations to the policy's inputs
    (:class:`~salus.collect.envs.ObservationMap`), ``success`` / ``failure`` label its episodes
    (:class:`~salus.collect.envs.OutcomeRule`). ``tasks`` may then hold one name for it, the task
    name every episode stores (default: the environment's Gymnasium id ``env.spec.id``, else the
    factory's function name: :func:`~salus.collect.envs.env_task_name`, resolved by ``probe_env``
    when the run starts); episodes are unperturbed. ``robot`` (:class:`~salus.data.RobotSpec`,
    ``--env`` only) describes the mapped ``state`` (its ``state_dim`` must be the state's width, its
    ``action_dim`` when given the environment's action width, both checked by ``probe_env``): stored
    as the dataset's ``robot`` attribute, and the robot-state signals read the robot state through
    it (``observation.robot_state`` when mapped, else the policy's state).
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
    compute_batch: int = 8
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    env: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    observation: ObservationMap | None = None
    success: str = "is_success"
    failure: str | None = None
    robot: RobotSpec | None = None

    def __post_init__(self) -> None:
        from salus.data.robot import RobotSpec
        from salus.sim import PERTURBATION_NAMES
        from salus.sim.tasks import check_tasks

        self.tasks = tuple(self.tasks)
        if isinstance(self.robot, dict):
            self.robot = RobotSpec.from_dict(self.robot)
        if self.robot is not None and not isinstance(self.robot, RobotSpec):
            raise InvalidInputError(f"robot must be a salus.data.RobotSpec, got {type(self.robot).__name__}")
        if self.robot is not None and self.env is None:
            raise InvalidInputError(
                "a robot description goes with an --env environment; salus.sim tasks are the Panda "
                "(salus.data.panda_robot())"
            )
        if self.env is not None:
            self._check_env()
        else:
            check_tasks(self.tasks)
            if (
                self.observation is not None
                or self.env_kwargs
                or self.failure
                or self.success != "is_success"
            ):
                raise InvalidInputError(
                    "observation, env_kwargs, success and failure apply to an --env environment; "
                    "salus.sim tasks map and label their episodes themselves"
                )
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
        if not isinstance(self.compute_batch, int) or not 1 <= self.compute_batch <= 1024:
            raise InvalidInputError(f"compute_batch must be an int in [1, 1024], got {self.compute_batch!r}")
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise InvalidInputError(f"image_size must be an int >= 8, got {self.image_size!r}")
        if not isinstance(self.policy, str) or not self.policy:
            raise InvalidInputError("policy must be a spec such as 'builtin' or 'smolvla:PATH'")
        if self.mix is None:
            self.mix = (
                PerturbationMix.default(PERTURBATION_NAMES) if self.env is None else PerturbationMix.fixed([])
            )
        if self.env is not None and self.mix.names:
            raise InvalidInputError(
                f"perturbations {sorted(self.mix.names)} are salus.sim wrappers; an --env environment runs unperturbed"
            )
        self.mix.validate_names(PERTURBATION_NAMES)

    def _check_env(self) -> None:
        if not isinstance(self.env, str) or not self.env.strip():
            raise InvalidInputError("env must be a Gymnasium id or MODULE:FACTORY / FILE.py:FACTORY")
        if len(self.tasks) > 1:
            raise InvalidInputError(
                f"an --env run has one task; give at most one name, got {list(self.tasks)}"
            )
        if not isinstance(self.env_kwargs, dict):
            raise InvalidInputError(f"env_kwargs must be a dict, got {self.env_kwargs!r}")
        if self.observation is None:
            self.observation = ObservationMap()
        elif isinstance(self.observation, dict):
            self.observation = ObservationMap.from_dict(self.observation)
        if not isinstance(self.observation, ObservationMap):
            raise InvalidInputError(f"observation must be an ObservationMap, got {self.observation!r}")
        OutcomeRule(self.success, self.failure)  # validates both
        if self.tasks and (not isinstance(self.tasks[0], str) or not self.tasks[0].strip()):
            raise InvalidInputError(
                f"the task name of an --env run must be a non-empty string, got {self.tasks[0]!r}"
            )

    @property
    def task_list(self) -> tuple[str, ...]:
        """The tasks episodes rotate through; an ``--env`` run's one name (before ``probe_env``
        resolves it from the built environment, the factory's function name or the id given)."""
        from salus.collect.envs import env_task_name
        from salus.sim import TASKS

        if self.env is not None:
            return self.tasks or (env_task_name(self.env),)
        return self.tasks or tuple(TASKS)

    @property
    def outcome(self) -> OutcomeRule:
        return OutcomeRule(self.success, self.failure)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.task_list)
        d["mix"] = self.mix.to_obj() if self.mix is not None else None
        d["observation"] = self.observation.to_dict() if self.observation is not None else None
        d["robot"] = self.robot.to_dict() if self.robot is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CollectConfig:
        d = dict(d)
        if d.get("mix") is not None:
            d["mix"] = PerturbationMix.from_obj(d["mix"])
        if d.get("observation") is not None:
            d["observation"] = ObservationMap.from_dict(d["observation"])
        d["tasks"] = tuple(d.get("tasks", ()))
        return cls(**d)

    def spec_dict(self) -> dict[str, Any]:
        """The fields that decide the episodes (everything except the episode count)."""
        full = self.to_dict()
        out = {k: full[k] for k in SPEC_FIELDS} | {"policy_kwargs": full["policy_kwargs"]}
        if self.env is not None:
            out |= {k: full[k] for k in ENV_SPEC_FIELDS if k != "robot" or self.robot is not None}
        return out

    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.spec_dict(), sort_keys=True).encode()).hexdigest()[:16]
