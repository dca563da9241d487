"""Where collection's episodes run: our own MuJoCo tasks or any Gymnasium environment.

An :class:`EnvSource` builds the environment of an episode, says what the policy sees
(:class:`ObservationMap`: environment observation -> the policy's ``state`` / ``image_<camera>`` /
``task``) and labels the finished episode (:class:`OutcomeRule`). ``salus.sim`` tasks are one case
(:class:`SimSource`: identity mapping, the simulator's physics label); ``--env ID_OR_MODULE:FACTORY``
is the other (:class:`GymSource`: a registered Gymnasium id or a factory function, success from
``info["is_success"]`` or a callable, failure step and type from a callable or the last step and
``unknown``). Cheap to import: numpy only until an environment is built.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from salus._lazy import is_object_spec, load_object
from salus.errors import InvalidInputError

__all__ = [
    "ObservationMap",
    "OutcomeRule",
    "EnvSource",
    "SimSource",
    "GymSource",
    "make_env_from_spec",
    "env_task_name",
    "to_image",
    "UNKNOWN_FAILURE",
]

#: Failure type of a failed episode whose environment cannot tell what went wrong.
UNKNOWN_FAILURE = "unknown"

_LEROBOT_STATE = "observation.state"
_LEROBOT_IMAGES = "observation.images."


def to_image(value: Any, key: str) -> np.ndarray:
    """An image as (H, W, 3) uint8: accepts (H, W, 3) or (3, H, W) arrays or tensors, uint8 or float
    in [0, 1] (LeRobot's convention); a leading batch axis of 1 is dropped."""
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise InvalidInputError(
            f"observation {key!r} must be an RGB image (H, W, 3) or (3, H, W), got shape {arr.shape}"
        )
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise InvalidInputError(f"observation {key!r} contains NaN or inf")
        scale = 255.0 if float(arr.max(initial=0.0)) <= 1.0 else 1.0
        return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    if arr.dtype.kind in "iu":
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise InvalidInputError(f"observation {key!r} must be a numeric image, got dtype {arr.dtype}")


def _lookup(obs: Any, key: str, role: str) -> Any:
    if key == ".":
        return obs
    if not isinstance(obs, Mapping):
        raise InvalidInputError(
            f"the observation is a {type(obs).__name__}, not a dict: map the {role} to '.' (the whole observation)"
        )
    if key not in obs:
        raise InvalidInputError(
            f"the observation has no key {key!r} (wanted for the policy's {role}); its keys: {sorted(map(str, obs))}"
        )
    return obs[key]


@dataclass(frozen=True)
class ObservationMap:
    """Environment observation -> the policy's input dict ``{"state", "image_<camera>", "task"}``.

    ``state``: observation keys whose values are flattened and concatenated into ``state`` (D,)
    float32 (``"."``: the whole observation, for a ``Box`` environment). ``images``: ``(camera,
    key)`` pairs; ``obs[key]`` becomes ``image_<camera>`` (H, W, 3) uint8 (see :func:`to_image`).
    ``task``: the key of the instruction text, or None to use ``task_text``. ``robot_state``: the key
    of a ``salus.sim.spec`` layout (22,) state for the robot-state signals (execution mismatch,
    constraint margin), or with a robot description (``salus collect --robot``) of its
    ``state_dim`` values; None records those two signals invalid for a robot other than ours
    unless a description says where their entries are in the policy's state.
    """

    state: tuple[str, ...] = ("state",)
    images: tuple[tuple[str, str], ...] = ()
    task: str | None = "task"
    task_text: str = ""
    robot_state: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", tuple(str(k) for k in self.state))
        object.__setattr__(self, "images", tuple((str(c), str(k)) for c, k in self.images))
        if not self.state or any(not k for k in self.state):
            raise InvalidInputError(
                f"ObservationMap.state needs at least one observation key, got {self.state}"
            )
        cams = [c for c, _ in self.images]
        for cam in cams:
            if not cam.isidentifier():
                raise InvalidInputError(f"camera name {cam!r} must be an identifier (it becomes image_{cam})")
        if len(set(cams)) != len(cams):
            raise InvalidInputError(f"ObservationMap.images names a camera twice: {cams}")
        if self.task is None and not self.task_text:
            raise InvalidInputError("ObservationMap needs a task key or a task_text (the instruction)")

    # ------------------------------------------------------------------ forms
    @classmethod
    def salus_sim(cls, cameras: Sequence[str] = ("front", "wrist")) -> ObservationMap:
        """Our simulator's observation as it is (``state``, ``image_<camera>``, ``task``)."""
        return cls(("state",), tuple((c, f"image_{c}") for c in cameras), "task", "", "state")

    @classmethod
    def infer(
        cls, observation: Mapping[str, Any], task_text: str = "", robot_state: str | None = None
    ) -> ObservationMap:
        """The map of a LeRobot-style dict (``observation.state``, ``observation.images.<name>``,
        ``task``) or of a salus one (``state``, ``image_<camera>``, ``task``).

        ``robot_state``: the key of the robot's proprioceptive vector (the robot-state signals read
        it); it must be in ``observation``, and it is also the policy's state when the dict has
        neither ``observation.state`` nor ``state``."""
        if not isinstance(observation, Mapping):
            raise InvalidInputError(
                f"cannot infer an observation map from a {type(observation).__name__}; pass an ObservationMap"
            )
        keys = [str(k) for k in observation]
        if robot_state is not None:
            _lookup(observation, robot_state, "robot_state")  # raises: names the key and the keys present
        task = "task" if "task" in observation and isinstance(observation["task"], str) else None
        if task is None and not task_text:
            task_text = "task"
        if _LEROBOT_STATE in observation:
            images = tuple((k[len(_LEROBOT_IMAGES) :], k) for k in keys if k.startswith(_LEROBOT_IMAGES))
            return cls((_LEROBOT_STATE,), images, task, task_text, robot_state)
        images = tuple((k[len("image_") :], k) for k in keys if k.startswith("image_"))
        if "state" in observation:
            robot = "state" if np.shape(observation["state"]) == (22,) else None
            return cls(("state",), images, task, task_text, robot if robot_state is None else robot_state)
        if robot_state is not None:  # the robot's own name for its state vector
            images += tuple((k[len(_LEROBOT_IMAGES) :], k) for k in keys if k.startswith(_LEROBOT_IMAGES))
            return cls((robot_state,), images, task, task_text, robot_state)
        raise InvalidInputError(
            f"cannot infer the policy's state from observation keys {sorted(keys)}: expected "
            f"{_LEROBOT_STATE!r} (LeRobot) or 'state' (salus); name the robot's state vector "
            "(Recorder(robot_state=KEY)) or pass an ObservationMap"
        )

    @classmethod
    def parse(cls, items: Iterable[str], task_text: str = "") -> ObservationMap:
        """From ``--obs`` items: ``state=KEY[,KEY...]``, ``image_<camera>=KEY``, ``task=KEY``,
        ``robot_state=KEY`` (e.g. ``state=agent_pos image_top=pixels``)."""
        state: tuple[str, ...] = ("state",)
        images: list[tuple[str, str]] = []
        task: str | None = None if task_text else "task"
        robot: str | None = None
        given: dict[str, str] = {}
        for item in items:
            name, eq, value = str(item).partition("=")
            name, value = name.strip(), value.strip()
            if not eq or not value:
                raise InvalidInputError(
                    f"--obs takes NAME=KEY with NAME state, image_<camera>, task or robot_state, got {item!r}"
                )
            if name in given:  # the last one used to win silently
                hint = " (several state keys: state=KEY,KEY)" if name == "state" else ""
                raise InvalidInputError(
                    f"--obs gives {name} twice ({given[name]!r} and {item!r}); give each policy input once{hint}"
                )
            given[name] = str(item)
            if name == "state":
                state = tuple(v.strip() for v in value.split(",") if v.strip())
            elif name.startswith("image_") and len(name) > len("image_"):
                images.append((name[len("image_") :], value))
            elif name == "task":
                task = value
            elif name == "robot_state":
                robot = value
            else:
                raise InvalidInputError(
                    f"--obs {item!r}: unknown policy input {name!r}; use state, image_<camera>, task or robot_state"
                )
        return cls(state, tuple(images), task, task_text, robot)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"], d["images"] = list(self.state), [list(p) for p in self.images]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ObservationMap:
        d = dict(d)
        return cls(
            tuple(d.get("state", ("state",))),
            tuple((str(c), str(k)) for c, k in d.get("images", ())),
            d.get("task", "task"),
            str(d.get("task_text", "")),
            d.get("robot_state"),
        )

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.images)

    # ------------------------------------------------------------------ applying
    def apply(self, obs: Any, robot_dim: int | None = None) -> tuple[dict[str, Any], np.ndarray | None]:
        """(policy observation, robot state (``robot_dim``,) or None) of one environment observation.

        ``robot_dim``: the width ``robot_state`` must have: the ``state_dim`` of the run's robot
        description (``salus collect --robot``); None: the ``salus.sim.spec`` layout's 22."""
        parts = []
        for key in self.state:
            value = _lookup(obs, key, "state")
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf":
                raise InvalidInputError(
                    f"observation {key!r} must be numeric for the state, got dtype {arr.dtype}"
                )
            parts.append(arr.astype(np.float32).reshape(-1))
        state = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if not np.all(np.isfinite(state)):
            raise InvalidInputError(
                f"observation {list(self.state)} (the policy's state) contains NaN or inf"
            )
        out: dict[str, Any] = {"state": state}
        for cam, key in self.images:
            out[f"image_{cam}"] = to_image(_lookup(obs, key, f"image_{cam}"), key)
        if self.task is not None and isinstance(obs, Mapping) and self.task in obs:
            text = obs[self.task]
            if not isinstance(text, str):
                raise InvalidInputError(
                    f"observation {self.task!r} (the task) must be a str, got {type(text).__name__}"
                )
            out["task"] = text
        elif self.task_text:
            out["task"] = self.task_text
        else:
            _lookup(obs, str(self.task), "task")  # raises: names the missing key
        robot = None
        if self.robot_state is not None:
            robot = np.asarray(_lookup(obs, self.robot_state, "robot_state"), dtype=np.float32).reshape(-1)
            if robot_dim is None and robot.shape != (22,):
                raise InvalidInputError(
                    f"observation {self.robot_state!r} (robot_state) must be the (22,) salus.sim.spec layout, "
                    f"got shape {robot.shape}; leave robot_state unset for another robot, or describe "
                    "it (salus collect --robot FILE.json, Recorder(robot=RobotSpec(...)))"
                )
            if robot_dim is not None and robot.shape != (robot_dim,):
                raise InvalidInputError(
                    f"observation {self.robot_state!r} (robot_state) must hold the robot description's "
                    f"{robot_dim} values (its state_dim), got shape {robot.shape}"
                )
        return out, robot


