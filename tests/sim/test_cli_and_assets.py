"""CLI commands, the GL backend choice, and the shipped simplified meshes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from salus.cli.main import app
from salus.errors import InvalidInputError, InvalidNameError, MissingDependencyError

runner = CliRunner()


def test_cli_lists_tasks_and_perturbations() -> None:
    out = runner.invoke(app, ["sim", "tasks", "--json"])
    assert out.exit_code == 0, out.output
    assert set(json.loads(out.stdout)) == {"pick_place", "push", "stack", "pick_color"}
    out = runner.invoke(app, ["sim", "perturbations", "--json"])
    assert out.exit_code == 0 and "distractor" in json.loads(out.stdout)


def test_cli_rollout_json() -> None:
    out = runner.invoke(
        app,
        [
            "sim",
            "rollout",
            "--task",
            "pick_color",
            "--episodes",
            "2",
            "--seed",
            "3",
            "--perturb",
            "lighting=0.5",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["episodes"] == 2 and 0.0 <= result["success_rate"] <= 1.0
    assert set(result["failure_counts"]) == {"drop", "miss", "collision", "timeout"}
    assert result["control_steps_per_s"] > 0
    assert [e["seed"] for e in result["per_episode"]] == [3, 4]
    assert result["perturbations"] == [{"name": "lighting", "strength": 0.5}]


def test_cli_rollout_saves_frames(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = runner.invoke(
        app,
        [
            "sim",
            "rollout",
            "--episodes",
            "1",
            "--save-frames",
            str(tmp_path),
            "--max-steps",
            "12",
            "--image-size",
            "32",
        ],
    )
    assert out.exit_code == 0, out.output
    frames = sorted((tmp_path / "pick_place_seed0").glob("*.png"))
    assert len(frames) >= 3
    import imageio.v3 as iio

    assert iio.imread(frames[0]).shape == (32, 64, 3)


def test_cli_rejects_bad_names() -> None:
    out = runner.invoke(app, ["sim", "rollout", "--task", "nope"])
    assert isinstance(out.exception, InvalidNameError) and "pick_place" in str(out.exception)
    out = runner.invoke(app, ["sim", "rollout", "--perturb", "push=3"])
    assert isinstance(out.exception, InvalidInputError)
    out = runner.invoke(app, ["sim", "rollout", "--policy", "smolvla"])
    assert isinstance(out.exception, InvalidNameError) and "scripted" in str(out.exception)


def test_missing_gl_backend_names_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    from salus.sim import gl

    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setenv("SALUS_GL_PROBE", "none")
    with pytest.raises(MissingDependencyError, match="libegl-mesa0 libgl1-mesa-dri.*libosmesa6"):
        gl.require_backend()


def test_backend_is_chosen_in_a_fresh_process() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    code = (
        "import os; from salus.sim import make_env; e = make_env('push', image_size=16); o, _ = e.reset(seed=0);"
        "print(os.environ['MUJOCO_GL'], o['image_front'].shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    backend, shape = out.stdout.strip().split(" ", 1)
    assert backend in ("egl", "osmesa") and shape == "(16, 16, 3)"


def test_simplified_meshes_are_small_and_reproducible() -> None:
    fast_simplification = pytest.importorskip("fast_simplification")
    from salus.sim.assets import SIMPLIFIED_MESHES, franka_assets_dir, read_binary_stl

    with np.load(SIMPLIFIED_MESHES) as npz:
        faces = {k.split("/")[0]: npz[k] for k in npz.files if k.endswith("/faces")}
        verts = {k.split("/")[0]: npz[k] for k in npz.files if k.endswith("/vertices")}
    assert sum(len(f) for f in faces.values()) < 10_000
    v, f = read_binary_stl((franka_assets_dir() / "meshes" / "visual" / "link7.stl").read_bytes())
    assert len(f) > 10 * len(faces["link7"])
    v2, f2 = fast_simplification.simplify(v.astype(np.float32), f.astype(np.int32), target_reduction=0.95)
    np.testing.assert_array_equal(f2, faces["link7"])
    np.testing.assert_allclose(v2, verts["link7"])
