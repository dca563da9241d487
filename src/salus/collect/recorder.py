"""Record episodes from the user's own control loop into a salus dataset (``salus.Recorder``).

:class:`StepCapture` is the per-step primitive shared with collection (``run_episode``): the policy
acts on one observation, its internals are captured and the signals and online baselines are
computed online, exactly as in ``salus collect``. :class:`Recorder` wraps it for a loop salus does
not drive (a real robot, LIBERO, any simulator): one :meth:`Recorder.step` per control step, and
:meth:`Recorder.end` with the outcome the user knows (success, failure at a step with a type, or
nothing: "unlabelled", to be labelled later with ``salus dataset label``). Each finished episode is
committed atomically to the zarr dataset (the same writer as collection: locked, resumable); an
episode that never reaches :meth:`Recorder.end` is not committed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from salus.collect.envs import ObservationMap
from salus.data.record import UNLABELLED, EpisodeRecord
from salus.errors import DatasetError, InvalidInputError, SalusError

if TYPE_CHECKING:
    from salus.data.robot import RobotSpec
    from salus.policies.base import PolicyAdapter
    from salus.signals import OnlineBaselines, SignalExtractor

__all__ = [
    "StepCapture",
    "Recorder",
    "reset_policy",
    "make_extractor",
    "map_observation",
    "NO_ROBOT_STATE",
]

#: The robot state given to the signal extractor for a robot without the ``salus.sim.spec`` layout:
#: the two signals that read it (execution mismatch, constraint margin) come out invalid.
NO_ROBOT_STATE = np.full(22, np.nan, dtype=np.float32)


def map_observation(
    observation: ObservationMap, obs: Any, robot: RobotSpec | None = None
) -> tuple[dict[str, Any], np.ndarray]:
    """(the policy's input, the robot state the signal extractor reads) of one observation of the
    user's loop or of an ``--env`` environment (collection and the recorder alike).

    ``robot`` (:class:`~salus.data.RobotSpec`, the extractor built with
    ``set_robot(robot.extractor_robot())``): the map's ``robot_state`` (``robot.state_dim`` values)
    when it has one, else the policy's state, through ``robot.signal_state`` (NaN, so invalid, for
    a description the signals have nothing to read of). None: the map's (22,) ``robot_state``
    (the ``salus.sim.spec`` layout), else :data:`NO_ROBOT_STATE`."""
    mapped, mapped_robot = observation.apply(obs, None if robot is None else robot.state_dim)
    if robot is None:
        return mapped, NO_ROBOT_STATE if mapped_robot is None else mapped_robot
    source = mapped["state"] if mapped_robot is None else mapped_robot
    return mapped, robot.signal_state(source[None])[0]


def reset_policy(policy: Any, seed: int) -> None:
    """Start a new episode with the policy's noise seeded: ``PolicyAdapter.reset(seed=...)``."""
    policy.reset(seed=int(seed))


def make_extractor(signal_stats: str | None) -> Any:
    """The signal extractor of a run (batch 1): loaded from ``signal_stats`` (``PATH`` for
    ``PATH.json`` + ``PATH.safetensors``), else unfitted (the OOD signal, and the sample-based ones
    without a configured cluster radius, are flagged invalid)."""
    from dataclasses import replace

    from salus.signals import SignalConfig, SignalExtractor

    if signal_stats and signal_stats != "none":
        return SignalExtractor.load(signal_stats, batch_size=1)
    return SignalExtractor(1, replace(SignalConfig(), require_fitted=False))


