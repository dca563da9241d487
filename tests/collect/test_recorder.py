"""salus.Recorder in a loop salus does not drive, and `salus dataset label`: the real simulator, the
real built-in policy, real zarr; a recorder killed with SIGKILL mid-episode in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from salus import Recorder
from salus.collect import ObservationMap
from salus.data import SalusDataset, check_dataset
from salus.errors import DatasetError, InvalidInputError

torch.set_num_threads(1)
STEPS = 12


@pytest.fixture(scope="module")
def policy(policy_spec):
    from salus.policies import load_policy

    return load_policy(policy_spec, num_samples=2)


@pytest.fixture(scope="module")
def env():
    from salus.sim import make_env

    e = make_env("pick_place", max_steps=STEPS)
    yield e
    e.close()


def _loop(rec: Recorder, env, seed: int, steps: int = STEPS, convert=None) -> None:
    obs, _ = env.reset(seed=seed)
    rec.start(seed=seed)
    for _ in range(steps):
        action = rec.step(obs if convert is None else convert(obs))
        obs, _r, terminated, truncated, _info = env.step(action)
        if terminated or truncated:
            break


def _lerobot(obs: dict) -> dict:
    """The simulator's observation as a LeRobot-style dict: CHW float images, a state tensor."""
    out = {
        f"observation.images.{k[len('image_') :]}": torch.from_numpy(v).permute(2, 0, 1).float() / 255.0
        for k, v in obs.items()
        if k.startswith("image_")
    }
    out["observation.state"] = torch.from_numpy(np.asarray(obs["state"]))
    out["task"] = obs["task"]
    return out


def test_recorded_episodes_equal_collection_and_take_lerobot_dicts(policy, env, tmp_path):
    """The recorder computes what collection computes, step for step, from either dict style."""
    from salus.collect.recorder import make_extractor
    from salus.collect.runner import run_episode
    from salus.signals import OnlineBaselines

    collected = run_episode(env, policy, make_extractor(None), OnlineBaselines(1), 7, STEPS)
    with Recorder(tmp_path / "a.zarr", policy, action_dim=4) as rec:
        _loop(rec, env, 7)
        rec.end(success=True)
    lerobot_map = ObservationMap(
        state=("observation.state",),
        images=(("front", "observation.images.front"), ("wrist", "observation.images.wrist")),
        robot_state="observation.state",  # our Panda's state layout, so every signal is valid
    )
    with Recorder(tmp_path / "a.zarr", policy, observation=lerobot_map) as rec:
        _loop(rec, env, 7, convert=_lerobot)
        rec.end(failure_step=3, failure_type="drop")
    with Recorder(tmp_path / "a.zarr", policy) as rec:
        _loop(rec, env, 8, convert=_lerobot)  # inferred map: LeRobot keys; unknown robot layout
        rec.end()
        assert rec.observation is not None and rec.observation.robot_state is None
    ds = SalusDataset(tmp_path / "a.zarr")
    assert ds.num_episodes == 3 and check_dataset(tmp_path / "a.zarr").ok
    assert ds.success.tolist() == [True, False, False]
    assert ds.failure_type.tolist() == ["none", "drop", "unlabelled"]
    assert ds.failure_step.tolist() == [-1, 3, -1]
    assert ds.seed.tolist() == [7, 7, 8]
    assert ds.state("extractor")["format_version"] == 1 and len(ds.signal_names) == 12
    for i in (0, 1):
        ep = ds.episode(i)
        for key in ("state", "action", "signals", "signal_valid", "baselines", "obs_embedding"):
            np.testing.assert_array_equal(ep.steps[key], collected.steps[key], err_msg=f"{i} {key}")
    assert ds.attrs["recorder"]["observation"]["state"] == ["state"]
    valid = ds.episode(2).steps["signal_valid"]
    names = ds.signal_names
    assert (
        not valid[:, names.index("execution_mismatch")].any()
        and not valid[:, names.index("constraint_margin")].any()
    )


