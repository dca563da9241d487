"""`salus collect --env ... --robot FILE.json`: a third-party-style arm (``tests/monitor/any_robot_env.py``:
24-value state, 4-D actions, 10 Hz) collected with its robot description: the dataset stores it
where ``Recorder(robot=...)`` does, the robot-state signals are computed from it (constraint_margin
checked against numpy on the recorded states), resume refuses another robot, bad ``--robot`` input
exits 2 and leaves nothing behind, and ``salus dataset info`` shows it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from salus.collect import CollectConfig, ObservationMap
from salus.data import RobotSpec, SalusDataset
from salus.errors import InvalidInputError

torch.set_num_threads(1)
HELPER = Path(__file__).resolve().parents[1] / "monitor" / "any_robot_env.py"
EPISODES, MAX_STEPS = 3, 10
ARM = RobotSpec(
    state_dim=24,
    control_hz=10,
    action_dim=4,
    name="reach-arm",
    joint_pos=tuple(range(6)),
    joint_target=tuple(range(12, 18)),
    joint_lower=(-3.0,) * 6,
    joint_upper=(3.0,) * 6,
    ee_pos=(18, 19, 20),
    workspace_low=(-2.0, -2.0, -1.5),
    workspace_high=(2.0, 1.5, 2.0),
    ee_action_scale=0.05,
)


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from salus.cli.main import main

    capsys.readouterr()
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _collect_args(out: Path, *extra: str) -> list[str]:
    return [
        "collect",
        "--out",
        str(out),
        "--episodes",
        str(EPISODES),
        "--max-steps",
        str(MAX_STEPS),
        "--seed",
        "3",
        "--samples",
        "2",
        "--env",
        f"{HELPER}:make_env",
        "--policy",
        f"python:{HELPER}:make_policy",
        "--obs",
        "state=.",
        "--task-text",
        "reach the goal",
        "--failure",
        f"{HELPER}:failure",
        "--signal-stats",
        "none",
        *extra,
    ]


@pytest.fixture(scope="module")
def robot_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("robot") / "arm.json"
    path.write_text(ARM.to_json())
    return path


@pytest.fixture(scope="module")
def arm_data(robot_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from salus.cli.main import main

    out = tmp_path_factory.mktemp("arm") / "arm.zarr"
    main(_collect_args(out, "--robot", str(robot_file)))
    return out


def _margin(states: np.ndarray, robot: RobotSpec) -> np.ndarray:
    """constraint_margin from the recorded states and the limits, independently of salus."""
    s = states.astype(np.float64)
    cols = list(robot.joint_pos) + list(robot.ee_pos)
    lo = np.array(robot.joint_lower + robot.workspace_low)
    hi = np.array(robot.joint_upper + robot.workspace_high)
    x = s[:, cols]
    return (np.minimum(x - lo, hi - x) / (hi - lo)).min(axis=1)


def test_the_dataset_stores_the_robot_and_its_signals_read_it(arm_data: Path) -> None:
    from salus.data.robot import dataset_robot
    from salus.signals import SIGNAL_NAMES

    ds = SalusDataset(arm_data)
    assert ds.num_episodes == EPISODES
    assert ds.attrs["robot"] == json.loads(json.dumps(ARM.to_dict()))  # where the Recorder stores it
    assert dataset_robot(ds) == ARM
    assert ds.attrs["control_hz"] == 10.0
    sig, valid = ds.steps("signals"), ds.steps("signal_valid")
    j = list(SIGNAL_NAMES).index("constraint_margin")
    assert valid[:, j].all() and np.isfinite(sig[:, j]).all()
    np.testing.assert_allclose(sig[:, j], _margin(ds.steps("state"), ARM), rtol=1e-6, atol=1e-7)
    k = list(SIGNAL_NAMES).index("execution_mismatch")
    assert valid[:, k].mean() > 0.8 and np.isfinite(sig[valid[:, k], k]).all()


def test_robot_state_key_gives_the_same_signals(arm_data: Path, tmp_path: Path) -> None:
    """``robot_state=KEY`` (here the whole observation, the same 24 values) is what the signals
    read, also in worker processes with several environments in lockstep."""
    from salus.collect.collector import collect

    obs = ObservationMap(state=(".",), task=None, task_text="reach the goal", robot_state=".")
    config = CollectConfig(
        policy=f"python:{HELPER}:make_policy",
        episodes=EPISODES,
        max_steps=MAX_STEPS,
        seed=3,
        num_samples=2,
        env=f"{HELPER}:make_env",
        observation=obs,
        failure=f"{HELPER}:failure",
        signal_stats="none",
        robot=ARM,
    )
    collect(config, tmp_path / "key.zarr", workers=2, batch_size=2)  # spawned workers get the robot too
    a, b = SalusDataset(arm_data), SalusDataset(tmp_path / "key.zarr")
    np.testing.assert_array_equal(a.steps("signals"), b.steps("signals"))
    np.testing.assert_array_equal(a.steps("signal_valid"), b.steps("signal_valid"))


def test_robot_state_key_must_have_the_robot_width() -> None:
    obs = {"state": np.zeros(24), "arm": np.zeros(5)}
    mapping = ObservationMap(task=None, task_text="reach", robot_state="arm")
    with pytest.raises(InvalidInputError, match="must hold the robot description's 24 values"):
        mapping.apply(obs, robot_dim=24)
    _, robot = mapping.apply({**obs, "arm": np.arange(24.0)}, robot_dim=24)
    assert robot is not None and robot.shape == (24,) and robot[5] == 5.0
    with pytest.raises(InvalidInputError, match=r"\(22,\) salus.sim.spec layout.*--robot"):
        mapping.apply(obs)  # without a description: the Panda layout, as before


def test_config_carries_the_robot_and_runs_without_one_keep_their_spec() -> None:
    base: dict[str, Any] = {
        "policy": f"python:{HELPER}:make_policy",
        "env": f"{HELPER}:make_env",
        "observation": ObservationMap(state=(".",), task=None, task_text="reach"),
    }
    with_robot = CollectConfig(**base, robot=ARM)
    again = CollectConfig.from_dict(json.loads(json.dumps(with_robot.to_dict())))
    assert again.robot == ARM and again.spec_hash() == with_robot.spec_hash()
    plain = CollectConfig(**base)
    assert "robot" not in plain.spec_dict() and plain.spec_hash() != with_robot.spec_hash()
    assert CollectConfig.from_dict(plain.to_dict()).robot is None
    with pytest.raises(InvalidInputError, match="goes with an --env"):
        CollectConfig(robot=ARM)


def test_resume_refuses_another_robot(
    arm_data: Path, robot_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dataclasses import replace

    other = tmp_path / "other.json"
    other.write_text(replace(ARM, joint_lower=(-2.5,) * 6).to_json())
    code, _, err = _main(capsys, *_collect_args(arm_data, "--robot", str(other)))
    assert code == 2 and "different settings" in err and "robot" in err
    code, _, err = _main(capsys, *_collect_args(arm_data))  # and one without a robot
    assert code == 2 and "different settings" in err and "robot" in err
    code, _, err = _main(capsys, *_collect_args(arm_data, "--robot", str(robot_file)))
    assert code == 0, err  # the same robot: nothing to do, the dataset is complete
    assert SalusDataset(arm_data).num_episodes == EPISODES


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the robot description"),
        ("{not json", "not valid JSON"),
        ('{"state_dim": 24, "joint_pos": [0], "joint_lower": [1], "joint_upper": [0]}', "must be below"),
        ('{"state_dim": 24, "wheels": 4}', "unknown robot description field"),
        ('{"state_dim": 22, "control_hz": 10}', "state_dim is 22 but the mapped state"),
        ('{"state_dim": 24, "control_hz": 10, "action_dim": 7}', "action_dim is 7 but the action space"),
        ('{"state_dim": 24, "control_hz": 20}', "control_hz is 20 but the environment runs at 10 Hz"),
    ],
)
def test_bad_robot_input_exits_2_and_leaves_no_dataset(
    content: str | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "robot.json"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "bad.zarr"
    code, _, err = _main(capsys, *_collect_args(out, "--robot", str(path)))
    assert code == 2 and message in " ".join(err.split()), err
    assert "--robot" in err and not out.exists()


def test_robot_needs_env(robot_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim.zarr"
    code, _, err = _main(capsys, "collect", "--out", str(out), "--robot", str(robot_file))
    assert code == 2 and "go with --env" in err and not out.exists()


def test_dataset_info_shows_the_robot(arm_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _main(capsys, "dataset", "info", str(arm_data), "--json")
    assert code == 0
    robot = json.loads(out)["robot"]
    assert robot == {
        "name": "reach-arm",
        "stored": True,
        "state_dim": 24,
        "state_names": None,
        "action_dim": 4,
        "control_hz": 10.0,
        "robot_signals": {"execution_mismatch": None, "constraint_margin": None},
    }
    code, out, _ = _main(capsys, "dataset", "info", str(arm_data))
    text = " ".join(out.split())
    assert code == 0 and "robot: reach-arm (stored): state 24 values, action 4, 10 Hz" in text
    assert "execution_mismatch: valid" in text and "constraint_margin: valid" in text


def test_dataset_info_says_why_robot_signals_are_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A description with names but nothing the signals read: names shown, both signals invalid."""
    bare = RobotSpec(state_dim=24, control_hz=10, name="bare", state_names=tuple(f"s{i}" for i in range(24)))
    path = tmp_path / "bare.json"
    path.write_text(bare.to_json())
    out = tmp_path / "bare.zarr"
    code, _, err = _main(capsys, *_collect_args(out, "--robot", str(path), "--episodes", "1"))
    assert code == 0, err
    ds = SalusDataset(out)
    from salus.signals import SIGNAL_NAMES

    names = list(SIGNAL_NAMES)
    valid = ds.steps("signal_valid")
    assert not valid[:, names.index("constraint_margin")].any()
    assert not valid[:, names.index("execution_mismatch")].any()
    code, text, _ = _main(capsys, "dataset", "info", str(out))
    text = " ".join(text.split())
    assert code == 0 and "state names: s0, s1," in text
    assert "constraint_margin: invalid (robot 'bare' describes neither joint limits" in text
