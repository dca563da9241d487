"""Perturbation wrappers: one ``gymnasium.Wrapper`` per kind, each with a strength in [0, 1].

Every wrapper checks its arguments when built, draws its randomness from the environment's seeded
``np_random`` at ``reset`` (after the episode's scene is sampled, so the same seed gives the same
unperturbed scene), clears its state at every ``reset`` (the environment restores the nominal
model first) and records ``{"name", "strength", "params"}`` into ``info["perturbations"]`` at the
end of the episode. Scene perturbations act through hooks of the base ``PandaEnv`` (so the first
observation already shows them, whatever the wrapping order); observation and action noise wrap
``reset``/``step``. Strength 0 leaves the episode unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from salus._json import to_json
from salus.errors import InvalidInputError, InvalidNameError
from salus.sim import spec
from salus.sim._mujoco import mujoco
from salus.sim.env import PandaEnv
from salus.sim.spec import OBJECT_REGION_HIGH, OBJECT_REGION_LOW, STATE_HIGH, STATE_LOW

__all__ = [
    "Perturbation",
    "ObjectPosePerturbation",
    "ObservationNoise",
    "ActionNoise",
    "PushPerturbation",
    "FrictionPerturbation",
    "MassPerturbation",
    "CameraShiftPerturbation",
    "LightingPerturbation",
    "DistractorPerturbation",
    "PERTURBATIONS",
    "apply_perturbations",
    "parse_perturbation",
    "check_strength",
    "reseed_noise",
]


def check_strength(strength: object) -> float:
    """A strength as a float in [0, 1], or ``InvalidInputError`` saying what is allowed."""
    if isinstance(strength, bool) or not isinstance(strength, int | float | np.integer | np.floating):
        raise InvalidInputError(f"perturbation strength must be a number in [0, 1], got {strength!r}")
    value = float(strength)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"perturbation strength must be in [0, 1], got {strength!r}")
    return value


def _rotate_quat(quat: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """``quat`` (w, x, y, z) rotated by ``angle`` about world ``axis`` (applied on the left)."""
    axis = np.asarray(axis, float) / max(float(np.linalg.norm(axis)), 1e-9)
    rot = np.array([math.cos(angle / 2), *(math.sin(angle / 2) * axis)])
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, rot, np.asarray(quat, float))
    return out


class Perturbation(gym.Wrapper[dict[str, Any], np.ndarray, dict[str, Any], np.ndarray]):
    """Base class: strength check, hook registration and the episode record."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, env: gym.Env[dict[str, Any], np.ndarray], strength: float) -> None:
        self.strength = check_strength(strength)
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, PandaEnv):
            raise InvalidInputError(
                f"{type(self).__name__} wraps salus PandaEnv environments, got {type(base).__name__}"
            )
        self.base: PandaEnv = base
        self.params: dict[str, Any] = {}
        self._remove_hooks = base.add_hooks(
            reset=self._reset_hook,
            pre_step=self._pre_step_hook,
            post_step=self._post_step_hook,
            record=self.record,
        )

    def close(self) -> None:
        """Remove this wrapper's hooks from the base environment, then close it."""
        self._remove_hooks()
        super().close()

    # hooks called by PandaEnv
    def _reset_hook(self, env: PandaEnv) -> None:
        self.params = {}
        if self.strength > 0.0:
            self.on_reset(env, env.np_random)

    def _pre_step_hook(self, env: PandaEnv, step: int) -> None:
        if self.strength > 0.0:
            self.before_physics(env, step)

    def _post_step_hook(self, env: PandaEnv, step: int) -> None:
        if self.strength > 0.0:
            self.after_physics(env, step)

    def on_reset(self, env: PandaEnv, rng: np.random.Generator) -> None:
        """Sample this episode's parameters and change the scene (model or state)."""

    def before_physics(self, env: PandaEnv, step: int) -> None:
        """Called before the physics of control step ``step``."""

    def after_physics(self, env: PandaEnv, step: int) -> None:
        """Called after the physics of control step ``step``."""

    def record(self) -> dict[str, Any]:
        """This wrapper's entry of ``info["perturbations"]``."""
        return {"name": self.name, "strength": self.strength, "params": to_json(self.params, digits=6)}