def test_bad_input_names_the_key_and_keeps_what_was_committed(policy, env, tmp_path):
    path = tmp_path / "b.zarr"
    with Recorder(path, policy, action_dim=4) as rec:
        _loop(rec, env, 1, steps=3)
        rec.end(success=True)
        obs, _ = env.reset(seed=2)
        rec.start()
        rec.step(obs)
        bad = {k: v for k, v in obs.items() if k != "image_wrist"}
        with pytest.raises(InvalidInputError, match="image_wrist"):
            rec.step(bad)
        with pytest.raises(InvalidInputError, match="still being recorded"):
            rec.start()
        with pytest.raises(InvalidInputError, match="failure_step must be in"):
            rec.end(failure_step=99, failure_type="drop")
        rec.discard()
        with pytest.raises(InvalidInputError, match="before step"):
            rec.step(obs)
    with Recorder(path, policy, action_dim=3) as rec:  # the policy acts in 4-D
        rec.start()
        with pytest.raises(InvalidInputError, match=r"shape \(4,\).*\(3,\)"):
            rec.step(obs)
    with pytest.raises(InvalidInputError, match="observation.state"):
        ObservationMap.infer({"pixels": np.zeros((8, 8, 3), np.uint8)})
    ds = SalusDataset(path)
    assert ds.num_episodes == 1 and ds.success.tolist() == [True] and int(ds.lengths[0]) == 3


def _renamed(obs: dict) -> dict:
    """The simulator's observation as a loop that calls its proprioceptive vector ``qpos``."""
    return {("qpos" if k == "state" else k): v for k, v in obs.items()}


def test_robot_state_by_key_records_what_collection_records(policy, env, tmp_path):
    """A loop whose observation names the robot state ``qpos``: ``Recorder(robot_state="qpos")``
    records it as the policy's state and reads the robot-state signals from it (the Panda layout),
    step for step what collection records from ``state``; a key the observation lacks is refused at
    the first step, naming the key and the keys present, with nothing recorded."""
    from salus.collect.recorder import make_extractor
    from salus.collect.runner import run_episode
    from salus.data.robot import dataset_robot, panda_robot
    from salus.signals import OnlineBaselines

    collected = run_episode(env, policy, make_extractor(None), OnlineBaselines(1), 5, STEPS)
    path = tmp_path / "qpos.zarr"
    with Recorder(path, policy, robot_state="qpos") as rec:
        with pytest.raises(InvalidInputError, match="observation.state"):
            ObservationMap.infer(_renamed(env.reset(seed=5)[0]))  # without the key: cannot infer
        _loop(rec, env, 5, convert=_renamed)
        rec.end(success=True)
        assert rec.observation is not None
        assert (rec.observation.state, rec.observation.robot_state) == (("qpos",), "qpos")
    ds = SalusDataset(path)
    names = ds.signal_names
    ep = ds.episode(0).steps
    for key in ("state", "action", "signals", "signal_valid", "baselines", "obs_embedding"):
        np.testing.assert_array_equal(ep[key], collected.steps[key], err_msg=key)
    for name in ("execution_mismatch", "constraint_margin"):  # read from qpos, so valid
        assert ep["signal_valid"][1:, names.index(name)].all(), name
    assert ds.attrs["recorder"]["observation"]["robot_state"] == "qpos"
    assert dataset_robot(ds) == panda_robot()

    obs = _renamed(env.reset(seed=6)[0])
    with Recorder(tmp_path / "typo.zarr", policy, robot_state="q_pos") as rec:
        rec.start()
        with pytest.raises(
            InvalidInputError,
            match=r"no key 'q_pos' \(wanted for the policy's robot_state\); its keys: \[.*'qpos'",
        ):
            rec.step(obs)
        assert rec.observation is None  # nothing was inferred from the bad step
        with pytest.raises(InvalidInputError, match="no steps"):
            rec.end(success=True)
    assert SalusDataset(tmp_path / "typo.zarr").num_episodes == 0
    # given with an explicit map: the map's policy state stays, the robot state is the key
    omap = ObservationMap(state=("qpos",), images=(("front", "image_front"), ("wrist", "image_wrist")))
    with Recorder(tmp_path / "map.zarr", policy, observation=omap, robot_state="qpos") as rec:
        assert rec.observation is not None and rec.observation.robot_state == "qpos"
        rec.start()
        short = {**obs, "qpos5": np.zeros(5, np.float32)}
        with Recorder(tmp_path / "short.zarr", policy, robot_state="qpos5") as other:
            other.start()
            with pytest.raises(
                InvalidInputError, match=r"'qpos5' \(robot_state\) must be the \(22,\) .*got shape \(5,\)"
            ):
                other.step(short)
        rec.step(obs)
        rec.discard()
    for bad, msg in (
        ({"robot_state": ""}, "robot_state must be the observation key"),
        ({"robot_state": 3}, "robot_state must be the observation key"),
        (
            {"robot_state": "qpos", "observation": ObservationMap(robot_state="state")},
            "robot_state 'qpos' contradicts the observation map's robot_state 'state'",
        ),
    ):
        with pytest.raises(InvalidInputError, match=msg):
            Recorder(tmp_path / "bad.zarr", policy, **bad)  # type: ignore[arg-type]