class StepCapture:
    """The per-step record of a policy in B environments (slots): ``begin(seed)`` /
    ``begin_slot(b, seed)``, one ``step`` (B = 1) or ``step_batch`` per control step (returns the
    actions), ``steps()`` / ``take(b)`` the stacked arrays of an episode.

    Records ``state`` (T, D), ``action`` (T, A), any ``extras`` keys, ``obs_embedding`` (T, E) f16
    when the policy reports internals, ``hidden`` and ``hidden_mean`` (T, H) f16 with ``save_hidden``, ``signals`` /
    ``signal_valid`` (T, 12) with an extractor, ``baselines`` / ``baseline_valid`` (T, nb) with
    baselines, and ``image_<camera>`` (T, H, W, 3) for ``cameras``. The extractor and baselines
    must have ``batch_size`` rows (the policy computes the B environments in one batched call).
    """

    def __init__(
        self,
        policy: PolicyAdapter,
        extractor: SignalExtractor | None = None,
        baselines: OnlineBaselines | None = None,
        *,
        save_hidden: bool = False,
        cameras: tuple[str, ...] = (),
        action_dim: int | None = None,
        batch_size: int = 1,
    ):
        self.policy = policy
        self.extractor = extractor
        self.baselines = baselines
        self.save_hidden = save_hidden
        self.cameras = tuple(cameras)
        self.action_dim = action_dim
        self.batch_size = int(batch_size)
        self._bufs: list[dict[str, list[np.ndarray]]] = [{} for _ in range(self.batch_size)]
        self.last_signals: Any = None  # SignalStep of the last step (values, valid: (B, 12))

    def begin(self, seed: int) -> None:
        """Reset the policy (seeded), the extractor and the baselines; forget the previous episode (B = 1)."""
        reset_policy(self.policy, seed)
        if self.extractor is not None:
            self.extractor.reset()
        if self.baselines is not None:
            self.baselines.reset()
        self._bufs = [{} for _ in range(self.batch_size)]
        self.last_signals = None

    def begin_slot(self, b: int, seed: int) -> None:
        """Start slot b's next episode: its policy row seeded with ``seed`` (the noise a B = 1 run
        with that seed draws), its extractor and baseline rows reset, its record cleared."""
        self.policy.reset(env_index=b, seed=int(seed))
        if self.extractor is not None:
            self.extractor.reset(env_index=b)
        if self.baselines is not None:
            self.baselines.reset(env_index=b)
        self._bufs[b] = {}

    @property
    def length(self) -> int:
        return len(self._bufs[0].get("action", ()))

    def step(
        self,
        obs: Any,
        state: np.ndarray,
        robot_state: np.ndarray,
        extras: Callable[[], Mapping[str, Any]] | None = None,
    ) -> np.ndarray:
        """Act on ``obs`` (the policy's input, one environment), record this step; returns the
        action (A,) float32.

        ``state`` (D,) float32 is what is stored as the step's state; ``robot_state`` (22,) the
        ``salus.sim.spec`` layout state the signal extractor reads (:data:`NO_ROBOT_STATE` if none).
        """
        action = np.asarray(self.policy.act(obs), dtype=np.float32).reshape(1, -1)
        self._record(action, [obs], [state], np.asarray(robot_state)[None], [extras], [0])
        return action[0]

    def step_batch(
        self,
        obs: list[Any],
        states: list[np.ndarray],
        robot_states: np.ndarray,
        extras: list[Callable[[], Mapping[str, Any]] | None],
        record: list[int],
    ) -> np.ndarray:
        """One batched policy call on the B observations; records the slots in ``record`` (the
        others are finished and wait); returns the (B, A) float32 actions."""
        from salus.policies.harness import stack_observations

        action = np.asarray(self.policy.act(stack_observations(obs)), dtype=np.float32)
        if action.ndim != 2 or action.shape[0] != len(obs):
            raise InvalidInputError(
                f"the policy returned actions of shape {action.shape} for {len(obs)} observations"
            )
        self._record(action, obs, states, robot_states, extras, record)
        return action

    def _record(
        self,
        action: np.ndarray,
        obs: list[Any],
        states: list[np.ndarray],
        robot_states: np.ndarray,
        extras: list[Callable[[], Mapping[str, Any]] | None],
        record: list[int],
    ) -> None:
        if self.action_dim is not None and action.shape[1:] != (self.action_dim,):
            raise InvalidInputError(
                f"the policy returned an action of shape {action.shape[1:]}; the environment takes ({self.action_dim},)"
            )
        internals = getattr(self.policy, "last_internals", None)
        sig = base = None
        if self.extractor is not None:
            if internals is None:
                raise SalusError(
                    "signal extraction needs a policy that reports its internals (last_internals)"
                )
            sig = self.last_signals = self.extractor.step(internals, robot_states)
        if self.baselines is not None and internals is not None:
            base = self.baselines.step(internals)
        for b in record:
            buf = self._bufs[b]
            buf.setdefault("state", []).append(states[b])
            buf.setdefault("action", []).append(action[b])
            extra = extras[b]
            if extra is not None:
                for key, value in extra().items():
                    buf.setdefault(key, []).append(np.asarray(value))
            if internals is not None:
                buf.setdefault("obs_embedding", []).append(
                    np.asarray(internals.obs_embedding[b], dtype=np.float16)
                )
                if self.save_hidden:
                    buf.setdefault("hidden", []).append(
                        np.asarray(internals.hidden_step[b], dtype=np.float16)
                    )
                    buf.setdefault("hidden_mean", []).append(
                        np.asarray(internals.hidden_mean[b], dtype=np.float16)
                    )
            if sig is not None:
                buf.setdefault("signals", []).append(np.asarray(sig.values[b]))
                buf.setdefault("signal_valid", []).append(np.asarray(sig.valid[b]))
            if base is not None:
                buf.setdefault("baselines", []).append(np.asarray(base.values[b]))
                buf.setdefault("baseline_valid", []).append(np.asarray(base.valid[b]))
            for cam in self.cameras:
                buf.setdefault(f"image_{cam}", []).append(np.asarray(obs[b][f"image_{cam}"]))

    def steps(self, b: int = 0) -> dict[str, np.ndarray]:
        """Slot b's episode step arrays, each with a leading T axis."""
        return {k: np.stack(v) for k, v in self._bufs[b].items()}


