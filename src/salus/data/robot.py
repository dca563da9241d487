"""The robot description a dataset and a predictor checkpoint carry (``salus.data.RobotSpec``).

A :class:`RobotSpec` says what the step key ``state`` of a robot holds: its width and optional
entry names, which entries are joint positions and commanded joint targets, the joint limits, the
end-effector position entries with the workspace box and the metres one unit of action moves the
end effector, the action width and the control rate. Our MuJoCo Franka Panda is one instance,
:func:`panda_robot` (built from ``salus.sim.spec``); a Gymnasium robot collected with
``salus collect --env`` gets one from the dataset's attributes (:func:`robot_from_attrs`), and the
user may give one (``Recorder(..., robot=RobotSpec(...))``). Training stores it in the checkpoint,
and ``salus.Monitor`` reads the state layout from there.

Cheap to import: numpy and the standard library only (``salus.sim.spec`` is imported lazily).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from salus.errors import InvalidInputError

__all__ = ["RobotSpec", "panda_robot", "robot_from_attrs", "dataset_robot", "load_robot", "ROBOT_SIGNALS"]

#: The signals that read the robot state (not only the policy's internals).
ROBOT_SIGNALS = ("execution_mismatch", "constraint_margin")


def _indices(value: Sequence[int], name: str, width: int) -> tuple[int, ...]:
    try:
        out = tuple(int(i) for i in value)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"RobotSpec.{name} must be a list of state indices, got {value!r:.80}"
        ) from None
    if any(isinstance(i, bool) or not isinstance(i, int | np.integer) for i in value):
        raise InvalidInputError(f"RobotSpec.{name} must be integers, got {list(value)!r:.80}")
    bad = [i for i in out if not 0 <= i < width]
    if bad:
        raise InvalidInputError(
            f"RobotSpec.{name} index {bad[0]} lies outside the state (state_dim {width}: 0 .. {width - 1})"
        )
    if len(set(out)) != len(out):
        raise InvalidInputError(f"RobotSpec.{name} lists an index twice: {list(out)}")
    return out


def _floats(value: Sequence[float], name: str, n: int, what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"RobotSpec.{name} must be a list of numbers, got {value!r:.80}") from None
    if len(out) != n:
        raise InvalidInputError(f"RobotSpec.{name} has {len(out)} values but {what} has {n}")
    if not all(math.isfinite(v) for v in out):
        raise InvalidInputError(f"RobotSpec.{name} must be finite, got {list(out)}")
    return out


@dataclass(frozen=True)
class RobotSpec:
    """What a robot's ``state`` vector holds (see the module docstring); validated on creation.

    ``state_dim``: width of ``state``. ``state_names``: one name per entry (optional).
    ``joint_pos`` / ``joint_target``: state indices of the joint positions and of the commanded
    joint targets (same length). ``joint_lower`` / ``joint_upper``: limits of the ``joint_pos``
    entries. ``ee_pos``: the 3 state indices of the end-effector position, ``workspace_low`` /
    ``workspace_high`` its allowed box, ``ee_action_scale`` the metres per unit of ``action[:3]``.
    ``action_dim``: action width (None: not known). ``control_hz``: control steps per second.
    """

    state_dim: int
    control_hz: float = 20.0
    action_dim: int | None = None
    name: str = "robot"
    state_names: tuple[str, ...] | None = None
    joint_pos: tuple[int, ...] = ()
    joint_target: tuple[int, ...] = ()
    joint_lower: tuple[float, ...] = ()
    joint_upper: tuple[float, ...] = ()
    ee_pos: tuple[int, ...] = ()
    workspace_low: tuple[float, ...] = ()
    workspace_high: tuple[float, ...] = ()
    ee_action_scale: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        d = self.state_dim
        if isinstance(d, bool) or not isinstance(d, int | np.integer) or int(d) < 1:
            raise InvalidInputError(f"RobotSpec.state_dim must be a positive integer, got {d!r}")
        d = int(d)
        object.__setattr__(self, "state_dim", d)
        hz = self.control_hz
        if (
            isinstance(hz, bool)
            or not isinstance(hz, int | float | np.number)
            or not (0 < float(hz) < math.inf)
        ):
            raise InvalidInputError(f"RobotSpec.control_hz must be a positive number, got {hz!r}")
        object.__setattr__(self, "control_hz", float(hz))
        a = self.action_dim
        if a is not None:
            if isinstance(a, bool) or not isinstance(a, int | np.integer) or int(a) < 1:
                raise InvalidInputError(f"RobotSpec.action_dim must be a positive integer or None, got {a!r}")
            object.__setattr__(self, "action_dim", int(a))
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInputError(f"RobotSpec.name must be a non-empty string, got {self.name!r}")
        if self.state_names is not None:
            names = tuple(self.state_names)
            if len(names) != d or not all(isinstance(n, str) and n for n in names):
                raise InvalidInputError(
                    f"RobotSpec.state_names must be {d} non-empty strings (one per state entry), got {len(names)}"
                )
            if len(set(names)) != len(names):
                raise InvalidInputError("RobotSpec.state_names must be distinct")
            object.__setattr__(self, "state_names", names)
        jp = _indices(self.joint_pos, "joint_pos", d)
        object.__setattr__(self, "joint_pos", jp)
        jt = _indices(self.joint_target, "joint_target", d)
        if jt and len(jt) != len(jp):
            raise InvalidInputError(
                f"RobotSpec.joint_target has {len(jt)} entries but joint_pos has {len(jp)} (one target per joint)"
            )
        object.__setattr__(self, "joint_target", jt)
        if self.joint_lower or self.joint_upper:
            if not jp:
                raise InvalidInputError(
                    "RobotSpec.joint_lower / joint_upper need joint_pos (the entries they limit)"
                )
            lo = _floats(self.joint_lower, "joint_lower", len(jp), "joint_pos")
            hi = _floats(self.joint_upper, "joint_upper", len(jp), "joint_pos")
            bad = [j for j in range(len(jp)) if not lo[j] < hi[j]]
            if bad:
                raise InvalidInputError(
                    f"RobotSpec joint {bad[0]}: joint_lower {lo[bad[0]]} must be below joint_upper {hi[bad[0]]}"
                )
            object.__setattr__(self, "joint_lower", lo)
            object.__setattr__(self, "joint_upper", hi)
        ee = _indices(self.ee_pos, "ee_pos", d)
        if ee and len(ee) != 3:
            raise InvalidInputError(f"RobotSpec.ee_pos must name 3 state indices (x, y, z), got {len(ee)}")
        object.__setattr__(self, "ee_pos", ee)
        if self.workspace_low or self.workspace_high:
            if not ee:
                raise InvalidInputError("RobotSpec.workspace_low / workspace_high need ee_pos")
            wlo = _floats(self.workspace_low, "workspace_low", 3, "ee_pos")
            whi = _floats(self.workspace_high, "workspace_high", 3, "ee_pos")
            if not all(x < y for x, y in zip(wlo, whi, strict=True)):
                raise InvalidInputError(f"RobotSpec.workspace_low {wlo} must be below workspace_high {whi}")
            object.__setattr__(self, "workspace_low", wlo)
            object.__setattr__(self, "workspace_high", whi)
        s = self.ee_action_scale
        if s is not None:
            if not ee:
                raise InvalidInputError("RobotSpec.ee_action_scale needs ee_pos")
            if (
                isinstance(s, bool)
                or not isinstance(s, int | float | np.number)
                or not 0 < float(s) < math.inf
            ):
                raise InvalidInputError(f"RobotSpec.ee_action_scale must be a positive number, got {s!r}")
            object.__setattr__(self, "ee_action_scale", float(s))
        if not isinstance(self.extra, Mapping):
            raise InvalidInputError(f"RobotSpec.extra must be a dict, got {type(self.extra).__name__}")
        object.__setattr__(self, "extra", json.loads(json.dumps(dict(self.extra))))

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RobotSpec:
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"a robot description must be a JSON object, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"unknown robot description field(s) {unknown}; valid: {sorted(known)}")
        if "state_dim" not in data:
            raise InvalidInputError("a robot description needs 'state_dim' (the width of the state vector)")
        kw: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        try:
            return cls(**kw)
        except InvalidInputError:
            raise
        except (TypeError, ValueError) as exc:  # a field of the wrong type (e.g. a number for a list)
            raise InvalidInputError(f"malformed robot description: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RobotSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"the robot description is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    # ------------------------------------------------------------------ signals
    @cached_property  # the fields are frozen: computed once (the monitor asks at every step)
    def reads_panda_layout(self) -> bool:
        """The state is the ``salus.sim.spec`` Panda layout the signal extractor reads (its joint
        positions, limits, end-effector entries, workspace and action scale are the Panda's)."""
        p = panda_robot()
        return (
            self.state_dim == p.state_dim
            and all(
                getattr(self, f) == getattr(p, f)
                for f in (
                    "joint_pos",
                    "joint_lower",
                    "joint_upper",
                    "ee_pos",
                    "workspace_low",
                    "workspace_high",
                )
            )
            and self.ee_action_scale == p.ee_action_scale
        )

    @cached_property
    def describes_signals(self) -> bool:
        """The description has entries a robot-state signal reads: joint limits or a workspace
        (``constraint_margin``), the end effector with its action scale or commanded joint targets
        (``execution_mismatch``)."""
        return bool(self.joint_lower or self.workspace_low or self.ee_action_scale or self.joint_target)

    def extractor_robot(self) -> RobotSpec | None:
        """The description the signal extractor takes (``SignalExtractor(B, robot=...)``): None for
        the Panda layout (the extractor's own) and for a robot it has nothing to read of."""
        return self if self.describes_signals and not self.reads_panda_layout else None

    def signal_state(self, state: np.ndarray) -> np.ndarray:
        """The robot state the signal extractor reads for states (B, state_dim): the state itself
        on the Panda layout or with a description the signals read (:attr:`describes_signals`),
        else (B, 22) NaN: the robot-state signals come out invalid, exactly as collection records
        them for such a robot (``salus.collect.recorder.NO_ROBOT_STATE``)."""
        state = np.asarray(state, dtype=np.float32)
        if self.reads_panda_layout or self.describes_signals:
            return state
        return np.full((state.shape[0], 22), np.nan, dtype=np.float32)

    def invalid_signals(self) -> dict[str, str]:
        """The robot-state signals this description cannot support, with the reason."""
        if self.reads_panda_layout:
            return {}
        out = {}
        if not (self.ee_pos and self.ee_action_scale) and not self.joint_target:
            out["execution_mismatch"] = (
                f"robot {self.name!r} describes neither the end-effector position with its action scale "
                "(ee_pos, ee_action_scale) nor commanded joint targets (joint_target): commanded vs "
                "achieved motion is not computed"
            )
        if not self.joint_lower and not self.workspace_low:
            out["constraint_margin"] = (
                f"robot {self.name!r} describes neither joint limits (joint_pos, joint_lower, joint_upper) "
                "nor a workspace (ee_pos, workspace_low, workspace_high): the distance to the limits is "
                "not computed"
            )
        return out

    def check_state(self, state: Any, what: str = "state") -> None:
        """``InvalidInputError`` naming the expected and received shapes unless ``state`` is
        (state_dim,) or (B, state_dim)."""
        shape = np.shape(state)
        if not shape or shape[-1] != self.state_dim or len(shape) > 2:
            raise InvalidInputError(
                f"{what} has shape {shape}; robot {self.name!r} has a {self.state_dim}-value state: "
                f"expected ({self.state_dim},) or (B, {self.state_dim})"
            )


def panda_robot() -> RobotSpec:
    """Our MuJoCo Franka Panda (``salus.sim.spec``) as a :class:`RobotSpec`."""
    global _PANDA
    if _PANDA is None:
        from salus.sim import spec

        names = tuple(
            f"{part}_{i}" if sl.stop - sl.start > 1 else part
            for part, sl in spec.STATE_SLICES.items()
            for i in range(sl.stop - sl.start)
        )
        _PANDA = RobotSpec(
            state_dim=spec.STATE_DIM,
            control_hz=float(spec.CONTROL_HZ),
            action_dim=spec.ACTION_DIM,
            name="franka_panda",
            state_names=names,
            joint_pos=tuple(range(spec.STATE_SLICES["joint_pos"].start, spec.STATE_SLICES["joint_pos"].stop)),
            joint_lower=tuple(float(x) for x in spec.JOINT_LOWER),
            joint_upper=tuple(float(x) for x in spec.JOINT_UPPER),
            ee_pos=tuple(range(spec.STATE_SLICES["ee_pos"].start, spec.STATE_SLICES["ee_pos"].stop)),
            workspace_low=tuple(float(x) for x in spec.WORKSPACE_LOW),
            workspace_high=tuple(float(x) for x in spec.WORKSPACE_HIGH),
            ee_action_scale=float(spec.POSITION_ACTION_SCALE_M),
        )
    return _PANDA


_PANDA: RobotSpec | None = None


def robot_from_attrs(attrs: Mapping[str, Any], state_width: int | None = None) -> RobotSpec | None:
    """The robot description of a dataset from its root attributes: the ``robot`` attribute when
    the user gave one; the Panda for our simulator (``env.simulator == "salus.sim"``); else one
    built from what collection stores (``env.state_dim``, ``control_hz``, ``env.action_shape``),
    or from ``state_width`` (the width of the stored ``state``). None when nothing says."""
    if attrs.get("robot"):
        return RobotSpec.from_dict(attrs["robot"])
    env = attrs.get("env") if isinstance(attrs.get("env"), Mapping) else {}
    assert isinstance(env, Mapping)
    hz = float(attrs.get("control_hz") or env.get("control_hz") or 20.0)
    if env.get("simulator") == "salus.sim":
        return panda_robot()
    width = env.get("state_dim") or state_width
    if not width:
        return None
    recorder = attrs.get("recorder") if isinstance(attrs.get("recorder"), Mapping) else {}
    assert isinstance(recorder, Mapping)
    mapping = env.get("observation") or recorder.get("observation") or {}
    state_keys = list(mapping.get("state") or ()) if isinstance(mapping, Mapping) else []
    robot_key = mapping.get("robot_state") if isinstance(mapping, Mapping) else None
    if int(width) == panda_robot().state_dim and robot_key and state_keys == [robot_key]:
        # the policy's state is the Panda-layout robot state the signals read (e.g. the recorder's
        # inferred mapping of a 22-value ``state``): the Panda's layout at this dataset's rate
        return replace(panda_robot(), control_hz=hz)
    shape = env.get("action_shape") or []
    action_dim = int(shape[0]) if len(shape) == 1 else None
    # the environment's id (``env.spec.id``, or the factory's function name), then older datasets' spec
    name = str(env.get("env_id") or env.get("robot") or env.get("env") or env.get("simulator") or "robot")
    return RobotSpec(state_dim=int(width), control_hz=hz, action_dim=action_dim, name=name)


def dataset_robot(dataset: Any) -> RobotSpec | None:
    """The robot description of a :class:`~salus.data.SalusDataset` (:func:`robot_from_attrs` with
    the width of its stored ``state``); None when it has neither attributes nor ``state``."""
    attrs = dict(getattr(dataset, "attrs", {}) or {})
    spec = (getattr(dataset, "schema", None) or {}).get("state") or {}
    shape = spec.get("shape") if isinstance(spec, Mapping) else None
    width = int(np.prod(shape)) if isinstance(shape, list) and shape else None
    robot = robot_from_attrs(attrs, width)
    if robot is not None and width is not None and robot.state_dim != width:
        raise InvalidInputError(
            f"{getattr(dataset, 'path', 'the dataset')}: its robot description has state_dim "
            f"{robot.state_dim} but the stored state has {width} values per step"
        )
    return robot


def load_robot(path: str | Path) -> RobotSpec:
    """A robot description from a JSON file (``RobotSpec.to_json``)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InvalidInputError(f"cannot read the robot description {p}: {exc}") from None
    return RobotSpec.from_json(text)