def test_robot_state_by_key_with_a_robot_description(tmp_path):
    """A non-Panda arm (24-value state) whose loop gives the policy one vector and the robot's
    proprioception under its own key: with a description, the robot-state signals read that key
    (its ``state_dim`` values), and a key of another width is refused naming both widths."""
    import importlib.util

    from salus.data.robot import RobotSpec
    from salus.signals import SIGNAL_NAMES

    helper_path = Path(__file__).resolve().parents[1] / "monitor" / "any_robot_env.py"
    spec = importlib.util.spec_from_file_location("any_robot_env", helper_path)
    assert spec is not None and spec.loader is not None
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    arm = RobotSpec(
        state_dim=24,
        control_hz=10,
        action_dim=4,
        name="reach-arm",
        joint_pos=tuple(range(6)),
        joint_lower=(-3.0,) * 6,
        joint_upper=(3.0,) * 6,
    )
    env = helper.make_env(10)

    # the policy's state hides the joint positions; the robot state is the arm's whole vector
    def loop_obs(o: np.ndarray) -> dict:
        seen = o.copy()
        seen[:6] = 0.0
        return {"policy_state": seen, "proprio": o, "task": "reach"}

    omap = ObservationMap(state=("policy_state",))
    path = tmp_path / "arm.zarr"
    with Recorder(path, helper.make_policy(), observation=omap, robot=arm, robot_state="proprio") as rec:
        obs, _ = env.reset(seed=0)
        rec.start()
        proprio = []
        for _ in range(5):
            proprio.append(obs)
            obs, *_ = env.step(rec.step(loop_obs(obs)))
        rec.end(success=True)
        rec.start()
        bad = {**loop_obs(obs), "proprio": obs[:22]}
        with pytest.raises(
            InvalidInputError,
            match=r"'proprio' \(robot_state\) must hold the robot description's 24 values.*\(22,\)",
        ):
            rec.step(bad)
        rec.discard()
    ep = SalusDataset(path).episode(0).steps
    q = np.array(proprio, dtype=np.float64)[:, :6]
    cm = SIGNAL_NAMES.index("constraint_margin")
    assert ep["signal_valid"][:, cm].all()
    np.testing.assert_allclose(
        ep["signals"][:, cm], np.minimum(q + 3.0, 3.0 - q).min(axis=1) / 6.0, rtol=1e-5
    )
    assert not ep["state"][:, :6].any()  # the stored state is the policy's (joints hidden)
    assert not np.allclose(ep["signals"][:, cm], 0.5)  # what the policy's state would have given


