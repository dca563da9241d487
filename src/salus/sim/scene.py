"""The MuJoCo scene: our own tabletop XML around the Franka chain from gymnasium-robotics.

Edits made through ``MjSpec`` before compiling: gravity compensation on every robot body (so the
joint position servos track without sag), a ``grip`` site between the finger pads (the end
effector of the state vector and of the controller), a wrist camera, and stiffer arm servos.
"""

from __future__ import annotations

import numpy as np

from salus.sim._mujoco import mujoco
from salus.sim.assets import franka_vfs
from salus.sim.spec import CUBE_HALF, TABLE_CENTER, TABLE_HALF
from salus.sim.tasks import COLOURS

__all__ = [
    "CUBE_HALF",
    "TABLE_HALF",
    "TABLE_CENTER",
    "OBJECT_NAMES",
    "ROBOT_BODY_PREFIX",
    "build_model",
    "look_at_quat",
]

CUBE_MASS = 0.05  # kg
OBJECT_NAMES = ("obj_a", "obj_b")
ROBOT_BODY_PREFIX = "panda0_"
GRIP_SITE_Z = 0.2454  # along link7's z: between the finger pads, 1.5 cm above the finger tips
ARM_DAMPING = 40.0
FOREARM_DAMPING = 4.0
FINGER_DAMPING = 30.0
FINGER_ARMATURE = 0.5
FRONT_CAMERA_POS = np.array([1.05, 0.0, 0.5])
FRONT_CAMERA_TARGET = np.array([0.45, 0.0, 0.03])
# Wrist camera in link7's frame: beside the hand, across the finger axis, looking past the tips.
WRIST_CAMERA_POS = np.array([0.08, -0.08, 0.15])
WRIST_CAMERA_TARGET = np.array([0.0, 0.0, 0.30])
WRIST_UP = (0.7071, 0.7071, 0.0)


def look_at_quat(
    pos: np.ndarray, target: np.ndarray, up: tuple[float, float, float] = (0.0, 0.0, 1.0)
) -> np.ndarray:
    """Quaternion (w, x, y, z) of a MuJoCo camera at ``pos`` looking at ``target`` (image up ~ ``up``)."""
    forward = np.asarray(target, float) - np.asarray(pos, float)
    forward /= np.linalg.norm(forward)
    x_axis = np.cross(forward, up)
    x_axis /= np.linalg.norm(x_axis)
    z_axis = -forward
    y_axis = np.cross(z_axis, x_axis)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.stack([x_axis, y_axis, z_axis], axis=1).ravel())
    return quat


