"""`salus collect --env`: a third-party Gymnasium environment (gym-pusht's PushT) with the example's
scripted flow policy, through the real CLI, processes and a local Ray; bad mappings and rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("gym_pusht")

from salus.collect import CollectConfig, ObservationMap  # noqa: E402
from salus.collect.collector import collect  # noqa: E402
from salus.collect.envs import make_env_from_spec  # noqa: E402
from salus.data import SalusDataset, check_dataset  # noqa: E402
from salus.errors import DatasetError, InvalidInputError  # noqa: E402

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "byo_pusht.py"
LIVE = ROOT / "examples" / "byo_pusht_live.py"  # the guide's live loop (Recorder + Monitor)
HELPERS = Path(__file__).resolve().parent / "byo_helpers.py"
EPISODES, MAX_STEPS = 4, 25


def cli_args(out: Path, **over: str) -> list[str]:
    opts = {
        "--env": f"{EXAMPLE}:make_env",
        "--policy": f"python:{EXAMPLE}:make_policy",
        "--obs": "state=.",
        "--task-text": "push the T onto the goal",
        "--failure": f"{EXAMPLE}:failure",
        "--signal-stats": "none",
        **over,
    }
    args = [
        "collect",
        "--out",
        str(out),
        "--episodes",
        str(EPISODES),
        "--max-steps",
        str(MAX_STEPS),
        "--seed",
        "5",
    ]
    for k, v in opts.items():
        args += [k, v]
    return args


def config(**over) -> CollectConfig:
    kw = {
        "policy": f"python:{EXAMPLE}:make_policy",
        "episodes": EPISODES,
        "max_steps": MAX_STEPS,
        "seed": 5,
        "env": f"{EXAMPLE}:make_env",
        "observation": ObservationMap(state=(".",), task=None, task_text="push the T onto the goal"),
        "failure": f"{EXAMPLE}:failure",
        "signal_stats": "none",
        **over,
    }
    return CollectConfig(**kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    from salus.cli.main import app

    out = tmp_path_factory.mktemp("env") / "pusht.zarr"
    res = CliRunner().invoke(app, cli_args(out))
    assert res.exit_code == 0, res.output
    return out


def test_env_dataset_is_labelled_by_the_environment(reference):
    ds = SalusDataset(reference)
    assert ds.num_episodes == EPISODES and check_dataset(reference).ok
    assert set(ds.keys) >= {"state", "action", "signals", "signal_valid", "baselines", "obs_embedding"}
    assert ds.steps("state").shape[1] == 5 and ds.steps("action").shape[1] == 3
    assert ds.task.tolist() == ["gym_pusht/PushT-v0"] * EPISODES  # the id, not the factory's module
    assert ds.attrs["env"]["tasks"] == ds.attrs["collect"]["tasks"] == ["gym_pusht/PushT-v0"]
    env = ds.attrs["env"]
    assert env["simulator"] == "gymnasium" and env["control_hz"] == 10.0 and env["action_shape"] == [3]
    from salus.data.robot import dataset_robot

    robot = dataset_robot(ds)  # derived (no --robot): named by the environment's id, not the factory spec
    assert robot is not None and robot.name == "gym_pusht/PushT-v0" and robot.state_dim == 5
    assert ds.attrs["control_hz"] == 10.0
    # 25 steps are too few to push the T home: failures at the last step, typed by the failure rule.
    assert not ds.success.any() and set(ds.failure_type.tolist()) <= {"miss", "timeout"}
    assert (ds.failure_step == ds.lengths - 1).all()
    valid = ds.steps("signal_valid")
    names = ds.signal_names
    assert valid[:, names.index("action_volatility")].mean() > 0.9
    assert not valid[:, names.index("execution_mismatch")].any()  # not our robot's state layout


def test_env_collection_is_the_same_on_worker_processes(reference, tmp_path):
    from test_collect import assert_same_dataset  # tests/collect is on sys.path (rootdir imports)

    out = tmp_path / "procs.zarr"
    result = collect(config(), out, workers=2)
    assert result.backend == "processes" and result.episodes == EPISODES
    assert_same_dataset(reference, out)


def test_env_collection_is_the_same_on_ray(reference, tmp_path):
    from test_collect import assert_same_dataset

    pytest.importorskip("ray")
    out_ray = tmp_path / "ray.zarr"
    result = collect(config(), out_ray, workers=2, use_ray=True)
    assert result.backend == "ray"
    assert_same_dataset(reference, out_ray)


def test_success_rule_callable_and_resume(reference, tmp_path):
    out = tmp_path / "rule.zarr"
    cfg = config(episodes=2, max_steps=200, success=f"{HELPERS}:covered")
    collect(cfg, out)
    collect(config(episodes=3, max_steps=200, success=f"{HELPERS}:covered"), out)  # resumes
    ds = SalusDataset(out)
    assert ds.num_episodes == 3 and ds.attrs["env"]["success"].endswith("byo_helpers.py:covered")


def test_bad_env_input_names_what_is_wrong(tmp_path):
    bad_key = tmp_path / "bad_key.zarr"
    wrong = ObservationMap(state=("agent_pos",), task=None, task_text="x")
    with pytest.raises(InvalidInputError, match=r"not a dict: map the state to '\.'"):
        collect(config(observation=wrong), bad_key)
    assert not bad_key.exists()  # refused before the dataset was created
    with pytest.raises(InvalidInputError, match=r"no key 'agent_pos'.*policy's state.*\['pixels'\]"):
        wrong.apply({"pixels": 0})
    with pytest.raises(InvalidInputError, match=r"info has no 'is_success'.*--success"):
        collect(config(env=f"{HELPERS}:make_env_without_success", episodes=1), tmp_path / "no_success.zarr")
    with pytest.raises(InvalidInputError, match=r"action of shape \(2,\); the environment takes \(3,\)"):
        collect(config(policy=f"python:{HELPERS}:make_2d_policy", episodes=1), tmp_path / "wide.zarr")
    with pytest.raises(InvalidInputError, match="salus.sim wrappers"):
        config(mix=__import__("salus.collect", fromlist=["x"]).PerturbationMix.fixed([("push", 0.5)]))
    with pytest.raises(InvalidInputError, match="no attribute 'nope'"):
        make_env_from_spec(f"{EXAMPLE}:nope")
    with pytest.raises(InvalidInputError, match="registered Gymnasium id"):
        make_env_from_spec("gym_pusht/NoSuchEnv-v0")
    env = make_env_from_spec("gym_pusht/PushT-v0")  # a registered id; its namespace module is imported
    env.close()


def test_small_end_to_end_train_evaluate_and_monitor(tmp_path):
    """The guide's run, small: collect on PushT, train, evaluate, then the example's own loop
    (Recorder + Monitor) on fresh seeds."""
    import json
    import subprocess
    import sys

    from salus.cli.main import app

    runner = CliRunner()
    data, model = tmp_path / "pusht.zarr", tmp_path / "model"
    args = cli_args(data, **{"--samples": "1"})
    args[args.index("--episodes") + 1] = "24"
    args[args.index("--max-steps") + 1] = "300"
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    ds = SalusDataset(data)
    assert 0 < ds.success.sum() < ds.num_episodes  # it sometimes fails
    res = runner.invoke(app, ["train", str(data), "--out", str(model), "--epochs", "3", "--json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evaluate", str(model), str(data), "--json"])
    assert res.exit_code == 0, res.output
    assert "salus-tcn" in res.output
    live = tmp_path / "live.zarr"
    out = subprocess.run(
        [
            sys.executable,
            str(LIVE),
            *("--model", str(model), "--record", str(live), "--episodes", "2", "--signal-stats", "none"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    # exit 0: the live scores, thresholds and first alarms equal offline_risk on what was recorded
    assert "2 episodes (" in out.stdout and "holds 2 episodes" in out.stdout, out.stdout[-2000:]
    live_ds = SalusDataset(live)
    assert live_ds.num_episodes == 2 and "unlabelled" not in live_ds.failure_type.tolist()
    json.dumps(live_ds.attrs["recorder"])


def test_task_name_is_the_environment_id_or_the_users(tmp_path):
    """The task name an --env dataset stores: the environment's Gymnasium id (the reference above),
    else the factory's function name, or the name given (--tasks); a dataset collected when the
    name was the factory's module resumes without --tasks and keeps it."""
    from salus.cli.main import app

    out = tmp_path / "no_id.zarr"
    collect(config(env=f"{HELPERS}:make_env_without_id", episodes=1), out)
    ds = SalusDataset(out)
    assert ds.task.tolist() == ["make_env_without_id"] and ds.attrs["collect"]["tasks"] == [
        "make_env_without_id"
    ]

    named = tmp_path / "named.zarr"
    res = CliRunner().invoke(app, [*cli_args(named, **{"--tasks": "push-t"}), "--episodes", "1"])
    assert res.exit_code == 0, res.output
    assert SalusDataset(named).task.tolist() == ["push-t"]
    with pytest.raises(InvalidInputError, match="an --env run has one task"):
        config(tasks=("a", "b"))
    with pytest.raises(InvalidInputError, match="task name of an --env run must be a non-empty string"):
        config(tasks=(" ",))

    # a dataset from before: its spec named the task after the factory's module (byo_pusht)
    old = tmp_path / "old.zarr"
    collect(config(episodes=1, tasks=("byo_pusht",)), old)
    result = collect(config(episodes=2), old)  # resumed without --tasks: keeps its name
    assert result.new_episodes == 1
    ds = SalusDataset(old)
    assert ds.task.tolist() == ["byo_pusht", "byo_pusht"] and check_dataset(old).ok
    with pytest.raises(DatasetError, match=r"tasks: dataset \['byo_pusht'\], now \['other'\]"):
        collect(config(episodes=3, tasks=("other",)), old)  # a name given must match