_CHILD = textwrap.dedent(
    """
    import sys, time, torch
    torch.set_num_threads(1)
    from salus import Recorder
    from salus.policies import load_policy
    from salus.sim import make_env

    env = make_env("pick_place", max_steps=50)
    policy = load_policy(sys.argv[2], num_samples=2)
    with Recorder(sys.argv[1], policy) as rec:
        for ep in range(3):
            obs, _ = env.reset(seed=ep)
            rec.start(seed=ep)
            for t in range(10 if ep < 2 else 40):
                obs, *_ = env.step(rec.step(obs))
                if ep == 2:
                    if t == 5:
                        print("MID-EPISODE", flush=True)
                    time.sleep(0.05)
            rec.end(success=ep == 0, failure_step=None if ep == 0 else 4, failure_type=None if ep == 0 else "miss")
    """
)


def test_kill_mid_episode_keeps_earlier_episodes_and_drops_the_partial_one(policy_spec, tmp_path):
    path = tmp_path / "killed.zarr"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), policy_spec],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "MID-EPISODE" not in line:
            _, err = proc.communicate(timeout=60)
            pytest.fail(f"recorder child did not reach episode 3: {line!r} {err[-2000:]}")
        time.sleep(0.3)  # well inside the third episode
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    ds = SalusDataset(path)
    assert ds.num_episodes == 2 and ds.lengths.tolist() == [10, 10]
    assert ds.success.tolist() == [True, False] and ds.failure_type.tolist() == ["none", "miss"]
    report = check_dataset(path)
    assert report.ok, report.problems
    # The next recorder takes the lock over from the dead one and appends after the two episodes.
    from salus.policies import load_policy
    from salus.sim import make_env

    env2 = make_env("pick_place", max_steps=50)
    try:
        with Recorder(path, load_policy(policy_spec, num_samples=2)) as rec:
            assert rec.num_episodes == 2
            _loop(rec, env2, 5, steps=4)
            rec.end(success=True)
    finally:
        env2.close()
    ds = SalusDataset(path)
    assert (
        ds.num_episodes == 3 and ds.lengths.tolist() == [10, 10, 4] and ds.episode_index.tolist() == [0, 1, 2]
    )


# --------------------------------------------------------------------------- labels
@pytest.fixture()
def unlabelled(policy, env, tmp_path) -> Path:
    path = tmp_path / "robot.zarr"
    with Recorder(path, policy) as rec:
        for seed in range(3):
            _loop(rec, env, seed, steps=6)
            rec.end()
    return path


def _refused(res, *texts: str) -> None:
    """The CLI refused with a salus error (``salus`` prints it and exits 2) naming ``texts``."""
    assert res.exit_code != 0 and isinstance(res.exception, InvalidInputError), res.output
    for text in texts:
        assert text in str(res.exception)