class ObjectPosePerturbation(Perturbation):
    """Objects start displaced (up to 6 cm x strength) and turned (up to 45 deg x strength)."""

    name = "object_pose"
    description = "initial object positions and yaw shifted beyond the nominal distribution"
    MAX_SHIFT_M = 0.06

    def on_reset(self, env: PandaEnv, rng: np.random.Generator) -> None:
        shifts = []
        for i in range(len(env.object_bodies)):
            pos = env.object_pos(i)
            shift = rng.uniform(-1, 1, size=2) * self.MAX_SHIFT_M * self.strength
            yaw = float(rng.uniform(-1, 1) * (math.pi / 4) * self.strength)
            xy = np.clip(pos[:2] + shift, OBJECT_REGION_LOW - 0.05, OBJECT_REGION_HIGH + 0.05)
            others = [env.object_pos(j)[:2] for j in range(len(env.object_bodies)) if j != i]
            if any(np.linalg.norm(xy - o) < 0.07 for o in others):
                xy, shift = pos[:2], np.zeros(2)
            quat = env.object_quat(i)
            old_yaw = 2 * math.atan2(float(quat[3]), float(quat[0]))
            env.set_object_pose(i, xy, old_yaw + yaw)
            shifts.append({"shift_xy": shift, "yaw": yaw})
        self.params = {"objects": shifts}


