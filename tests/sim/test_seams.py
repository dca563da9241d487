"""The simulator's seams: a public read-only view of PandaEnv, and wrappers that remove their hooks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from salus.errors import InvalidNameError
from salus.sim import make_env
from salus.sim.labels import EventTracker
from salus.sim.perturbations import apply_perturbations

SIM = Path(__file__).resolve().parents[2] / "src" / "salus" / "sim"


def test_public_view_matches_the_physics_state():
    env = make_env("pick_place")
    try:
        assert env.tracker is None
        env.reset(seed=3)
        assert isinstance(env.tracker, EventTracker)
        d = env.data
        assert env.gripper_opening == pytest.approx(float(d.qpos[env._finger_qadr].sum()))
        assert env.gripper_opening == pytest.approx(0.08)  # both fingers open at 4 cm
        adr = env._obj_qadr[0]
        quat = env.object_quat(0)
        np.testing.assert_array_equal(quat, d.qpos[adr + 3 : adr + 7])
        quat[:] = 0.0  # a copy: the simulator state is untouched
        assert np.linalg.norm(d.qpos[adr + 3 : adr + 7]) == pytest.approx(1.0)
        assert env.camera_id("front") != env.camera_id("wrist")
        with pytest.raises(InvalidNameError, match="front"):
            env.camera_id("top")
    finally:
        env.close()


def test_wrappers_remove_their_hooks_on_close():
    base = make_env("pick_place")
    lists = (base._reset_hooks, base._pre_step_hooks, base._post_step_hooks, base._perturbation_records)
    before = [len(x) for x in lists]
    env = apply_perturbations(base, ["push=0.5", "lighting=0.5"])
    env.reset(seed=0)
    assert [len(x) for x in lists] == [n + 2 for n in before]
    assert [r["name"] for r in base.perturbation_records()] == ["push", "lighting"]
    env.close()
    assert [len(x) for x in lists] == before
    assert base.perturbation_records() == []
    # a fresh wrapper on the same base registers again, and the base still runs
    env2 = apply_perturbations(base, ["push=0.5"])
    env2.reset(seed=1)
    assert [r["name"] for r in base.perturbation_records()] == ["push"]
    env2.close()


def test_sim_modules_do_not_read_the_environments_private_fields():
    pattern = re.compile(r"\b(env|base|self\.env|self\.base)\._[a-z]\w*")
    for path in sorted(SIM.glob("*.py")):
        if path.name == "env.py":
            continue
        hits = [m.group(0) for m in pattern.finditer(path.read_text())]
        assert not hits, f"{path.name} reads private PandaEnv fields {hits}: add a public read-only view"