def test_label_command_single_and_bulk_with_who_and_when(unlabelled, tmp_path):
    from salus.cli.main import app
    from salus.predictor.episodes import episodes_from_dataset

    with pytest.raises(DatasetError, match=r"3 unlabelled episode\(s\).*0, 1, 2.*salus dataset label"):
        episodes_from_dataset(SalusDataset(unlabelled))
    runner = CliRunner()
    res = runner.invoke(app, ["dataset", "label", str(unlabelled), "0", "--success", "--by", "alice"])
    assert res.exit_code == 0, res.output
    assert "episode 0: success (by alice" in res.output
    res = runner.invoke(app, ["dataset", "label", str(unlabelled), "7", "--success"])
    _refused(res, "episode 7 does not exist", "3 episodes")
    res = runner.invoke(
        app, ["dataset", "label", str(unlabelled), "1", "--failure-step", "6", "--failure-type", "drop"]
    )
    _refused(res, "[0, 6)")
    res = runner.invoke(app, ["dataset", "label", str(unlabelled), "1"])
    _refused(res, "--success, or --failure-step")
    res = runner.invoke(
        app, ["dataset", "label", str(unlabelled), "0", "--failure-step", "2", "--failure-type", "drop"]
    )
    _refused(res, "--overwrite")

    bulk = tmp_path / "labels.json"
    bulk.write_text(
        json.dumps(
            [{"episode": 1, "failure_step": 4, "failure_type": "drop"}, {"episode": 9, "success": True}]
        )
    )
    res = runner.invoke(app, ["dataset", "label", str(unlabelled), "--from", str(bulk)])
    _refused(res, "episode 9 does not exist")
    assert SalusDataset(unlabelled).failure_type.tolist() == [
        "none",
        "unlabelled",
        "unlabelled",
    ]  # all or nothing

    csv = tmp_path / "labels.csv"
    csv.write_text("episode,success,failure_step,failure_type\n1,false,4,drop\n2,true,,\n")
    res = runner.invoke(
        app, ["dataset", "label", str(unlabelled), "--from", str(csv), "--by", "bob", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert [e["episode"] for e in json.loads(res.output)] == [1, 2]
    ds = SalusDataset(unlabelled)
    assert ds.success.tolist() == [True, False, True]
    assert ds.failure_step.tolist() == [-1, 4, -1] and ds.failure_type.tolist() == ["none", "drop", "none"]
    assert ds.episode(1).failure_type == "drop"
    entry = ds.attrs["salus_labels"]["1"]
    assert entry["labelled_by"] == "bob" and entry["labelled_at"].endswith("+00:00")
    assert entry["previous"] == {"success": False, "failure_step": -1, "failure_type": "unlabelled"}
    assert ds.attrs["salus_labels"]["0"]["labelled_by"] == "alice"
    assert check_dataset(unlabelled).ok
    episodes = episodes_from_dataset(ds)  # now labelled: training reads it
    assert [e.failure_step for e in episodes.episodes] == [-1, 4, -1]

    res = runner.invoke(
        app,
        [
            "dataset",
            "label",
            str(unlabelled),
            "1",
            "--failure-step",
            "2",
            "--failure-type",
            "miss",
            "--overwrite",
        ],
    )
    assert res.exit_code == 0, res.output
    ds = SalusDataset(unlabelled)
    assert ds.failure_step.tolist()[1] == 2
    assert ds.attrs["salus_labels"]["1"]["previous"]["failure_type"] == "drop"


def test_lerobot_smolvla_in_a_robot_loop(tmp_path):
    """The guide's loop: LeRobot's own SmolVLAPolicy (a tiny random checkpoint) behind salus's
    adapter, fed LeRobot-style dicts of a 6-joint arm; the episode is labelled afterwards."""
    pytest.importorskip("lerobot")
    from salus.data.labels import Label
    from salus.data.relabel import label_episodes
    from salus.policies.smolvla import SmolVLAAdapter, build_tiny_smolvla

    ckpt = build_tiny_smolvla(tmp_path / "tiny", state_dim=6, action_dim=6, chunk_size=6, n_action_steps=3)
    policy = SmolVLAAdapter.from_pretrained(ckpt, num_samples=2)
    rng = np.random.default_rng(0)

    def observation() -> dict:  # what a LeRobot robot's get_observation() gives, plus the task
        return {
            "observation.images.front": torch.rand(3, 32, 32),
            "observation.images.wrist": torch.rand(3, 32, 32),
            "observation.state": torch.from_numpy(rng.normal(size=6).astype(np.float32)),
            "task": "pick up the cube",
        }

    path = tmp_path / "so100.zarr"
    with Recorder(path, policy, action_dim=6, save_images=True, control_hz=30, env={"robot": "so100"}) as rec:
        for episode in range(2):
            rec.start()
            for _ in range(7):
                action = rec.step(observation())
                assert action.shape == (6,) and np.isfinite(action).all()
            rec.end(success=True) if episode == 0 else rec.end()
    label_episodes(path, [Label(1, False, 5, "drop")], by="operator")
    ds = SalusDataset(path)
    assert ds.success.tolist() == [True, False] and ds.failure_type.tolist() == ["none", "drop"]
    assert ds.steps("state").shape == (14, 6) and ds.steps("action").shape == (14, 6)
    assert ds.steps("image_front").shape == (14, 32, 32, 3) and ds.steps("image_front").dtype == np.uint8
    assert ds.attrs["control_hz"] == 30 and ds.attrs["env"]["robot"] == "so100"
    valid = ds.steps("signal_valid")
    assert valid[:, ds.signal_names.index("action_volatility")].sum() >= 12
    assert ds.task.tolist() == ["pick up the cube"] * 2