@dataclass(frozen=True)
class OutcomeRule:
    """How a Gymnasium episode is labelled from the environment (never from signals).

    ``success``: an ``info`` key holding a bool (Gymnasium's ``is_success`` by default), or
    ``MODULE:FUNC`` / ``FILE.py:FUNC`` called as ``f(info, obs) -> bool`` on the last step.
    ``failure``: None (a failure is at the last step, of type ``unknown``) or a callable
    ``f(info, obs, steps) -> (failure_step, failure_type)``.
    """

    success: str = "is_success"
    failure: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.success, str) or not self.success:
            raise InvalidInputError("the success rule must be an info key or MODULE:FUNC, got an empty value")
        if self.failure is not None and not is_object_spec(self.failure):
            raise InvalidInputError(
                f"the failure rule must be MODULE:FUNC or FILE.py:FUNC, got {self.failure!r}"
            )

    def label(self, info: Mapping[str, Any], obs: Any, steps: int, *, where: str = "") -> dict[str, Any]:
        """``{"success", "failure_step", "failure_type"}`` of an episode of ``steps`` steps."""
        if is_object_spec(self.success):
            ok = load_object(self.success, "success rule")(info, obs)
        else:
            if self.success not in info:
                raise InvalidInputError(
                    f"{where or 'the environment'}: info has no {self.success!r} at the end of the episode "
                    f"(info keys: {sorted(map(str, info))}); pass a success rule MODULE:FUNC (--success)"
                )
            ok = info[self.success]
        if isinstance(ok, np.ndarray | np.generic):
            ok = ok.item() if np.size(ok) == 1 else ok
        if not isinstance(ok, bool | int | np.bool_):
            raise InvalidInputError(f"the success rule {self.success!r} gave {ok!r}; expected a bool")
        if ok:
            return {"success": True, "failure_step": -1, "failure_type": "none"}
        step, kind = steps - 1, UNKNOWN_FAILURE
        if self.failure is not None:
            got = load_object(self.failure, "failure rule")(info, obs, steps)
            if got is not None:
                try:
                    step, kind = int(got[0]), str(got[1])
                except (TypeError, ValueError, IndexError):
                    raise InvalidInputError(
                        f"the failure rule {self.failure!r} must return (failure_step, failure_type), got {got!r}"
                    ) from None
        if not 0 <= step < steps or kind in ("", "none"):
            raise InvalidInputError(
                f"the failure rule {self.failure!r} gave step {step}, type {kind!r}; expected 0 <= step < "
                f"{steps} and a type other than 'none'"
            )
        return {"success": False, "failure_step": step, "failure_type": kind}