def recorder_attrs(
    policy: Any, extractor: Any, observation: ObservationMap | None, control_hz: float, env: Mapping[str, Any]
) -> dict[str, Any]:
    """Root attributes of a dataset written by the recorder (the same keys collection writes)."""
    from salus._version import __version__
    from salus.signals import ONLINE_BASELINE_NAMES, SIGNAL_NAMES

    return {
        "salus_version": __version__,
        "signal_names": list(SIGNAL_NAMES),
        "baseline_names": list(ONLINE_BASELINE_NAMES),
        "control_hz": float(control_hz),
        "env": {"simulator": "user loop", "control_hz": float(control_hz), **dict(env)},
        "policy": {"spec": type(policy).__name__, "num_samples": int(getattr(policy, "num_samples", 1))},
        "extractor": {"config": extractor.config.to_dict(), "fitted": bool(extractor.fitted)},
        "recorder": {"observation": None if observation is None else observation.to_dict()},
    }


class Recorder:
    """Records the user's control loop into the dataset at ``path`` (created, or appended to).

    ``policy``: a :class:`~salus.policies.base.PolicyAdapter` (e.g. ``TorchPolicyAdapter``, the
    LeRobot SmolVLA adapter). ``observation``: an :class:`ObservationMap` from the loop's
    observations to the policy's input; None infers it from the first observation (LeRobot's
    ``observation.state`` / ``observation.images.<name>`` / ``task``, or salus's ``state`` /
    ``image_<camera>`` / ``task``). ``signal_stats``: fitted signal statistics (else the OOD signal
    is recorded invalid). ``save_images`` stores every mapped camera image. ``action_dim`` checks
    the policy's actions. ``env`` (JSON-able) describes the robot or environment in the dataset.
    ``robot`` (:class:`~salus.data.RobotSpec`): the state layout, stored in the dataset and, by
    training, in every checkpoint (the monitor reads it); its control rate and action width are the
    recorder's ``control_hz`` / ``action_dim`` unless given. ``robot_state``: the observation key
    of the robot's proprioceptive vector, whatever the loop calls it (e.g. ``"qpos"``): the
    robot-state signals read it (the ``salus.sim.spec`` (22,) layout, or with ``robot`` its
    ``state_dim`` values laid out as the description says), and with an inferred map it is also
    the policy's state when the observation has neither ``observation.state`` nor ``state``. The
    first :meth:`step` checks it (an error names the key and the keys the observation has).

    Usage::

        with Recorder("robot.zarr", policy, task_text="pick up the cube") as rec:
            rec.start()
            while not done:
                action = rec.step(observation)  # one call per control step
                ...
            rec.end(success=True)  # or failure_step=..., failure_type=...; or nothing (unlabelled)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        policy: PolicyAdapter,
        *,
        observation: ObservationMap | None = None,
        task_text: str = "",
        signal_stats: str | None = None,
        save_images: bool = False,
        save_hidden: bool = False,
        action_dim: int | None = None,
        control_hz: float | None = None,
        env: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        robot: RobotSpec | None = None,
        robot_state: str | None = None,
    ):
        from dataclasses import replace

        from salus.data.robot import RobotSpec
        from salus.data.writer import DatasetWriter
        from salus.signals import ONLINE_BASELINE_NAMES, SIGNAL_NAMES, OnlineBaselines

        for name in ("act", "reset"):
            if not callable(getattr(policy, name, None)):
                raise InvalidInputError(
                    f"Recorder needs a policy adapter with {name}(); got {type(policy).__name__}"
                )
        if robot_state is not None:
            if not isinstance(robot_state, str) or not robot_state:
                raise InvalidInputError(
                    f"robot_state must be the observation key (a non-empty str) of the robot's state "
                    f"vector, got {robot_state!r}"
                )
            if observation is not None:
                if observation.robot_state not in (None, robot_state):
                    raise InvalidInputError(
                        f"robot_state {robot_state!r} contradicts the observation map's robot_state "
                        f"{observation.robot_state!r}; give it once"
                    )
                observation = replace(observation, robot_state=robot_state)
        self._robot_state = robot_state
        if robot is not None:
            if not isinstance(robot, RobotSpec):
                raise InvalidInputError(f"robot must be a salus.data.RobotSpec, got {type(robot).__name__}")
            if control_hz is not None and float(control_hz) != robot.control_hz:
                raise InvalidInputError(
                    f"control_hz {control_hz} differs from the robot description's {robot.control_hz:g} Hz"
                )
            if action_dim is not None and robot.action_dim is not None and action_dim != robot.action_dim:
                raise InvalidInputError(
                    f"action_dim {action_dim} differs from the robot description's {robot.action_dim}"
                )
            control_hz = robot.control_hz
            action_dim = robot.action_dim if action_dim is None else action_dim
        control_hz = 20.0 if control_hz is None else control_hz
        self.robot = robot
        if not (isinstance(control_hz, int | float) and control_hz > 0):
            raise InvalidInputError(f"control_hz must be a positive number, got {control_hz!r}")
        self.observation = observation
        self.task_text = task_text
        self.save_images = save_images
        extractor = make_extractor(signal_stats)
        if robot is not None:  # the robot-state signals read the state through the description
            extractor.set_robot(robot.extractor_robot())
        self._capture = StepCapture(
            policy, extractor, OnlineBaselines(1), save_hidden=save_hidden, action_dim=action_dim
        )
        self._control_hz = float(control_hz)
        self._env = dict(env or {})
        attrs = recorder_attrs(policy, extractor, observation, control_hz, self._env)
        if robot is not None:
            attrs["robot"] = robot.to_dict()
        self._writer = DatasetWriter(
            path, attrs, state={"extractor": extractor.state_dict()}, overwrite=overwrite
        )
        try:
            have = self._writer.attrs
            if "collect" in have:
                raise DatasetError(
                    f"{path} was written by `salus collect` (its episodes are planned from a seed); "
                    "record into a new dataset"
                )
            if have.get("extractor") != json.loads(json.dumps(attrs["extractor"])):
                raise DatasetError(
                    f"{path} was recorded with other signal statistics or settings ({have.get('extractor')}); "
                    "record with the same signal_stats, or into a new dataset"
                )
            if robot is not None and have.get("robot") != json.loads(json.dumps(attrs["robot"])):
                raise DatasetError(
                    f"{path} was recorded with another robot description ({have.get('robot')}); "
                    "record with the same robot, or into a new dataset"
                )
            for key, want in (
                ("signal_names", list(SIGNAL_NAMES)),
                ("baseline_names", list(ONLINE_BASELINE_NAMES)),
            ):
                if have.get(key) != want:
                    raise DatasetError(
                        f"{path} was written with {key} {have.get(key)!r}; this salus records {want}. "
                        "Record into a new dataset."
                    )
        except BaseException:
            self._writer.close()
            raise
        self.path = self._writer.path
        self._episode: dict[str, Any] | None = None
        self._closed = False

    # ------------------------------------------------------------------ episodes
    @property
    def num_episodes(self) -> int:
        """Episodes committed to the dataset."""
        return self._writer.num_episodes

    @property
    def last_signals(self) -> Any:
        """The signals of the last :meth:`step` (``values`` / ``valid`` (1, 12)): e.g. for
        ``Monitor.observe_signals`` in the same loop."""
        return self._capture.last_signals

    @property
    def recording(self) -> bool:
        """An episode was started and not yet ended."""
        return self._episode is not None

    def start(self, *, seed: int | None = None, task: str | None = None) -> int:
        """Begin an episode; returns the position it will have in the dataset.

        ``seed`` (default: that position) seeds the policy's noise and identifies the episode's
        initial condition (the predictor keeps episodes of one seed in one split part); ``task``
        names the task (default: the observation's instruction).
        """
        if self._closed:
            raise DatasetError(f"the recorder of {self.path} is closed")
        if self._episode is not None:
            raise InvalidInputError(
                f"episode {self.num_episodes} is still being recorded: call end(...) or discard() first"
            )
        position = self.num_episodes
        seed = position if seed is None else int(seed)
        if seed < 0:
            raise InvalidInputError(f"seed must be >= 0, got {seed}")
        self._capture.begin(seed)
        self._episode = {"seed": seed, "task": task, "position": position}
        return position

    def step(self, observation: Any) -> np.ndarray:
        """One control step: the policy acts on ``observation`` (mapped by the observation map);
        internals, signals and baselines are recorded. Returns the action (A,) float32."""
        if self._episode is None:
            raise InvalidInputError("call start() before step(): no episode is being recorded")
        omap = self.observation
        if omap is None:
            omap = ObservationMap.infer(observation, self.task_text, self._robot_state)
        obs, robot_state = map_observation(omap, observation, self.robot)
        if self.observation is None:  # kept once the first observation maps
            self.observation = omap
            if self._writer.num_episodes == 0:
                self._writer.update_attrs({"recorder": {"observation": omap.to_dict()}})
        if self._capture.cameras == () and self.save_images:
            self._capture.cameras = omap.cameras
        if self._episode["task"] is None:
            self._episode["task"] = obs["task"]
        state = obs["state"]
        if self.robot is not None and state.shape != (self.robot.state_dim,):
            raise InvalidInputError(
                f"observation state has shape {state.shape}; the robot description "
                f"{self.robot.name!r} has a {self.robot.state_dim}-value state: expected ({self.robot.state_dim},)"
            )
        length = self._capture.length
        if length and state.shape != self._episode["state_shape"]:
            raise InvalidInputError(
                f"observation state has shape {state.shape} at step {length}; the episode started with "
                f"{self._episode['state_shape']}"
            )
        self._episode["state_shape"] = state.shape
        return self._capture.step(obs, state, robot_state)

    def end(
        self,
        *,
        success: bool | None = None,
        failure_step: int | None = None,
        failure_type: str | None = None,
    ) -> EpisodeRecord:
        """Finish the episode and commit it: ``success=True``; a failure (``failure_step`` N, the
        step where it went wrong, and ``failure_type``; ``success=False`` alone means a failure at
        the last step of type ``unknown``); or no arguments: unlabelled, for ``salus dataset label``."""
        if self._episode is None:
            raise InvalidInputError("end() without start(): no episode is being recorded")
        T = self._capture.length
        if T == 0:
            raise InvalidInputError(
                "the episode has no steps: call step(observation) at least once before end()"
            )
        label = _label(success, failure_step, failure_type, T)
        ep = self._episode
        record = EpisodeRecord(
            steps=self._capture.steps(),
            task=str(ep["task"] or self.task_text or "task"),
            seed=int(ep["seed"]),
            episode_index=int(ep["position"]),
            **label,
        )
        self._writer.append(record)
        self._episode = None
        return record

    def discard(self) -> None:
        """Drop the episode being recorded (nothing is committed)."""
        self._episode = None

    def close(self) -> None:
        """Release the dataset (an episode still being recorded is not committed)."""
        self._episode = None
        if not self._closed:
            self._closed = True
            self._writer.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _label(
    success: bool | None, failure_step: int | None, failure_type: str | None, T: int
) -> dict[str, Any]:
    from salus.collect.envs import UNKNOWN_FAILURE

    if success is True:
        if failure_step is not None or failure_type is not None:
            raise InvalidInputError("a successful episode takes no failure_step or failure_type")
        return {"success": True, "failure_step": -1, "failure_type": "none"}
    if success is None and failure_step is None and failure_type is None:
        return {"success": False, "failure_step": -1, "failure_type": UNLABELLED}
    if success is None and failure_step is None:
        raise InvalidInputError("failure_type without failure_step: say at which step the failure happened")
    step = T - 1 if failure_step is None else int(failure_step)
    if not 0 <= step < T:
        raise InvalidInputError(
            f"failure_step must be in [0, {T}) for an episode of {T} steps, got {failure_step}"
        )
    kind = UNKNOWN_FAILURE if failure_type is None else str(failure_type)
    if kind in ("", "none", UNLABELLED):
        raise InvalidInputError(
            f"failure_type {kind!r} is not a failure type (e.g. drop, miss, collision, unknown)"
        )
    return {"success": False, "failure_step": step, "failure_type": kind}
