"""The Franka Panda tabletop environment (Gymnasium API) with physics failure labels.

Control: every ``step`` sets the end-effector target to the measured end-effector position plus
``action[:3] * POSITION_ACTION_SCALE_M`` metres (clipped to the workspace box), solves damped-least-squares inverse kinematics for the arm joint targets
with the gripper held pointing straight down, and runs ``SUBSTEPS`` physics steps of 2 ms
(20 Hz control). ``action[3] > 0`` closes the gripper.

Episode rules (see docs/simulator.md): an episode terminates on success or on an irrecoverable
event (an object off the table) and is truncated at ``max_steps``. Failure events (drop, miss,
collision) are detected from physics after every control step by ``salus.sim.labels.EventTracker``;
a failed episode is labelled with its first event, or ``timeout`` at the last step.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from salus.errors import InvalidInputError, InvalidNameError
from salus.sim import spec
from salus.sim._mujoco import mujoco
from salus.sim.gl import render_error, require_backend
from salus.sim.labels import EventTracker, Facts
from salus.sim.scene import OBJECT_NAMES, build_model
from salus.sim.spec import (
    CUBE_HALF,
    OBJECT_REGION_HIGH,
    OBJECT_REGION_LOW,
    STATE_HIGH,
    STATE_LOW,
    TABLE_CENTER,
    TABLE_HALF,
)
from salus.sim.tasks import TASK_CHARSET, get_task

__all__ = ["PandaEnv", "SUBSTEPS", "HOME_EE_POS"]

SUBSTEPS = 25  # 25 x 2 ms = one 50 ms control step
HOME_EE_POS = np.array([0.42, 0.0, 0.22])
# Gripper pointing down, fingers closing along world y (rotation matrix of the grip site).
DOWN_MAT = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
NULLSPACE_GAIN = 0.2
FINGER_OPEN = 0.04  # per-finger joint position when open (metres)

# Environments with a live renderer, closed before interpreter shutdown (a GL context freed during
# shutdown raises noisy errors with OSMesa).
_LIVE_ENVS: weakref.WeakSet[PandaEnv] = weakref.WeakSet()


@atexit.register
def _close_renderers() -> None:
    for env in list(_LIVE_ENVS):
        env.close()


# Hooks the perturbation wrappers register (see salus.sim.perturbations).
ResetHook = Callable[["PandaEnv"], None]
StepHook = Callable[["PandaEnv", int], None]


def _quat_of(mat: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.asarray(mat, dtype=np.float64).ravel())
    return quat


DOWN_QUAT = _quat_of(DOWN_MAT)


class PandaEnv(gym.Env[dict[str, Any], np.ndarray]):
    """One Panda tabletop task. Build it with :func:`make_env`.

    Observation: ``image_<camera>`` uint8 ``(H, W, 3)`` per camera (when rendering), ``state``
    float32 ``(22,)`` (layout ``spec.STATE_SLICES``), ``task`` str. Action: float32 ``(4,)`` in
    [-1, 1].
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": spec.CONTROL_HZ}

    def __init__(
        self,
        task: str = "pick_place",
        *,
        image_size: int = spec.DEFAULT_IMAGE_SIZE,
        cameras: Sequence[str] = spec.CAMERA_NAMES,
        render: bool = True,
        max_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.task_spec = get_task(task)
        self.task = task
        if isinstance(cameras, str):
            cameras = (cameras,)
        cameras = tuple(cameras)
        for cam in cameras:
            if cam not in spec.CAMERA_NAMES:
                raise InvalidNameError("camera", cam, spec.CAMERA_NAMES)
        if len(set(cameras)) != len(cameras):
            raise InvalidInputError(f"cameras must be distinct, got {cameras}")
        if not isinstance(image_size, int | np.integer) or not 16 <= int(image_size) <= 512:
            raise InvalidInputError(f"image_size must be an int in [16, 512], got {image_size!r}")
        if max_steps is not None and (not isinstance(max_steps, int | np.integer) or max_steps < 1):
            raise InvalidInputError(f"max_steps must be a positive int or None, got {max_steps!r}")
        if render_mode not in (None, "rgb_array"):
            raise InvalidNameError("render mode", render_mode, ["rgb_array"])
        self.image_size = int(image_size)
        self.cameras = cameras if render else ()
        self.render_enabled = bool(render)
        self.render_mode = render_mode
        self.max_steps = int(max_steps) if max_steps is not None else self.task_spec.max_steps

        self.model = build_model(self.task_spec.n_objects)
        self.data = mujoco.MjData(self.model)
        self._ik_data = mujoco.MjData(self.model)
        self._init_indices()
        self._nominal = self._model_snapshot()
        self._home_q = self._solve_home()

        obs_spaces: dict[str, spaces.Space[Any]] = {}
        for cam in self.cameras:
            obs_spaces[f"image_{cam}"] = spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        obs_spaces["state"] = spaces.Box(STATE_LOW, STATE_HIGH, (spec.STATE_DIM,), np.float32)
        obs_spaces["task"] = spaces.Text(max_length=96, min_length=1, charset=TASK_CHARSET)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Box(-1.0, 1.0, (spec.ACTION_DIM,), np.float32)

        self._renderer: mujoco.Renderer | None = None
        self._reset_hooks: list[ResetHook] = []
        self._pre_step_hooks: list[StepHook] = []
        self._post_step_hooks: list[StepHook] = []
        self._perturbation_records: list[Callable[[], dict[str, Any]]] = []
        self._step = 0
        self._target = HOME_EE_POS.copy()
        self._q_des = self._home_q.copy()
        self._grip_cmd = -1.0
        self._task_variant = 0
        self._goal_xy = np.zeros(2)
        self._tracker: EventTracker | None = None
        self._done = True

    # ------------------------------------------------------------------ model bookkeeping
    def _init_indices(self) -> None:
        m = self.model
        self._arm_qadr = np.array([m.jnt_qposadr[m.joint(f"robot:panda0_joint{i}").id] for i in range(1, 8)])
        self._arm_dadr = np.array([m.jnt_dofadr[m.joint(f"robot:panda0_joint{i}").id] for i in range(1, 8)])
        self._finger_qadr = np.array(
            [m.jnt_qposadr[m.joint(f"robot:panda0_finger_joint{i}").id] for i in (1, 2)]
        )
        self._finger_dadr = np.array(
            [m.jnt_dofadr[m.joint(f"robot:panda0_finger_joint{i}").id] for i in (1, 2)]
        )
        self._grip_site = m.site("grip").id
        self._target_site = m.site("target").id
        self.object_names = OBJECT_NAMES[: self.task_spec.n_objects]
        self.object_bodies = [m.body(n).id for n in self.object_names]
        self.object_geoms = [m.geom(f"{n}_geom").id for n in self.object_names]
        self._obj_qadr = [m.jnt_qposadr[m.joint(f"{n}_joint").id] for n in self.object_names]
        self._obj_dadr = [m.jnt_dofadr[m.joint(f"{n}_joint").id] for n in self.object_names]
        self.distractor_body = m.body("distractor").id
        self.distractor_geom = m.geom("distractor_geom").id
        self._distractor_qadr = m.jnt_qposadr[m.joint("distractor_joint").id]
        self._distractor_dadr = m.jnt_dofadr[m.joint("distractor_joint").id]
        self.table_geom = m.geom("table").id
        body_names = [m.body(i).name for i in range(m.nbody)]
        robot_bodies = {i for i, n in enumerate(body_names) if n.startswith("panda0_")}
        finger_bodies = {m.body("panda0_leftfinger").id, m.body("panda0_rightfinger").id}
        self.robot_geom_mask = np.array([m.geom_bodyid[g] in robot_bodies for g in range(m.ngeom)])
        self.left_finger_mask = np.array(
            [m.geom_bodyid[g] == m.body("panda0_leftfinger").id for g in range(m.ngeom)]
        )
        self.right_finger_mask = np.array(
            [m.geom_bodyid[g] == m.body("panda0_rightfinger").id for g in range(m.ngeom)]
        )
        self.finger_geom_mask = np.array([m.geom_bodyid[g] in finger_bodies for g in range(m.ngeom)])
        self._arm_low = m.jnt_range[[m.joint(f"robot:panda0_joint{i}").id for i in range(1, 8)], 0]
        self._arm_high = m.jnt_range[[m.joint(f"robot:panda0_joint{i}").id for i in range(1, 8)], 1]
        self._cam_ids = {c: m.camera(c).id for c in spec.CAMERA_NAMES}

    def _model_snapshot(self) -> dict[str, np.ndarray]:
        m = self.model
        fields = (
            "body_mass",
            "body_inertia",
            "geom_friction",
            "geom_rgba",
            "cam_pos",
            "cam_quat",
            "geom_size",
        )
        snap = {f: getattr(m, f).copy() for f in fields}
        for f in ("light_diffuse", "light_ambient", "light_specular", "light_dir", "light_pos"):
            snap[f] = getattr(m, f).copy()
        snap["headlight_ambient"] = m.vis.headlight.ambient.copy()
        snap["headlight_diffuse"] = m.vis.headlight.diffuse.copy()
        return snap

    def restore_nominal_model(self) -> None:
        """Undo every model change a perturbation made (masses, friction, cameras, lights, colours)."""
        m = self.model
        for field, value in self._nominal.items():
            if field == "headlight_ambient":
                m.vis.headlight.ambient[:] = value
            elif field == "headlight_diffuse":
                m.vis.headlight.diffuse[:] = value
            else:
                getattr(m, field)[:] = value
        self._set_const_keep_state()

    def _set_const_keep_state(self) -> None:
        """``mj_setConst`` (needed after a mass change) without losing the simulation state."""
        d = self.data
        qpos, qvel, ctrl, act = d.qpos.copy(), d.qvel.copy(), d.ctrl.copy(), d.act.copy()
        mujoco.mj_setConst(self.model, d)
        d.qpos[:], d.qvel[:], d.ctrl[:], d.act[:] = qpos, qvel, ctrl, act

    # ------------------------------------------------------------------ kinematics
    def _ik(self, target: np.ndarray, q0: np.ndarray, iterations: int = 3) -> np.ndarray:
        """Arm joint positions placing the grip site at ``target`` pointing down (DLS, from ``q0``)."""
        m, d = self.model, self._ik_data
        q = q0.copy()
        jacp = np.zeros((3, m.nv))
        jacr = np.zeros((3, m.nv))
        err_local = np.zeros(3)
        cur_quat = np.zeros(4)
        for _ in range(iterations):
            d.qpos[self._arm_qadr] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            err_pos = target - d.site_xpos[self._grip_site]
            mujoco.mju_mat2Quat(cur_quat, d.site_xmat[self._grip_site])
            mujoco.mju_subQuat(err_local, DOWN_QUAT, cur_quat)  # in the site frame
            err_rot = d.site_xmat[self._grip_site].reshape(3, 3) @ err_local
            mujoco.mj_jacSite(m, d, jacp, jacr, self._grip_site)
            jac = np.vstack([jacp[:, self._arm_dadr], jacr[:, self._arm_dadr]])
            err = np.concatenate([err_pos, err_rot])
            jjt = jac @ jac.T + (0.05**2) * np.eye(6)
            dq = jac.T @ np.linalg.solve(jjt, err)
            # Pull the redundant degree of freedom towards the home posture.
            null = np.eye(7) - jac.T @ np.linalg.solve(jjt, jac)
            dq += null @ (NULLSPACE_GAIN * (self._home_q - q))
            q = np.clip(q + dq, self._arm_low, self._arm_high)
        return q

    def _solve_home(self) -> np.ndarray:
        """Joint positions that put the grip site at ``HOME_EE_POS`` pointing down."""
        q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 0.0, 0.0])  # a standard Panda ready pose
        self._home_q = q.copy()
        for _ in range(30):
            q = self._ik(HOME_EE_POS, q, iterations=5)
        return q

    # ------------------------------------------------------------------ public helpers
    @property
    def step_count(self) -> int:
        """Control steps taken in the current episode."""
        return self._step

    @property
    def goal_xy(self) -> np.ndarray:
        """Target position on the table (pick_place, push), metres ``(2,)``."""
        return self._goal_xy.copy()

    @property
    def task_variant(self) -> int:
        """Index of the episode's task text (pick_color: 0 = red cube, 1 = blue cube)."""
        return self._task_variant

    @property
    def task_string(self) -> str:
        return self.task_spec.texts[self._task_variant]

    @property
    def last_facts(self) -> Facts | None:
        """Contact facts measured after the latest step (None right after reset)."""
        return None if self._tracker is None else self._tracker.last_facts

    @property
    def events(self) -> list[tuple[int, str]]:
        """Failure events of the current episode so far, ``[(step, type)]`` (the first labels it)."""
        return [] if self._tracker is None else list(self._tracker.events)

    def carried(self, i: int = 0) -> bool:
        """Whether task object ``i`` is held up in the air by the gripper (see ``labels``)."""
        return bool(self._tracker is not None and self._tracker.carried[i])

    def grip_pos(self) -> np.ndarray:
        """Position of the grip site (between the finger pads), a copy (3,)."""
        return self.data.site_xpos[self._grip_site].copy()

    # ------------------------------------------------------------------ read-only view (labels, perturbations)
    @property
    def gripper_opening(self) -> float:
        """Distance between the fingers: the sum of the two finger joint positions (metres)."""
        return float(self.data.qpos[self._finger_qadr].sum())

    def object_quat(self, i: int = 0) -> np.ndarray:
        """Orientation (w, x, y, z) of task object ``i``, a copy (4,)."""
        adr = self._obj_qadr[i]
        return self.data.qpos[adr + 3 : adr + 7].copy()

    def camera_id(self, camera: str) -> int:
        """MuJoCo id of ``camera`` (one of ``salus.sim.spec.CAMERA_NAMES``)."""
        if camera not in self._cam_ids:
            raise InvalidNameError("camera", camera, tuple(self._cam_ids))
        return int(self._cam_ids[camera])

    @property
    def tracker(self) -> EventTracker | None:
        """The episode's event tracker (failure events, ``label(...)``); None before the first reset."""
        return self._tracker

    def object_pos(self, i: int = 0) -> np.ndarray:
        """Centre of task object ``i`` (metres, world), read from its free joint."""
        adr = self._obj_qadr[i]
        return self.data.qpos[adr : adr + 3].copy()

    def set_object_pose(self, i: int, xy: np.ndarray, yaw: float, z: float = CUBE_HALF) -> None:
        adr = self._obj_qadr[i]
        self.data.qpos[adr : adr + 3] = [xy[0], xy[1], z]
        self.data.qpos[adr + 3 : adr + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        self.data.qvel[self._obj_dadr[i] : self._obj_dadr[i] + 6] = 0.0

    def set_distractor_pose(self, xy: np.ndarray, yaw: float = 0.0) -> None:
        adr = self._distractor_qadr
        half_h = float(self.model.geom_size[self.distractor_geom][1])
        self.data.qpos[adr : adr + 3] = [xy[0], xy[1], half_h]
        self.data.qpos[adr + 3 : adr + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        self.data.qvel[self._distractor_dadr : self._distractor_dadr + 6] = 0.0

    def set_goal(self, xy: np.ndarray) -> None:
        self._goal_xy = np.asarray(xy, dtype=np.float64).copy()
        self.model.site_pos[self._target_site, :2] = self._goal_xy
        if not self.task_spec.has_target:
            self.model.site_pos[self._target_site] = [0.0, -2.0, -0.74]  # hidden under the table

    def on_table(self, xy: np.ndarray, margin: float = 0.0) -> bool:
        return bool(np.all(np.abs(np.asarray(xy)[:2] - TABLE_CENTER) <= TABLE_HALF - margin))

    def add_hooks(
        self,
        *,
        reset: ResetHook | None = None,
        pre_step: StepHook | None = None,
        post_step: StepHook | None = None,
        record: Callable[[], dict[str, Any]] | None = None,
    ) -> Callable[[], None]:
        """Register perturbation hooks: ``reset`` runs after the episode's scene is sampled and
        before the first observation; ``pre_step``/``post_step`` around each control step's physics;
        ``record`` returns the ``{"name", "strength", "params"}`` entry of ``info["perturbations"]``.

        Returns a function that removes exactly these hooks again (a wrapper calls it on close).
        """
        added: list[tuple[list[Any], Any]] = [
            (hooks, fn)
            for hooks, fn in (
                (self._reset_hooks, reset),
                (self._pre_step_hooks, pre_step),
                (self._post_step_hooks, post_step),
                (self._perturbation_records, record),
            )
            if fn is not None
        ]
        for hooks, fn in added:
            hooks.append(fn)

        def remove() -> None:
            for hooks, fn in added:
                for k, h in enumerate(hooks):
                    if h is fn:
                        del hooks[k]
                        break

        return remove

    def perturbation_records(self) -> list[dict[str, Any]]:
        return [rec() for rec in self._perturbation_records]

    # ------------------------------------------------------------------ episode
    def _sample_positions(self, n: int, min_dist: float) -> list[np.ndarray]:
        rng = self.np_random
        points: list[np.ndarray] = []
        while len(points) < n:
            p = rng.uniform(OBJECT_REGION_LOW, OBJECT_REGION_HIGH)
            if all(np.linalg.norm(p - q) >= min_dist for q in points):
                points.append(p)
        return points

    def _sample_scene(self) -> None:
        rng = self.np_random
        name = self.task
        yaws = rng.uniform(-np.pi / 4, np.pi / 4, size=2)
        if name == "push":
            while True:
                cube = rng.uniform([0.42, -0.15], [0.58, 0.15])
                angle = rng.uniform(-np.pi, np.pi)
                goal = cube + rng.uniform(0.10, 0.16) * np.array([np.cos(angle), np.sin(angle)])
                if np.all(goal >= OBJECT_REGION_LOW) and np.all(goal <= OBJECT_REGION_HIGH):
                    break
            self.set_object_pose(0, cube, yaws[0])
            self.set_goal(goal)
        elif name == "pick_place":
            cube, goal = self._sample_positions(2, 0.12)
            self.set_object_pose(0, cube, yaws[0])
            self.set_goal(goal)
        else:
            a, b = self._sample_positions(2, 0.1)
            self.set_object_pose(0, a, yaws[0])
            self.set_object_pose(1, b, yaws[1])
            self.set_goal(np.zeros(2))
        self._task_variant = int(rng.integers(len(self.task_spec.texts)))
        # Robot: home posture plus a little joint noise, gripper open.
        q = self._home_q + rng.uniform(-0.03, 0.03, size=7)
        self.data.qpos[self._arm_qadr] = q
        self.data.qpos[self._finger_qadr] = FINGER_OPEN
        self.data.ctrl[:7] = q
        self.data.ctrl[7:9] = FINGER_OPEN
        self._q_des = q.copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        self.restore_nominal_model()
        mujoco.mj_resetData(self.model, self.data)
        self.set_distractor_pose(np.array([0.0, -2.0]))
        self.data.qpos[self._distractor_qadr + 2] = -0.75 + float(
            self.model.geom_size[self.distractor_geom][1]
        )
        self._sample_scene()
        mujoco.mj_forward(self.model, self.data)
        for hook in self._reset_hooks:
            hook(self)
        self._set_const_keep_state()
        mujoco.mj_forward(self.model, self.data)
        # Let objects settle for one control period with the robot holding still.
        mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS)
        self._step = 0
        self._target = self.grip_pos()
        self._grip_cmd = -1.0
        self._tracker = EventTracker(self)
        self._done = False
        return self._observation(), {"success": False}

    def refresh_observation(self) -> dict[str, Any]:
        """The observation of the current physics state (after a wrapper changed it)."""
        mujoco.mj_forward(self.model, self.data)
        return self._observation()

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if self._tracker is None:
            raise InvalidInputError("call reset() before step()")
        if self._done:
            raise InvalidInputError("the episode has ended; call reset() before step()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (spec.ACTION_DIM,) or not np.all(np.isfinite(a)):
            raise InvalidInputError(f"action must be {spec.ACTION_DIM} finite numbers, got {action!r}")
        a = np.clip(a, -1.0, 1.0)
        step = self._step
        ee = self.grip_pos()
        target = np.clip(ee + a[:3] * spec.POSITION_ACTION_SCALE_M, spec.WORKSPACE_LOW, spec.WORKSPACE_HIGH)
        self._target = target
        self._q_des = self._ik(target, self._q_des)
        self._grip_cmd = float(a[3])
        self.data.ctrl[:7] = self._q_des
        self.data.ctrl[7:9] = 0.0 if a[3] > 0 else FINGER_OPEN
        for hook in self._pre_step_hooks:
            hook(self, step)
        mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS)
        for hook in self._post_step_hooks:
            hook(self, step)
        self._step += 1
        facts = Facts.measure(self)
        tracker = self._tracker
        tracker.update(step, facts, closing=a[3] > 0)
        success = tracker.success
        terminated = success or tracker.irrecoverable
        truncated = not terminated and self._step >= self.max_steps
        info: dict[str, Any] = {"success": bool(success)}
        if terminated or truncated:
            self._done = True
            info["label"] = tracker.label(last_step=step)
            info["perturbations"] = self.perturbation_records()
        reward = 1.0 if success else 0.0
        return self._observation(), reward, bool(terminated), bool(truncated), info

    # ------------------------------------------------------------------ observation
    def state_vector(self) -> np.ndarray:
        d = self.data
        out = np.empty(spec.STATE_DIM, dtype=np.float32)
        out[spec.STATE_SLICES["joint_pos"]] = d.qpos[self._arm_qadr]
        out[spec.STATE_SLICES["joint_vel"]] = d.qvel[self._arm_dadr]
        out[spec.STATE_SLICES["gripper_opening"]] = d.qpos[self._finger_qadr].sum()
        out[spec.STATE_SLICES["ee_pos"]] = d.site_xpos[self._grip_site]
        out[spec.STATE_SLICES["ee_quat"]] = _quat_of(d.site_xmat[self._grip_site])
        return np.clip(out, STATE_LOW, STATE_HIGH)

    def privileged_state(self) -> np.ndarray:
        """Privileged simulator state of the current physics state, float32 ``(PRIVILEGED_DIM,)``.

        Layout ``spec.PRIVILEGED_NAMES``. For the predictor's oracle ceiling only: a deployed
        monitor never sees it.
        """
        d = self.data
        facts = Facts.measure(self)
        out = np.zeros(spec.PRIVILEGED_DIM, dtype=np.float32)
        grip = facts.grip_pos
        for i in range(min(2, len(self.object_bodies))):
            o = 9 * i
            out[o : o + 3] = facts.obj_pos[i] - grip
            dadr = self._obj_dadr[i]
            out[o + 3 : o + 6] = d.qvel[dadr : dadr + 3]
            out[o + 6] = facts.grasped[i]
            out[o + 7] = facts.finger_touch[i]
            out[o + 8] = facts.supported[i]
        obj0 = facts.obj_pos[0, :2]
        out[18:20] = self._goal_xy - obj0
        out[20:22] = d.xpos[self.distractor_body, :2] - obj0
        out[22] = min(facts.robot_table_force, 1e4)
        return out

    def render_camera(self, camera: str, size: int | None = None) -> np.ndarray:
        """An RGB image ``(H, W, 3)`` uint8 from one camera of the current state."""
        size = self.image_size if size is None else int(size)
        if self._renderer is None or self._renderer.height != size:
            require_backend()
            if self._renderer is not None:
                self._renderer.close()
            try:
                self._renderer = mujoco.Renderer(self.model, size, size)
            except Exception as exc:  # noqa: BLE001 - any GL failure means "cannot render"
                raise render_error(exc) from exc
            _LIVE_ENVS.add(self)
        self._renderer.update_scene(self.data, camera=self._cam_ids[camera])
        return self._renderer.render()

    def _observation(self) -> dict[str, Any]:
        obs: dict[str, Any] = {}
        for cam in self.cameras:
            obs[f"image_{cam}"] = self.render_camera(cam)
        obs["state"] = self.state_vector()
        obs["task"] = self.task_string
        return obs

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        if self.render_mode != "rgb_array":
            return None
        return self.render_camera("front")

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