def make_env_from_spec(spec: str, kwargs: Mapping[str, Any] | None = None) -> Any:
    """A Gymnasium environment from a registered id (``gym_pusht/PushT-v0``; the id's namespace is
    imported first so that it registers) or a factory ``MODULE:FUNC`` / ``FILE.py:FUNC``."""
    kwargs = dict(kwargs or {})
    if is_object_spec(spec):
        factory = load_object(spec, "environment factory")
        if not callable(factory):
            raise InvalidInputError(f"environment factory {spec!r} is not callable")
        env = factory(**kwargs)
    else:
        import contextlib
        import importlib

        import gymnasium as gym

        namespace = spec.split("/", 1)[0] if "/" in spec else None
        if namespace and namespace.isidentifier():
            with contextlib.suppress(ImportError):  # not a module: gym.make says what is wrong
                importlib.import_module(namespace)
        try:
            env = gym.make(spec, **kwargs)
        except gym.error.Error as exc:
            raise InvalidInputError(
                f"--env {spec!r} is neither a registered Gymnasium id ({exc}) nor MODULE:FACTORY / FILE.py:FACTORY"
            ) from None
    if not (callable(getattr(env, "reset", None)) and callable(getattr(env, "step", None))):
        raise InvalidInputError(f"--env {spec!r} built a {type(env).__name__}, which has no reset()/step()")
    return env