def _scene_xml(n_objects: int, colours: tuple[str, str], fast_render: bool = True) -> str:
    cubes = []
    for i in range(n_objects):
        rgba = " ".join(f"{c:g}" for c in COLOURS[colours[i]])
        cubes.append(
            f"""
    <body name="{OBJECT_NAMES[i]}" pos="{0.5 + 0.1 * i} 0 {CUBE_HALF}">
      <freejoint name="{OBJECT_NAMES[i]}_joint"/>
      <geom name="{OBJECT_NAMES[i]}_geom" type="box" size="{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}"
            mass="{CUBE_MASS}" rgba="{rgba}" friction="1 0.01 0.001" condim="4" priority="1"/>
    </body>"""
        )
    cam_quat = " ".join(f"{q:.6f}" for q in look_at_quat(FRONT_CAMERA_POS, FRONT_CAMERA_TARGET))
    cam_pos = " ".join(f"{p:g}" for p in FRONT_CAMERA_POS)
    tx, ty = TABLE_CENTER
    hx, hy = TABLE_HALF
    return f"""
<mujoco model="salus_panda">
  <include file="assets.xml"/>
  <compiler angle="radian" meshdir="franka_assets/meshes" autolimits="true"/>
  <option timestep="0.002" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.45 0.45 0.45" specular="0.05 0.05 0.05"/>
    <quality shadowsize="{0 if fast_render else 4096}" offsamples="{0 if fast_render else 4}"/>
    <global offwidth="512" offheight="512"/>
    <map znear="0.01"/>
  </visual>
  <asset>
    <texture name="floor_tex" type="2d" builtin="checker" rgb1="0.25 0.27 0.3" rgb2="0.2 0.22 0.25"
             width="64" height="64"/>
    <material name="floor_mat" texture="floor_tex" texrepeat="8 8"/>
    <material name="table_mat" rgba="0.62 0.5 0.38 1"/>
  </asset>
  <worldbody>
    <light name="key" directional="true" castshadow="{"false" if fast_render else "true"}" pos="0.5 0.5 2" dir="-0.2 -0.3 -1"
           diffuse="0.55 0.55 0.55" specular="0.1 0.1 0.1"/>
    <geom name="floor" type="plane" pos="0 0 -0.75" size="3 3 0.1" material="floor_mat"/>
    <geom name="table" type="box" pos="{tx} {ty} -0.02" size="{hx} {hy} 0.02" material="table_mat"
          friction="1 0.005 0.0001"/>
    <camera name="front" pos="{cam_pos}" quat="{cam_quat}" fovy="48"/>
    <site name="target" type="cylinder" pos="0.5 0.2 0.0005" size="0.03 0.0005" rgba="0.1 0.8 0.2 0.6"
          group="0"/>
    <body name="robot_base" pos="0 0 0">
      <include file="chain.xml"/>
    </body>
    {"".join(cubes)}
    <body name="distractor" pos="0 -2 -0.7">
      <freejoint name="distractor_joint"/>
      <geom name="distractor_geom" type="cylinder" size="0.025 0.03" mass="0.08" rgba="0.6 0.2 0.7 1"
            friction="1 0.01 0.001" condim="4" priority="1"/>
    </body>
  </worldbody>
  <include file="actuator.xml"/>
</mujoco>
"""


def build_model(
    n_objects: int, colours: tuple[str, str] = ("red", "blue"), *, fast_render: bool = True
) -> mujoco.MjModel:
    """Compile the scene with ``n_objects`` cubes (1 or 2) coloured ``colours``.

    ``fast_render=False`` restores shadows, multisampling and the full display meshes (only for
    the benchmark's comparison).
    """
    include, assets = franka_vfs(simplified=fast_render)
    spec = mujoco.MjSpec.from_string(
        _scene_xml(n_objects, colours, fast_render), include=include, assets=assets
    )
    for body in spec.bodies:
        if body.name.startswith(ROBOT_BODY_PREFIX):
            body.gravcomp = 1.0
    # Lighter joint damping than the kitchen model's (100 / 10) so the arm follows its targets
    # within a control step or two.
    for joint in spec.joints:
        if joint.name.startswith("robot:panda0_joint"):
            joint.damping = [ARM_DAMPING if int(joint.name[-1]) <= 4 else FOREARM_DAMPING, 0.0, 0.0]
        elif joint.name.startswith("robot:panda0_finger_joint"):
            joint.damping = [FINGER_DAMPING, 0.0, 0.0]
            joint.armature = FINGER_ARMATURE
    link7 = spec.body("panda0_link7")
    spec.site("end_effector").group = 4  # the kitchen model's marker sphere: hide it from cameras
    link7.add_site(
        name="grip", pos=[0, 0, GRIP_SITE_Z], quat=[0.92388, 0, 0, -0.382683], size=[0.005] * 3, group=4
    )
    # Wrist camera on the hand, beside the fingers, looking along the gripper (link7 +z).
    link7.add_camera(
        name="wrist",
        pos=WRIST_CAMERA_POS,
        quat=look_at_quat(WRIST_CAMERA_POS, WRIST_CAMERA_TARGET, WRIST_UP),
        fovy=70,
    )
    model = spec.compile()
    return model