class ObservationNoise(Perturbation):
    """Gaussian noise on the state vector and the images (the simulator state is untouched)."""

    name = "obs_noise"
    description = "Gaussian noise on proprioception and image pixels"
    STATE_STD = {
        "joint_pos": 0.05,
        "joint_vel": 0.1,
        "gripper_opening": 0.005,
        "ee_pos": 0.02,
        "ee_quat": 0.03,
    }
    PIXEL_STD = 30.0

    def on_reset(self, env: PandaEnv, rng: np.random.Generator) -> None:
        seed = int(rng.integers(2**31))
        self._rng = np.random.default_rng(seed)
        self.params = {
            "state_std": {k: v * self.strength for k, v in self.STATE_STD.items()},
            "pixel_std": self.PIXEL_STD * self.strength,
            "noise_seed": seed,
        }

    def _noisy(self, obs: dict[str, Any]) -> dict[str, Any]:
        if self.strength == 0.0:
            return obs
        rng = self._rng
        out = dict(obs)
        std = np.zeros(spec.STATE_DIM, dtype=np.float32)
        for key, value in self.STATE_STD.items():
            std[spec.STATE_SLICES[key]] = value * self.strength
        noisy = obs["state"] + rng.normal(size=spec.STATE_DIM) * std
        out["state"] = np.clip(noisy, STATE_LOW, STATE_HIGH).astype(np.float32)  # stay in the space
        for key, value in obs.items():
            if key.startswith("image_"):
                noise = rng.normal(scale=self.PIXEL_STD * self.strength, size=value.shape)
                out[key] = np.clip(value.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        return out

    def reset(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return self._noisy(obs), info

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._noisy(obs), float(reward), terminated, truncated, info


class ActionNoise(Perturbation):
    """Gaussian noise on the position command and random one-step flips of the gripper command."""

    name = "action_noise"
    description = "Gaussian noise on the end-effector command, occasional gripper command flips"
    POSITION_STD = 0.6
    FLIP_PROB = 0.06

    def on_reset(self, env: PandaEnv, rng: np.random.Generator) -> None:
        seed = int(rng.integers(2**31))
        self._rng = np.random.default_rng(seed)
        self.params = {
            "position_std": self.POSITION_STD * self.strength,
            "gripper_flip_prob": self.FLIP_PROB * self.strength,
            "noise_seed": seed,
        }
        self._flips: list[int] = []

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        a = np.array(action, dtype=np.float32).reshape(-1)
        if self.strength > 0.0 and a.shape == (spec.ACTION_DIM,):
            rng = self._rng
            a[:3] += rng.normal(scale=self.POSITION_STD * self.strength, size=3).astype(np.float32)
            if rng.random() < self.FLIP_PROB * self.strength:
                a[3] = -a[3] if a[3] != 0 else 1.0
                self._flips.append(self.base.step_count)
            a = np.clip(a, -1.0, 1.0)
        obs, reward, terminated, truncated, info = self.env.step(a)
        if self.strength > 0.0:
            self.params["gripper_flip_steps"] = list(self._flips)
        return obs, float(reward), terminated, truncated, info


class PushPerturbation(Perturbation):
    """An external horizontal shove on the task object during one control step (50 ms).

    Grasping tasks: a force of ``25 N x strength`` a random 0-9 steps after the object is first
    carried (or at step 40 if it never is); the grasp holds about 20 N, so strong pushes knock the
    object out of the gripper. ``push``: a shove of ``1.25 N x strength`` (a free cube gains up to
    1.25 m/s) at a random step in [8, 40).
    """

    name = "push"
    description = "an external horizontal shove on the object during one control step"
    MAX_FORCE_N = 25.0
    MAX_FORCE_FREE_N = 1.25
    FREE_STEPS = (8, 40)
    FALLBACK_STEP = 40

    def on_reset(self, env: PandaEnv, rng: np.random.Generator) -> None:
        angle = float(rng.uniform(-math.pi, math.pi))
        free = env.task == "push"
        self.params = {
            "trigger": "step" if free else "carried",
            "step": int(rng.integers(*self.FREE_STEPS)) if free else -1,
            "delay": 0 if free else int(rng.integers(0, 10)),
            "direction": [math.cos(angle), math.sin(angle), 0.0],
            "force_n": (self.MAX_FORCE_FREE_N if free else self.MAX_FORCE_N) * self.strength,
        }
        self._active = False

    def _body(self, env: PandaEnv) -> int:
        return env.object_bodies[env.task_variant if env.task == "pick_color" else 0]

    def before_physics(self, env: PandaEnv, step: int) -> None:
        p = self.params
        if p["step"] < 0:  # waiting for the object to be carried
            carried = any(env.carried(i) for i in range(len(env.object_bodies)))
            if carried or step >= self.FALLBACK_STEP:
                p["step"] = step + (p["delay"] if carried else 0)
        if step == p["step"]:
            env.data.xfrc_applied[self._body(env), :3] = p["force_n"] * np.asarray(p["direction"])
            self._active = True

    def after_physics(self, env: PandaEnv, step: int) -> None:
        if self._active:
            env.data.xfrc_applied[self._body(env), :] = 0.0
            self._active = False


class FrictionPerturbation(Perturbation):
    """Slipperier objects: sliding friction times ``exp(-strength x U(3.5, 5.5))``.

    Object geoms have contact priority, so their friction is the one used in all their contacts.
    """

    name = "friction"
    description = "object sliding friction reduced"

    def on_reset(self, env: PandaEnv, rng: np.random.Generator) -> None:
        factor = math.exp(-self.strength * float(rng.uniform(3.5, 5.5)))
        for g in env.object_geoms:
            env.model.geom_friction[g, 0] *= factor
        self.params = {"factor": factor}


class MassPerturbation(Perturbation):
    """Heavier objects: mass and inertia times a factor in [1 + 20 s, 1 + 60 s]."""

    name = "mass"
    description = "object mass (and inertia) increased"

    def on_reset(self, env: PandaEnv, rng: np.random.Generator) -> None:
        factor = 1.0 + self.strength * float(rng.uniform(20.0, 60.0))
        for b in env.object_bodies:
            env.model.body_mass[b] *= factor
            env.model.body_inertia[b] *= factor
        self.params = {"factor": factor}  # PandaEnv.reset runs mj_setConst after the hooks


class CameraShiftPerturbation(Perturbation):
    """Both cameras moved (front up to 8 cm, wrist up to 1.5 cm) and turned (up to 0.15 / 0.1 rad)."""

    name = "camera_shift"
    description = "camera positions and orientations shifted"
    LIMITS = {"front": (0.08, 0.15), "wrist": (0.015, 0.10)}

    def on_reset(self, env: PandaEnv, rng: np.random.Generator) -> None:
        m = env.model
        for cam, (max_shift, max_angle) in self.LIMITS.items():
            cid = env.camera_id(cam)
            shift = rng.uniform(-1, 1, size=3) * max_shift * self.strength
            axis = rng.normal(size=3)
            angle = float(rng.uniform(-1, 1) * max_angle * self.strength)
            m.cam_pos[cid] += shift
            m.cam_quat[cid] = _rotate_quat(m.cam_quat[cid], axis, angle)
            self.params[cam] = {"shift": shift, "axis": axis / np.linalg.norm(axis), "angle": angle}


class LightingPerturbation(Perturbation):
    """Light brightness, colour and direction changed."""

    name = "lighting"
    description = "light intensity, colour and direction changed"

    def on_reset(self, env: PandaEnv, rng: np.random.Generator) -> None:
        m = env.model
        s = self.strength
        brightness = float(rng.uniform(1 - 0.6 * s, 1 + 0.35 * s))
        tint = rng.uniform(1 - 0.25 * s, 1 + 0.25 * s, size=3)
        ambient = float(rng.uniform(1 - 0.7 * s, 1 + 0.3 * s))
        axis = rng.normal(size=3)
        angle = float(rng.uniform(-1, 1) * 0.6 * s)
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, _rotate_quat(np.array([1.0, 0, 0, 0]), axis, angle))
        m.light_diffuse[:] = np.clip(m.light_diffuse * brightness * tint, 0, 1)
        m.light_dir[:] = m.light_dir @ rot.reshape(3, 3).T
        m.vis.headlight.ambient[:] = np.clip(m.vis.headlight.ambient * ambient * tint, 0, 1)
        m.vis.headlight.diffuse[:] = np.clip(m.vis.headlight.diffuse * brightness * tint, 0, 1)
        self.params = {"brightness": brightness, "tint": tint, "ambient": ambient, "dir_angle": angle}


class DistractorPerturbation(Perturbation):
    """An extra object on the table, closer to the task object the stronger the perturbation."""

    name = "distractor"
    description = "an extra object placed on the table near the task object"
    COLOURS = {"purple": (0.6, 0.2, 0.7, 1.0), "orange": (0.95, 0.5, 0.1, 1.0), "cyan": (0.1, 0.75, 0.8, 1.0)}

    def on_reset(self, env: PandaEnv, rng: np.random.Generator) -> None:
        anchor = env.object_pos(env.task_variant if env.task == "pick_color" else 0)[:2]
        distance = 0.18 - 0.125 * self.strength  # 5.5 cm (touching) at strength 1
        avoid = [env.object_pos(i)[:2] for i in range(len(env.object_bodies))]
        if env.task_spec.has_target:
            avoid.append(env.goal_xy)
        xy = None
        for _ in range(32):
            angle = float(rng.uniform(-math.pi, math.pi))
            cand = anchor + distance * np.array([math.cos(angle), math.sin(angle)])
            if env.on_table(cand, margin=0.08) and all(np.linalg.norm(cand - p) >= 0.05 for p in avoid):
                xy = cand
                break
        if xy is None:
            self.params = {"placed": False}
            return
        colour = list(self.COLOURS)[int(rng.integers(len(self.COLOURS)))]
        env.model.geom_rgba[env.distractor_geom] = self.COLOURS[colour]
        env.set_distractor_pose(xy, float(rng.uniform(-math.pi, math.pi)))
        self.params = {"placed": True, "xy": xy, "distance": distance, "colour": colour}


PERTURBATIONS: dict[str, type[Perturbation]] = {
    cls.name: cls
    for cls in (
        ObjectPosePerturbation,
        ObservationNoise,
        ActionNoise,
        PushPerturbation,
        FrictionPerturbation,
        MassPerturbation,
        CameraShiftPerturbation,
        LightingPerturbation,
        DistractorPerturbation,
    )
}


def parse_perturbation(text: str) -> tuple[str, float]:
    """``"push=0.5"`` -> ``("push", 0.5)``, checking the name and the strength."""
    if not isinstance(text, str) or text.count("=") != 1:
        raise InvalidInputError(f"perturbation must look like NAME=STRENGTH (e.g. push=0.5), got {text!r}")
    name, value = (part.strip() for part in text.split("="))
    if name not in PERTURBATIONS:
        raise InvalidNameError("perturbation", name, PERTURBATIONS)
    try:
        strength = float(value)
    except ValueError:
        raise InvalidInputError(
            f"perturbation strength must be a number in [0, 1], got {value!r} in {text!r}"
        ) from None
    return name, check_strength(strength)


def reseed_noise(env: gym.Env[dict[str, Any], np.ndarray], seed: int) -> list[str]:
    """Give every active observation- and action-noise wrapper of ``env`` a fresh generator from
    ``seed`` (one independent stream per wrapper), from the next step on: the world noise of a
    continuation of an episode (the Monte-Carlo ceiling), whose past is replayed with the episode's
    own streams. Returns the names of the wrappers re-seeded (outermost first).

    Other perturbations draw everything at ``reset`` (e.g. the push's step and direction); those
    draws are part of the episode and cannot be redrawn after it started.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InvalidInputError(f"seed must be an int >= 0, got {seed!r}")
    found: list[ObservationNoise | ActionNoise] = []
    layer: Any = env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, ObservationNoise | ActionNoise) and layer.strength > 0.0:
            found.append(layer)
        layer = layer.env
    streams = np.random.SeedSequence(int(seed)).spawn(len(found))
    for wrapper, stream in zip(found, streams, strict=True):
        wrapper._rng = np.random.default_rng(stream)
    return [w.name for w in found]


def apply_perturbations(
    env: gym.Env[dict[str, Any], np.ndarray], perturbations: Iterable[tuple[str, float] | str] | Sequence[Any]
) -> gym.Env[dict[str, Any], np.ndarray]:
    """Wrap ``env`` in one wrapper per ``(name, strength)`` (or ``"name=strength"``), in order."""
    parsed: list[tuple[str, float]] = []
    for item in perturbations:
        if isinstance(item, str):
            parsed.append(parse_perturbation(item))
            continue
        try:
            name, strength = item
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"each perturbation must be (name, strength) or 'name=strength', got {item!r}"
            ) from None
        if name not in PERTURBATIONS:
            raise InvalidNameError("perturbation", name, PERTURBATIONS)
        parsed.append((name, check_strength(strength)))
    names = [n for n, _ in parsed]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"each perturbation may be applied once, got {names}")
    for name, strength in parsed:
        env = PERTURBATIONS[name](env, strength)
    return env