def env_task_name(spec: str, env: Any = None) -> str:
    """The task name of an ``--env`` run's episodes: the environment's Gymnasium id
    (``env.spec.id``, e.g. ``gym_pusht/PushT-v0``, also behind wrappers) when ``env`` has one, else
    the factory's function name (``FILE.py:make_env`` -> ``make_env``), else ``spec`` itself."""
    spec_id = getattr(getattr(env, "spec", None), "id", None)
    if isinstance(spec_id, str) and spec_id:
        return spec_id
    if is_object_spec(spec):
        return spec.rpartition(":")[2]
    return spec


class EnvSource:
    """Builds the environment of an episode and labels it (see :class:`SimSource`, :class:`GymSource`)."""

    observation: ObservationMap | None = None  # None: the observation is the policy's input as it is
    kind: str = "env"

    def make(self, task: str, perturbations: Sequence[tuple[str, float]], slot: int = 0) -> tuple[Any, bool]:
        """(env, cached): a cached env stays open for the next episode; each lockstep ``slot`` has
        its own environments."""
        raise NotImplementedError

    def step_limit(self, env: Any) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass
class SimSource(EnvSource):
    """Our MuJoCo tasks: one cached simulator per task for unperturbed episodes, a fresh wrapped one
    for perturbed episodes (the wrappers install hooks that cannot be removed)."""

    image_size: int = 96
    cameras: tuple[str, ...] = ("front", "wrist")
    max_steps: int | None = None
    envs: dict[str, Any] = field(default_factory=dict)
    kind = "salus.sim"

    def make(self, task: str, perturbations: Sequence[tuple[str, float]], slot: int = 0) -> tuple[Any, bool]:
        from salus.sim import make_env

        key = task if slot == 0 else f"{task}#{slot}"  # one per lockstep slot
        if not perturbations and key in self.envs:
            return self.envs[key], True
        env = make_env(
            task,
            image_size=self.image_size,
            cameras=self.cameras,
            max_steps=self.max_steps,
            perturbations=list(perturbations) or None,
        )
        if not perturbations:
            self.envs[key] = env
            return env, True
        return env, False

    def step_limit(self, env: Any) -> int:
        return int(getattr(env.unwrapped, "max_steps", self.max_steps or 10_000))

    def close(self) -> None:
        envs, self.envs = self.envs, {}
        for env in envs.values():
            env.close()


@dataclass
class GymSource(EnvSource):
    """Any Gymnasium environment (``spec``: a registered id or ``MODULE:FACTORY``), built once and
    reset with each episode's seed."""

    spec: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    observation: ObservationMap | None = field(default_factory=ObservationMap)
    outcome: OutcomeRule = field(default_factory=OutcomeRule)
    max_steps: int | None = None
    env: Any = None
    slot_envs: dict[int, Any] = field(default_factory=dict)
    kind = "gymnasium"

    def make(self, task: str, perturbations: Sequence[tuple[str, float]], slot: int = 0) -> tuple[Any, bool]:
        if perturbations:
            raise InvalidInputError(
                f"perturbations {list(perturbations)} are salus.sim wrappers; an --env environment runs unperturbed"
            )
        if slot:  # lockstep slots beyond the first get their own environment
            if slot not in self.slot_envs:
                self.slot_envs[slot] = make_env_from_spec(self.spec, self.kwargs)
            return self.slot_envs[slot], True
        if self.env is None:
            self.env = make_env_from_spec(self.spec, self.kwargs)
        return self.env, True

    def step_limit(self, env: Any) -> int:
        if self.max_steps is not None:
            return int(self.max_steps)
        spec = getattr(env, "spec", None)
        limit = getattr(spec, "max_episode_steps", None)
        if not limit:
            raise InvalidInputError(
                f"--env {self.spec!r} has no step limit (env.spec.max_episode_steps); pass --max-steps"
            )
        return int(limit)

    def control_hz(self, env: Any) -> float:
        fps = (getattr(env, "metadata", None) or {}).get("render_fps")
        if isinstance(fps, int | float) and math.isfinite(fps) and fps > 0:
            return float(fps)
        return 20.0

    def close(self) -> None:
        env, self.env = self.env, None
        others, self.slot_envs = list(self.slot_envs.values()), {}
        for e in [env, *others]:
            if e is not None:
                e.close()
